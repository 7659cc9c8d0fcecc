package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage/postgres"
)

// ClusterReportFormat names the format of a cluster's examiner's report
// (the top of DIR/evidence.json when the journal is a cluster's).
const ClusterReportFormat = "bastion cluster evidence report v1"

// clusterReport is a cluster's examiner's report: one section per member,
// each resting on that member's log and checkpoint, verified with its key
// only; each member's full report is in DIR/member-ID.
type clusterReport struct {
	Format      string         `json:"format"`
	GeneratedAt time.Time      `json:"generated_at"`
	Scope       evidence.Scope `json:"scope"`
	Journal     string         `json:"journal"`
	Cluster     string         `json:"cluster"`
	// Intact is true when every member's log verifies and the database
	// holds no log the cluster file does not name.
	Intact bool `json:"intact"`
	// Integrity is the statement the verdict rests on: every log, the
	// key it was verified with and the checkpoint it was verified
	// against.
	Integrity string          `json:"integrity"`
	Members   []memberSection `json:"members"`
	// Unlisted are the database's logs the cluster file does not name.
	Unlisted []string `json:"unlisted_logs"`
	// Shared are the session IDs that several members' logs start.
	Shared        []sharedSession `json:"shared_sessions"`
	VerifyCommand string          `json:"verify_command"`
}

// memberSection is one member's part of a cluster's report.
type memberSection struct {
	Member uint16 `json:"member"`
	Log    string `json:"log"`
	Key    string `json:"key"`
	// Dir holds the member's full report, relative to the report's.
	Dir string `json:"dir,omitempty"`
	// Missing says the database holds no log of the member's name.
	Missing      bool                   `json:"missing,omitempty"`
	Intact       bool                   `json:"intact"`
	Anchor       *evidence.Anchor       `json:"anchor,omitempty"`
	Checkpoint   *evidence.Checkpoint   `json:"checkpoint,omitempty"`
	Verification *evidence.Verification `json:"verification,omitempty"`
	Summary      *evidence.Summary      `json:"summary,omitempty"`
	// SHA256 are the hex SHA-256 digests of the member's report's files
	// (memberReportFiles), by name in Dir: the cluster's report, which
	// evidence.sig signs, covers them so.
	SHA256 map[string]string `json:"sha256,omitempty"`
}

// memberReportFiles are the files of a member's report that its section
// of the cluster's report gives the digests of.
var memberReportFiles = []string{evidence.JSONFile, evidence.HTMLFile, "checkpoint.txt"}

// evidenceCluster writes the examiner's report of every member's log of
// the cluster in sc: each member's full report in DIR/member-ID (as a
// report of one journal, verified with that member's key only), and in
// DIR the cluster's report over them (evidence.json, evidence.html), which
// is what is recorded and signed. A kept checkpoint anchors the log of
// its origin. A --target or --identity must be named by some member's log.
func evidenceCluster(ctx context.Context, e *env, sc *readScope, job *reportJob, dir string, attrs recorder.Attrs, force, unrecorded bool) error {
	keptOrigin := ""
	if job.kept != nil {
		keptOrigin, _, _ = strings.Cut(string(job.kept), "\n")
	}
	unlisted, err := sc.unlisted(ctx)
	if err != nil {
		return exitCode(2, err)
	}
	attrs["logs"] = sc.logNames()
	if err := recordRead(ctx, e, sc.path, "evidence", attrs, unrecorded); err != nil {
		return err
	}
	out := &clusterReport{
		Format: ClusterReportFormat, GeneratedAt: job.now.UTC(), Journal: journalName(sc.path), Cluster: sc.clusterFile,
		Scope:    evidence.Scope{From: job.from.UTC(), To: job.to.UTC(), Targets: orEmpty(job.targets), Identities: orEmpty(job.identities)},
		Unlisted: orEmpty(unlisted), Intact: len(unlisted) == 0,
		VerifyCommand: termtext.ShellJoin([]string{"bastion", "verify", "--db", journalName(sc.path), "--cluster", sc.clusterFile}),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return exitCode(2, fmt.Errorf("evidence: %w", err))
	}
	var scopeErr *evidence.ScopeError
	scoped := 0
	var statement []string
	var facts []*logFacts
	for _, l := range sc.logs {
		sec := memberSection{Member: l.member, Log: l.name(), Key: l.key.Key}
		st, err := openReadOnly(ctx, sc.path, l.name())
		if errors.Is(err, postgres.ErrNoLog) {
			sec.Missing = true
			out.Intact = false
			out.Members = append(out.Members, sec)
			statement = append(statement, fmt.Sprintf("member %d, log %s: NO SUCH LOG in the database", l.member, l.name()))
			continue
		}
		if err != nil {
			return exitCode(2, err)
		}
		mj := *job
		mj.member = l.member
		if l.name() != keptOrigin {
			mj.kept, mj.keptFile = nil, ""
		}
		sub := filepath.Join(dir, fmt.Sprintf("member-%d", l.member))
		live := writerHeld(ctx, st, "")
		rep, err := mj.build(ctx, st, l.v, l.key, sc.path, sub, live, []string{"--cluster", sc.clusterFile}, false)
		var se *evidence.ScopeError
		if errors.As(err, &se) {
			scopeErr = se
			rep, err = mj.build(ctx, st, l.v, l.key, sc.path, sub, live, []string{"--cluster", sc.clusterFile}, true)
		} else if err == nil {
			scoped++
		}
		if err == nil {
			if err = os.MkdirAll(sub, 0o700); err == nil && force {
				err = clearOldReport(sub)
			}
		}
		if err == nil {
			err = mj.write(ctx, st, l.v, sub, rep)
		}
		st.Close()
		if err == nil {
			sec.SHA256 = map[string]string{}
			for _, name := range memberReportFiles {
				if sec.SHA256[name], err = evidence.DigestFile(sub, name); err != nil {
					break
				}
			}
		}
		if err != nil {
			return exitCode(2, fmt.Errorf("evidence of %s: %w", l.label(), err))
		}
		if f, err := readLogFacts(ctx, sc.path, l); err == nil {
			facts = append(facts, f)
		} else if !errors.Is(err, recorder.ErrLogDamaged) {
			return exitCode(2, fmt.Errorf("evidence of %s: %w", l.label(), err))
		}
		sec.Dir = filepath.Base(sub)
		sec.Intact = rep.Verification.Intact
		sec.Anchor, sec.Checkpoint, sec.Verification, sec.Summary = &rep.Anchor, &rep.Checkpoint, &rep.Verification, &rep.Summary
		out.Intact = out.Intact && sec.Intact
		verdict := "intact"
		if !sec.Intact {
			verdict = fmt.Sprintf("DOES NOT VERIFY (%d problem(s))", len(rep.Verification.Problems))
		}
		statement = append(statement, fmt.Sprintf("member %d, log %s, key %s: %s against its checkpoint of size %d, root %s (%s; anchor %s, %s)",
			l.member, l.name(), recorder.KeyName(l.key.Key), verdict, rep.Checkpoint.Size, rep.Checkpoint.Root, rep.Checkpoint.Why, rep.Anchor.Level, rep.Anchor.Basis))
		out.Members = append(out.Members, sec)
	}
	if scopeErr != nil && scoped == 0 {
		return exitCode(1, withHint(fmt.Errorf("no member's log names it: %w", scopeErr), `"bastion sessions list" shows every member's sessions`))
	}
	for _, n := range unlisted {
		statement = append(statement, fmt.Sprintf("log %s is in the database and not in the cluster file: no key given verifies it, and this report covers nothing of it", n))
	}
	out.Shared = sharedSessions(facts)
	for _, d := range out.Shared {
		out.Intact = false
		statement = append(statement, sharedSessionError(d).Error()+": session IDs are random, so one claim is damage or forgery, and the cluster does NOT verify")
		fmt.Fprintf(e.stderr, "bastion: error: %s\n", messageText(sharedSessionError(d).Error()))
	}
	out.Integrity = fmt.Sprintf("This report covers %d member log(s) of the cluster file %s in %s; each was verified with its own member's key only, and nothing one member signed vouches for another's log. ",
		len(sc.logs), sc.clusterFile, journalName(sc.path)) + strings.Join(statement, "; ") + "."
	if force {
		if err := os.Remove(filepath.Join(dir, evidence.SignatureFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return exitCode(2, fmt.Errorf("--out %s: %w", dir, err))
		}
	}
	if err := writeReportFiles(dir, []reportFile{
		{evidence.JSONFile, jsonFile(out)},
		{evidence.HTMLFile, func(w io.Writer) error { return clusterHTML.Execute(w, out) }},
	}); err != nil {
		return err
	}
	sig, leaf, err := recordReport(ctx, e, sc.path, dir, attrs, unrecorded)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "evidence for %s to %s of %d cluster member(s) written to %s\n", job.from.UTC().Format(time.RFC3339), job.to.UTC().Format(time.RFC3339), len(sc.logs), dir)
	if sig != nil {
		fmt.Fprintf(e.stdout, "  recorded at leaf %d; %s is the recording log's key's note over the report's digests\n", leaf, evidence.SignatureFile)
	}
	for _, m := range out.Members {
		switch {
		case m.Missing:
			fmt.Fprintf(e.stdout, "  member %d (%s): NO SUCH LOG in the database\n", m.Member, termtext.Line(m.Log))
		case m.Intact:
			fmt.Fprintf(e.stdout, "  member %d (%s): intact, anchor %s; %d sessions, %d grants, %d refusals; %s/\n", m.Member, termtext.Line(m.Log), m.Anchor.Level, m.Summary.Sessions, m.Summary.Grants, m.Summary.Refusals, m.Dir)
		default:
			fmt.Fprintf(e.stdout, "  member %d (%s): does NOT verify (%d problem(s)); %s/\n", m.Member, termtext.Line(m.Log), len(m.Verification.Problems), m.Dir)
		}
	}
	for _, n := range out.Unlisted {
		fmt.Fprintf(e.stdout, "  log %s: in the database and not in the cluster file: not covered\n", termtext.Line(n))
	}
	for _, d := range out.Shared {
		fmt.Fprintf(e.stdout, "  %s\n", termtext.Line(sharedSessionError(d).Error()))
	}
	if !out.Intact {
		fmt.Fprintln(e.stdout, "cluster: does NOT verify; the report says so first")
		return exitCode(1, nil)
	}
	fmt.Fprintln(e.stdout, "cluster: every member's log intact")
	return nil
}

var clusterHTML = template.Must(template.New("cluster").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Examiner's report: cluster, {{.Scope.From.Format "2006-01-02"}} to {{.Scope.To.Format "2006-01-02"}}</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em;text-align:left}.bad{color:#a00;font-weight:bold}pre{white-space:pre-wrap}</style>
</head><body>
<h1>Examiner's report of a bastion cluster</h1>
<p>Period {{.Scope.From.Format "2006-01-02T15:04:05Z07:00"}} to {{.Scope.To.Format "2006-01-02T15:04:05Z07:00"}}; generated {{.GeneratedAt.Format "2006-01-02T15:04:05Z07:00"}}; journal {{.Journal}}; cluster file {{.Cluster}}.</p>
<h2>Integrity statement</h2>
{{if .Intact}}<p>Every member's log verifies.</p>{{else}}<p class="bad">The cluster's journal does NOT verify: see below.</p>{{end}}
<p>{{.Integrity}}</p>
<p>Check it independently: <code>{{.VerifyCommand}}</code></p>
{{range .Unlisted}}<p class="bad">Log {{.}} is in the database and not in the cluster file: not covered.</p>{{end}}
{{range .Shared}}<p class="bad">Session {{.Session}} is started by more than one log ({{range $i, $l := .Logs}}{{if $i}}, {{end}}{{$l}}{{end}}): damage or forgery.</p>{{end}}
<h2>Members</h2>
{{range .Members}}<section>
<h3>Member {{.Member}}: log {{.Log}}</h3>
<p>Key: <code>{{.Key}}</code></p>
{{if .Missing}}<p class="bad">No log of this name in the database.</p>{{else}}
<p>{{if .Intact}}Intact{{else}}<span class="bad">Does NOT verify ({{len .Verification.Problems}} problem(s))</span>{{end}}; anchor {{.Anchor.Level}} ({{.Anchor.Basis}}): {{.Anchor.What}}</p>
<table>
<tr><th>checkpoint</th><td>size {{.Checkpoint.Size}}, root {{.Checkpoint.Root}} ({{.Checkpoint.Why}})</td></tr>
<tr><th>identities</th><td>{{.Summary.Identities}}</td></tr>
<tr><th>grants</th><td>{{.Summary.Grants}}</td></tr>
<tr><th>sessions</th><td>{{.Summary.Sessions}}</td></tr>
<tr><th>refusals</th><td>{{.Summary.Refusals}}</td></tr>
<tr><th>journal reads</th><td>{{.Summary.JournalAccesses}}</td></tr>
</table>
<pre>{{.Checkpoint.Note}}</pre>
<p>Full report: <a href="{{.Dir}}/evidence.html">{{.Dir}}/evidence.html</a> ({{.Dir}}/evidence.json)</p>
{{$dir := .Dir}}<table>{{range $name, $sum := .SHA256}}<tr><th>{{$dir}}/{{$name}}</th><td>SHA-256 <code>{{$sum}}</code></td></tr>{{end}}</table>
{{end}}</section>
{{end}}
</body></html>
`))
