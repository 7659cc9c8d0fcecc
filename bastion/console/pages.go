package console

import (
	"embed"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// The pages are rendered on the server by html/template, which escapes
// every value for where it lands; values chosen by clients (identities,
// targets, logins, addresses, rules, commands, output) also pass through
// termtext.Line, so that control characters show as visible escapes.
// Each page is templates/layout.html around its own templates/NAME.html.
// No page has an inline script or an inline style: scripts and styles
// are files under /ui/static/, which the Content-Security-Policy allows
// as 'self'.
//
//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// playerFiles holds asciinema-player's script and style when "make
// player" put them in player/dist (never committed), else only that
// directory's placeholder. They are served as /ui/static/player/NAME.
//
//go:embed player/dist
var playerFiles embed.FS

var funcs = template.FuncMap{"text": termtext.Line, "offset": sessions.Offset}

// templates holds each page's template, by the name of its file without
// ".html".
var templates = func() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html"))
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFiles, n))
	}
	return out
}()

// pageData is what the layout shows around every page; Data is the
// page's own.
type pageData struct {
	Title, Problem, Notice, Who, Roles, CSRF string
	// Next, if set, is a page of the console the message links on to.
	Next             string
	SignIn, Continue bool
	// Nav is the menu of the pages the viewer may open.
	Nav []navItem
	// Scripts and Styles are the page's own files under /ui/static/.
	Scripts, Styles []string
	Data            any
}

type navItem struct {
	Href, Label string
	Current     bool
}

// navItems are the console's pages in its menu, each with the roles that
// see it.
var navItems = []struct {
	href, label string
	roles       []string
}{
	{Path + "/", "Live sessions", []string{RoleOperator, RoleAuditor, RoleApprover}},
	{Path + "/sessions", "Sessions", readers},
	{Path + "/grants", "Grants", []string{RoleOperator, RoleAuditor, RoleApprover}},
	{Path + "/evidence", "Evidence", []string{RoleAuditor, RoleOperator}},
}

// frame fills in what the layout shows of the viewer: who, their roles,
// the anti-forgery token and the menu, with current marked.
func (v *viewer) frame(d pageData, current string) pageData {
	d = v.signed(d)
	for _, n := range navItems {
		if v.has(n.roles...) {
			d.Nav = append(d.Nav, navItem{Href: n.href, Label: n.label, Current: n.href == current})
		}
	}
	return d
}

// signed fills in who the viewer is, their roles and the anti-forgery
// token (the layout's sign-out form), without the menu: what a refusal
// shows of them.
func (v *viewer) signed(d pageData) pageData {
	d.Who, d.Roles, d.CSRF = v.who, strings.Join(v.roles, ", "), v.csrf
	return d
}

// page renders a page with no content of its own: a message.
func (c *Console) page(w http.ResponseWriter, code int, title string, d pageData) {
	c.render(w, code, "message", title, d)
}

// render renders the page name (templates/NAME.html) in the layout.
func (c *Console) render(w http.ResponseWriter, code int, name, title string, d pageData) {
	d.Title = title
	t, ok := templates[name]
	if !ok {
		c.o.Logger.Error("console: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := t.ExecuteTemplate(w, "layout", d); err != nil {
		c.o.Logger.Warn("console page", "page", name, "error", err)
	}
}

// serveStatic serves the console's scripts and styles.
func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Path+"/")
	files := staticFiles
	if p, ok := strings.CutPrefix(name, "static/player/"); ok {
		files, name = playerFiles, "player/dist/"+p
	}
	b, err := files.ReadFile(name)
	if err != nil || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Write(b)
}
