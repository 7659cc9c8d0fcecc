package console

import (
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// The pages are rendered on the server by html/template, which escapes
// every value for where it lands; values chosen by clients (identities,
// targets, logins, addresses, rules) also pass through termtext.Line, so
// that control characters show as visible escapes. The pages have no
// script and no inline style.
var pages = template.Must(template.New("page").Funcs(template.FuncMap{"text": termtext.Line}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{{- if .Continue}}<meta http-equiv="refresh" content="0;url=/ui/">{{end}}
<title>bastion console: {{.Title}}</title>
<link rel="stylesheet" href="/ui/console.css"></head>
<body>
<header><h1>bastion console</h1>
{{- if .Who}}<p id="who">Signed in as <span class="identity">{{text .Who}}</span>{{if .Roles}} ({{.Roles}}){{end}}</p>
<form method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>
{{- end}}</header>
<main>
<h2 id="title">{{.Title}}</h2>
{{- if .Problem}}<p id="problem">{{text .Problem}}</p>{{end}}
{{- if .Continue}}<p><a href="/ui/">Continue to the console</a></p>{{end}}
{{- if .SignIn}}<p><a href="/ui/login">Sign in</a></p>{{end}}
{{- if .Live}}
<table id="live">
<thead><tr><th>Identity</th><th>Target</th><th>Login</th><th>Since</th><th>Bytes</th><th>Allowed by</th><th>Client</th><th>Session</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr><td class="identity">{{text .Identity}}</td><td class="target">{{text .Target}}</td><td class="login">{{text .Login}}</td><td class="since"><time datetime="{{.StartedISO}}">{{.StartedISO}}</time> ({{.Age}})</td><td class="bytes">{{.Bytes}}</td><td class="rule">{{text .Allowed}}</td><td class="client">{{text .Client}}</td><td class="session">{{text .ID}}</td></tr>
{{- else}}
<tr><td colspan="8" id="none">No live session.</td></tr>
{{- end}}
</tbody></table>
<p id="as-of">As of {{.Now}}.</p>
{{- end}}
</main></body></html>
`))

type pageData struct {
	Title, Problem, Who, Roles, CSRF string
	SignIn, Continue, Live           bool
	Rows                             []liveRow
	Now                              string
}

type liveRow struct {
	ID, Identity, Target, Login, Client, Allowed, StartedISO, Age string
	Bytes                                                         int64
}

func (c *Console) page(w http.ResponseWriter, code int, title string, d pageData) {
	d.Title = title
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := pages.Execute(w, d); err != nil {
		c.o.Logger.Warn("console page", "error", err)
	}
}

// live shows the live sessions.
func (c *Console) live(w http.ResponseWriter, s *session, roles []string) {
	now := c.o.Now()
	list := c.o.Live()
	slices.SortFunc(list, func(a, b front.LiveSession) int { return a.Started.Compare(b.Started) })
	rows := make([]liveRow, 0, len(list))
	for _, l := range list {
		allowed := l.Rule
		if l.Grant != "" {
			allowed = strings.TrimSpace(allowed + " grant:" + l.Grant)
		}
		rows = append(rows, liveRow{
			ID: l.ID, Identity: l.Identity, Target: l.Target, Login: l.Login, Client: l.Client, Allowed: allowed,
			StartedISO: l.Started.UTC().Format(time.RFC3339), Age: now.Sub(l.Started).Truncate(time.Second).String(), Bytes: l.Bytes,
		})
	}
	c.page(w, http.StatusOK, "Live sessions", pageData{
		Who: s.who, Roles: strings.Join(roles, ", "), CSRF: s.csrf, Live: true, Rows: rows,
		Now: now.UTC().Format(time.RFC3339) + " (" + strconv.Itoa(len(rows)) + " live)",
	})
}

const css = `body{font-family:sans-serif;margin:1em 2em;color:#222}
header{display:flex;gap:1em;align-items:baseline;border-bottom:1px solid #ccc}
header form{margin-left:auto}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}
#problem{color:#a00}
`

func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Write([]byte(css))
}
