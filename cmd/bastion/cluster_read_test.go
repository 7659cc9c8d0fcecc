package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage/postgres"
	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// TestClusterReaders reads a PostgreSQL journal holding two members' logs
// (written by two homes made with ca init --join, with "bastion record")
// through a cluster file: verify covers both, sessions list shows both
// members' sessions, play, export and sessions show find a session in
// either log, one evidence report covers both; a wrong key or a log the
// cluster file leaves out fails verify, naming it; reads are journaled
// through serve's API as the reader's token names them, refused for an
// identity that is no auditor and when the API is unreachable; a frame
// changed in one member's log fails verify for that member only.
func TestClusterReaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDatabase(t)
	base := t.TempDir()
	homeA, homeB := filepath.Join(base, "a"), filepath.Join(base, "b")
	if code, _, errOut := cli(ctx, homeA, "ca", "init", "--origin", "a.example/journal"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	if code, _, errOut := cli(ctx, homeB, "ca", "init", "--origin", "b.example/journal", "--join", homeA); code != 0 {
		t.Fatalf("ca init --join: %s", errOut)
	}
	for _, r := range []struct{ home, word string }{{homeA, "alpha"}, {homeB, "beta"}} {
		if code, _, errOut := cli(ctx, r.home, "record", "--db", dsn, "--", "sh", "-c", "echo "+r.word); code != 0 {
			t.Fatalf("record: %d %s", code, errOut)
		}
	}
	pub := func(home string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(home, certauth.JournalPubKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	writeCluster := func(path string, lines ...string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("# test cluster\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The auditor's machine: a home with the cluster file only, no key.
	aud := filepath.Join(base, "auditor")
	writeCluster(filepath.Join(aud, "cluster.pub"), "1 "+pub(homeA), "2 "+pub(homeB))
	writeCluster(filepath.Join(homeA, "cluster.pub"), "1 "+pub(homeA), "2 "+pub(homeB))

	code, out, errOut := cli(ctx, aud, "verify", "--db", dsn)
	if code != 0 || !strings.Contains(out, "member 1, log a.example/journal") || !strings.Contains(out, "member 2, log b.example/journal") ||
		strings.Count(out, "result: intact") != 2 || !strings.Contains(out, "cluster: intact, 2 member log(s)") {
		t.Fatalf("verify of the cluster: %d\n%s\n%s", code, out, errOut)
	}

	code, out, errOut = cli(ctx, aud, "sessions", "list", "--db", dsn, "--json")
	var list []sessionJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("sessions list: %d\n%s\n%s", code, out, errOut)
	}
	ids := map[string]string{}
	for _, s := range list {
		ids[fmt.Sprint(s.Member, " ", s.Log, " ", s.Summary)] = s.ID
	}
	idA, idB := ids["1 a.example/journal sh -c 'echo alpha'"], ids["2 b.example/journal sh -c 'echo beta'"]
	if len(list) != 2 || idA == "" || idB == "" {
		t.Fatalf("sessions list does not show both members' sessions: %+v", list)
	}
	if code, out, _ = cli(ctx, aud, "sessions", "list", "--db", dsn); code != 0 || !regexp.MustCompile(`(?m)^MEMBER\s+ID\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^2\s+`+idB).MatchString(out) {
		t.Fatalf("sessions list (text): %d\n%s", code, out)
	}

	// A kept checkpoint of each member's log, in one run; two of one
	// log are refused.
	var kept []string
	for _, h := range []string{homeA, homeB} {
		code, cp, errOut := cli(ctx, aud, "checkpoint", "--db", dsn, "--key", filepath.Join(h, certauth.JournalPubKeyFile))
		if code != 0 {
			t.Fatalf("checkpoint: %d %s", code, errOut)
		}
		kept = append(kept, filepath.Join(base, filepath.Base(h)+".kept"))
		if err := os.WriteFile(kept[len(kept)-1], []byte(cp), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--unrecorded", "--checkpoint", kept[0], "--checkpoint", kept[1]); code != 0 ||
		strings.Count(out, "kept checkpoint: size ") != 2 || strings.Contains(out, "NOT consistent") {
		t.Fatalf("verify with a kept checkpoint of each member: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut = cli(ctx, aud, "verify", "--db", dsn, "--unrecorded", "--checkpoint", kept[1], "--checkpoint", kept[1]); code != 2 ||
		!strings.Contains(errOut, "are both of log b.example/journal") {
		t.Fatalf("verify with two kept checkpoints of one log: %d\n%s", code, errOut)
	}

	// verify --session verifies the log that holds it.
	if code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--session", idB); code != 0 || !strings.Contains(out, "member 2, log b.example/journal") ||
		strings.Contains(out, "member 1, log") {
		t.Fatalf("verify --session: %d\n%s\n%s", code, out, errOut)
	}

	// Play, show and export find a session in either log; homeA records
	// its reads itself, in its own log, as no writer holds it.
	if code, out, errOut = cli(ctx, homeA, "play", "--db", dsn, "--speed", "max", idB); code != 0 || !strings.Contains(out, "beta") || !strings.Contains(errOut, "member 2 (b.example/journal)") {
		t.Fatalf("play of member 2's session: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli(ctx, homeA, "sessions", "show", "--db", dsn, idB[:23]); code != 0 || !strings.Contains(out, "member:     2, log b.example/journal") {
		t.Fatalf("sessions show: %d\n%s\n%s", code, out, errOut)
	}
	bundle := filepath.Join(base, "a.bundle")
	if code, _, errOut = cli(ctx, homeA, "export", "--db", dsn, "--format", "bundle", "--out", bundle, idA); code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	if code, out, errOut = cli(ctx, aud, "verify", "--bundle", bundle, "--key", filepath.Join(homeA, certauth.JournalPubKeyFile)); code != 0 {
		t.Fatalf("verify --bundle: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli(ctx, homeA, "sessions", "search", "--db", dsn, "beta"); code != 0 || !strings.HasPrefix(out, "member 2  "+idB) {
		t.Fatalf("sessions search: %d\n%s\n%s", code, out, errOut)
	}

	// One report covers both members, each on its own log and checkpoint.
	day := time.Now().UTC()
	report := filepath.Join(base, "report")
	code, out, errOut = cli(ctx, homeA, "evidence", "--db", dsn, "--from", day.Add(-time.Hour).Format(time.RFC3339), "--to", day.Add(time.Hour).Format(time.RFC3339), "--out", report)
	if code != 0 {
		t.Fatalf("evidence: %d\n%s\n%s", code, out, errOut)
	}
	var rep clusterReport
	data, err := os.ReadFile(filepath.Join(report, "evidence.json"))
	if err != nil || json.Unmarshal(data, &rep) != nil {
		t.Fatalf("cluster report: %v\n%s", err, data)
	}
	if !rep.Intact || len(rep.Members) != 2 || !strings.Contains(rep.Integrity, "log a.example/journal") || !strings.Contains(rep.Integrity, "log b.example/journal") ||
		rep.Members[1].Summary.Sessions != 1 || rep.Members[1].Checkpoint.Size == 0 {
		t.Fatalf("cluster report: %s", data)
	}
	for _, f := range []string{"evidence.sig", "evidence.html", "member-1/evidence.json", "member-2/evidence.html", "member-2/checkpoint.txt"} {
		if _, err := os.Stat(filepath.Join(report, f)); err != nil {
			t.Fatalf("report: %v", err)
		}
	}

	// A wrong key for member 2 (its name, another key) fails it, and
	// member 1 still verifies.
	other := filepath.Join(base, "other")
	if code, _, errOut := cli(ctx, other, "ca", "init", "--origin", "b.example/journal"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	wrong := writeCluster(filepath.Join(base, "wrong.pub"), "1 "+pub(homeA), "2 "+pub(other))
	if code, out, _ = cli(ctx, aud, "verify", "--db", dsn, "--cluster", wrong); code != 1 || !strings.Contains(out, "cluster: FAILED: member 2 (b.example/journal)") ||
		!strings.Contains(out, "result: intact") {
		t.Fatalf("verify with a wrong key for member 2: %d\n%s", code, out)
	}
	// A log the cluster file leaves out is reported, not ignored.
	partial := writeCluster(filepath.Join(base, "partial.pub"), "1 "+pub(homeA))
	if code, out, _ = cli(ctx, aud, "verify", "--db", dsn, "--cluster", partial); code != 1 || !strings.Contains(out, "unlisted log: b.example/journal") {
		t.Fatalf("verify with a log left out: %d\n%s", code, out)
	}
	if code, _, errOut = cli(ctx, aud, "sessions", "list", "--db", dsn, "--cluster", partial); code != 1 || !strings.Contains(errOut, `log "b.example/journal" is in the database and not in the cluster file`) {
		t.Fatalf("sessions list with a log left out: %d\n%s", code, errOut)
	}

	// serve holds member 1's log; reads go through its API.
	cfg := filepath.Join(base, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`home = %q
journal = %q
api { listen = "127.0.0.1:0" }
identity "audit" {
  providers = ["dev"]
  subjects  = ["carol"]
}
auditors = ["audit"]
`, homeA, dsn)), 0o600); err != nil {
		t.Fatal(err)
	}
	api, fp, stop := startClusterServe(ctx, t, homeA, cfg, dsn)
	token := func(sub string) string {
		t.Helper()
		code, tok, errOut := cli(ctx, homeA, "dev", "token", "--sub", sub)
		if code != 0 {
			t.Fatalf("dev token: %s", errOut)
		}
		f := filepath.Join(base, sub+".token")
		if err := os.WriteFile(f, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	carol, mallory := token("carol"), token("mallory")
	// verify and evidence learn from each member's log's writer lock
	// whether a writer holds it (so that witnesses' lag is not a
	// problem): serve holds member 1's, nobody member 2's.
	live := func(name string) bool {
		t.Helper()
		st, err := postgres.Open(ctx, dsn, name, postgres.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return writerHeld(ctx, st, "")
	}
	if !live("a.example/journal") || live("b.example/journal") {
		t.Fatalf("writer held: member 1 %v, member 2 %v; want true, false", live("a.example/journal"), live("b.example/journal"))
	}
	// Without --server, a reader of a log serve holds is refused.
	if code, _, errOut = cli(ctx, homeA, "play", "--db", dsn, "--speed", "max", idB); code != 1 || !strings.Contains(errOut, "--server URL") {
		t.Fatalf("play without --server while serve holds the log: %d\n%s", code, errOut)
	}
	code, out, errOut = cli(ctx, aud, "play", "--db", dsn, "--speed", "max", "--server", api, "--ca-fingerprint", fp, "--token-file", carol, idB)
	m := regexp.MustCompile(`recorded by \S+ in log a\.example/journal at leaf (\d+), as carol@dev`).FindStringSubmatch(errOut)
	if code != 0 || !strings.Contains(out, "beta") || m == nil {
		t.Fatalf("play through the API: %d\n%s\n%s", code, out, errOut)
	}
	readLeaf, _ := strconv.ParseInt(m[1], 10, 64)
	if code, out, errOut = cli(ctx, aud, "play", "--db", dsn, "--speed", "max", "--server", api, "--ca-fingerprint", fp, "--token-file", mallory, idB); code != 1 ||
		strings.Contains(out, "beta") || !strings.Contains(errOut, "not one of this bastion's auditors or operators") {
		t.Fatalf("play by a non-reader: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli(ctx, aud, "sessions", "show", "--db", dsn, "--server", "https://127.0.0.1:1", "--ca-fingerprint", fp, "--token-file", carol, idA); code != 1 ||
		strings.Contains(out, "alpha") || !strings.Contains(errOut, "did not record it") {
		t.Fatalf("sessions show with the API unreachable: %d\n%s\n%s", code, out, errOut)
	}
	// The endpoint refuses a request without a token, and attributes a
	// reader may not set.
	client, err := apiclient.NewClient(api, apiclient.ClientOptions{Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(carol)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		token  string
		req    certauth.ReadRequest
		status int
	}{
		{"", certauth.ReadRequest{Action: "play"}, 401},
		{strings.TrimSpace(string(tok)), certauth.ReadRequest{Action: "play", Attrs: map[string]string{"via": "reader"}}, 400},
		{strings.TrimSpace(string(tok)), certauth.ReadRequest{Action: "steal"}, 400},
		{strings.TrimSpace(string(tok)), certauth.ReadRequest{Event: "evidence.generated", Attrs: map[string]string{"sha256.html": "x"}}, 400},
	} {
		_, err := client.RecordRead(ctx, c.token, c.req)
		var ae *apiclient.APIError
		if !errors.As(err, &ae) || ae.Status != c.status {
			t.Fatalf("POST /v1/reads %+v: %v, want %d", c.req, err, c.status)
		}
	}
	report2 := filepath.Join(base, "report2")
	if code, out, errOut = cli(ctx, aud, "evidence", "--db", dsn, "--from", day.Add(-time.Hour).Format(time.RFC3339), "--to", day.Add(time.Hour).Format(time.RFC3339),
		"--out", report2, "--server", api, "--ca-fingerprint", fp, "--token-file", carol); code != 0 || !strings.Contains(out, "recorded at leaf") {
		t.Fatalf("evidence through the API: %d\n%s\n%s", code, out, errOut)
	}
	stop()
	if live("a.example/journal") {
		t.Fatal("member 1's log is held by a writer after serve stopped")
	}
	// The report's signature is the recording member's key's, and its
	// record in that member's log names carol.
	if code, out, errOut = cli(ctx, aud, "verify", "--report", report2, "--key", filepath.Join(homeA, certauth.JournalPubKeyFile), "--db", dsn); code != 0 ||
		!strings.Contains(out, "made by:    carol@dev (token), recorded by serve's API") {
		t.Fatalf("verify --report of the cluster's report: %d\n%s\n%s", code, out, errOut)
	}

	// The read is in member 1's log, verified, naming carol.
	st, err := postgres.Open(ctx, dsn, "a.example/journal", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := recorder.ParseVerifierKey(pub(homeA))
	if err != nil {
		t.Fatal(err)
	}
	log, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: v, Events: func(e string) bool { return e == recorder.EventJournalAccessed }})
	snap.Close()
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range log.Events {
		a := ev.Leaf.Attrs
		if ev.Index == readLeaf {
			found = a["via"] == "api" && a["identity"] == "carol@dev" && a["reader.role"] == "auditor" && a["action"] == "play" && a["session"] == idB &&
				a["logs"] == "2=b.example/journal"
			if !found {
				t.Fatalf("the read's leaf: %v", a)
			}
		}
		if a["identity"] == "mallory@dev" {
			t.Fatalf("a refused read was journaled: %v", a)
		}
	}
	if !found {
		t.Fatalf("no journal.accessed leaf %d in member 1's log", readLeaf)
	}

	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// A session two logs claim: member 3 (a forger with its own key)
	// copies member 2's log into its own and signs it. Each log verifies
	// with its own key; the cluster does not, and no reader shows the
	// session or lists either log's sessions.
	keyC := forgeLogCopy(ctx, t, db, "b.example/journal", "c.example/journal")
	three := writeCluster(filepath.Join(base, "three.pub"), "1 "+pub(homeA), "2 "+pub(homeB), "3 "+keyC)
	code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--cluster", three, "--unrecorded")
	if code != 1 || strings.Count(out, "result: intact") != 3 ||
		!strings.Contains(out, "shared session: session "+idB+" is claimed by 2 logs: member 2 (b.example/journal), member 3 (c.example/journal)") ||
		!strings.Contains(out, "cluster: FAILED: 1 session ID(s) claimed by more than one log") {
		t.Fatalf("verify of a cluster whose logs share a session: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli(ctx, aud, "sessions", "list", "--db", dsn, "--cluster", three); code != 1 || strings.Contains(out, idB) ||
		!strings.Contains(out, idA) || !strings.Contains(errOut, "session "+idB+" is claimed by 2 logs") {
		t.Fatalf("sessions list of a cluster whose logs share a session: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli(ctx, aud, "export", "--db", dsn, "--cluster", three, "--format", "asciicast", "--unrecorded", idB); code != 1 || strings.Contains(out, "beta") ||
		!strings.Contains(errOut, "claimed by 2 logs: member 2 (b.example/journal), member 3 (c.example/journal)") {
		t.Fatalf("export of a session two logs claim: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--cluster", three, "--unrecorded", "--session", idB); code != 1 ||
		!strings.Contains(errOut, "claimed by 2 logs") {
		t.Fatalf("verify --session of a session two logs claim: %d\n%s\n%s", code, out, errOut)
	}
	report3 := filepath.Join(base, "report3")
	code, out, errOut = cli(ctx, aud, "evidence", "--db", dsn, "--cluster", three, "--unrecorded", "--from", day.Add(-time.Hour).Format(time.RFC3339),
		"--to", day.Add(time.Hour).Format(time.RFC3339), "--out", report3)
	var rep3 clusterReport
	data, err = os.ReadFile(filepath.Join(report3, "evidence.json"))
	if code != 1 || err != nil || json.Unmarshal(data, &rep3) != nil || rep3.Intact || len(rep3.Shared) != 1 || rep3.Shared[0].Session != idB ||
		!strings.Contains(rep3.Integrity, "session "+idB+" is claimed by 2 logs") || !strings.Contains(errOut, "session "+idB+" is claimed by 2 logs") {
		t.Fatalf("evidence of a cluster whose logs share a session: %d %v\n%s\n%s\n%s", code, err, out, errOut, data)
	}
	if _, err := db.Exec(ctx, `DELETE FROM bastion.logs WHERE name = 'c.example/journal'`); err != nil {
		t.Fatal(err)
	}

	// The report's signature covers every member's files: one changed
	// fails verify --report, naming it.
	if code, out, errOut = cli(ctx, aud, "verify", "--report", report, "--key", filepath.Join(homeA, certauth.JournalPubKeyFile)); code != 0 ||
		!strings.Contains(out, "member-2/evidence.json: sha256 ") || !strings.Contains(out, "member-1/checkpoint.txt: sha256 ") {
		t.Fatalf("verify --report of the cluster's report: %d\n%s\n%s", code, out, errOut)
	}
	mj := filepath.Join(report, "member-2", "evidence.json")
	data, err = os.ReadFile(mj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mj, []byte(strings.Replace(string(data), `"intact": false`, `"intact": true`, 1)+" "), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(report, "member-1", "evidence.html")); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = cli(ctx, aud, "verify", "--report", report, "--key", filepath.Join(homeA, certauth.JournalPubKeyFile)); code != 1 ||
		!regexp.MustCompile(`member-2/evidence\.json: sha256 \w+, NOT the signed`).MatchString(out) || !strings.Contains(out, "member-1/evidence.html: missing") ||
		!strings.Contains(out, "result: FAILED, 2 problem(s)") {
		t.Fatalf("verify --report of a cluster's report with member files changed: %d\n%s\n%s", code, out, errOut)
	}

	// A frame changed in member 2's log: verify names member 2, and
	// member 1 still verifies.
	tag, err := db.Exec(ctx, `UPDATE bastion.frames SET payload = 'gamma' || payload
		WHERE (log_id, session, seq) = (SELECT log_id, session, seq FROM bastion.frames WHERE log_id = (SELECT id FROM bastion.logs WHERE name = 'b.example/journal') AND length(payload) > 0 ORDER BY session, seq LIMIT 1)`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("tamper: %v %v", err, tag)
	}
	code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--unrecorded")
	first, second, _ := strings.Cut(out, "member 2, log b.example/journal")
	if code != 1 || !strings.Contains(out, "cluster: FAILED: member 2 (b.example/journal)") || !strings.Contains(first, "result: intact") || !strings.Contains(second, "result: FAILED") {
		t.Fatalf("verify after a frame of member 2 changed: %d\n%s\n%s", code, out, errOut)
	}

	// Member 1's log issues a certificate, its serial numbered with ID 1
	// as serve's issuer numbers it. A cluster file that gives that log
	// ID 2 fails it (docs/journal-format.md, section 10, step 10), in
	// verify --cluster and in the report's verification alike.
	keyA, err := certauth.LoadJournalKey(homeA)
	if err != nil {
		t.Fatal(err)
	}
	stA, err := postgres.Open(ctx, dsn, "a.example/journal", postgres.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	baseA, _ := recorder.NumberOf(1, 0)
	jA, err := recorder.Open(ctx, stA, recorder.Options{Key: keyA, IndexBase: baseA})
	if err != nil {
		t.Fatal(err)
	}
	issued, err := jA.AppendIndexedEvent(ctx, events.CertIssued, recorder.Attrs{"identity": "agent@dev"}, "serial")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(jA.Close(), stA.Close()); err != nil {
		t.Fatal(err)
	}
	serial, _ := recorder.NumberOf(1, issued)
	wantProblem := fmt.Sprintf("leaf %d (event cert.issued): serial %d carries member ID 1, and this is member 2's log", issued, serial)
	swapped := writeCluster(filepath.Join(base, "swapped.pub"), "2 "+pub(homeA), "1 "+pub(homeB))
	if code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--cluster", swapped, "--unrecorded"); code != 1 || !strings.Contains(out, wantProblem) {
		t.Fatalf("verify --cluster with member 1's log given ID 2: %d, want 1 and %q\n%s\n%s", code, wantProblem, out, errOut)
	}
	if code, out, errOut = cli(ctx, aud, "verify", "--db", dsn, "--cluster", writeCluster(filepath.Join(base, "right.pub"), "1 "+pub(homeA), "2 "+pub(homeB)), "--unrecorded"); strings.Contains(out, "cert.issued") {
		t.Fatalf("verify --cluster with the right IDs finds a serial problem: %d\n%s\n%s", code, out, errOut)
	}
	report4 := filepath.Join(base, "report4")
	code, out, errOut = cli(ctx, aud, "evidence", "--db", dsn, "--cluster", swapped, "--unrecorded", "--from", day.Add(-time.Hour).Format(time.RFC3339),
		"--to", day.Add(time.Hour).Format(time.RFC3339), "--out", report4)
	data, err = os.ReadFile(filepath.Join(report4, "member-2", "evidence.json"))
	if code != 1 || err != nil || !strings.Contains(string(data), wantProblem) {
		t.Fatalf("evidence --cluster with member 1's log given ID 2: %d %v, want %q in member-2/evidence.json\n%s\n%s", code, err, wantProblem, out, errOut)
	}
}

// startClusterServe runs serve --dev with cfg until the test stops it,
// and returns its API's URL and TLS fingerprint once it has journaled its
// start in the database dsn.
func startClusterServe(ctx context.Context, t *testing.T, home, cfg, dsn string) (api, fp string, stop func()) {
	t.Helper()
	sctx, cancel := context.WithCancel(ctx)
	var serveOut, serveErr lockedBuffer
	done := make(chan int, 1)
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &serveOut, stderr: &serveErr, getenv: func(k string) string {
			if k == "BASTION_HOME" {
				return home
			}
			return ""
		}}
		done <- run(sctx, []string{"serve", "--dev", "--config", cfg}, e)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d:\n%s", code, serveErr.String())
		}
	}
	t.Cleanup(stop)
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for started := 0; api == "" || fp == "" || started == 0; time.Sleep(20 * time.Millisecond) {
		out := serveOut.String()
		if m := regexp.MustCompile(`HTTPS API at (https://\S+)`).FindStringSubmatch(out); m != nil {
			api = m[1]
		}
		if m := regexp.MustCompile(`fingerprint (SHA256:\S+)`).FindStringSubmatch(out); m != nil {
			fp = m[1]
		}
		if err := db.QueryRow(ctx, "SELECT count(*) FROM bastion.leaves WHERE event = 'serve.started'").Scan(&started); err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-done:
			stopped = true
			t.Fatalf("serve exited %d:\n%s\n%s", code, out, serveErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s\n%s", out, serveErr.String())
		}
	}
	return api, fp, stop
}

// forgeLogCopy copies every row of log from into a new log to in the
// database, and signs its checkpoints with a new key named to: what a
// member that copies another's records into its own log leaves. It
// returns the new key's verifier key.
func forgeLogCopy(ctx context.Context, t *testing.T, db *pgx.Conn, from, to string) string {
	t.Helper()
	k, _ := recordertest.NewKey(t, to)
	var src, dst int
	if err := db.QueryRow(ctx, `SELECT id FROM bastion.logs WHERE name = $1`, from).Scan(&src); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `INSERT INTO bastion.logs (name) VALUES ($1) RETURNING id`, to).Scan(&dst); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO bastion.meta SELECT $2, key, value FROM bastion.meta WHERE log_id = $1`,
		`INSERT INTO bastion.sessions SELECT $2, num, id, start_leaf FROM bastion.sessions WHERE log_id = $1`,
		`INSERT INTO bastion.frames SELECT $2, session, seq, kind, channel, mono_ns, wall_ns, payload, chain FROM bastion.frames WHERE log_id = $1`,
		`INSERT INTO bastion.leaves SELECT $2, idx, type, session, event, data FROM bastion.leaves WHERE log_id = $1`,
		`INSERT INTO bastion.tree_hashes SELECT $2, idx, hash FROM bastion.tree_hashes WHERE log_id = $1`,
		`INSERT INTO bastion.checkpoints SELECT $2, tree_size, created_ns, note FROM bastion.checkpoints WHERE log_id = $1`,
		`INSERT INTO bastion.head SELECT $2, tree_size, created_ns, note FROM bastion.head WHERE log_id = $1`,
	} {
		if _, err := db.Exec(ctx, q, src, dst); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.Exec(ctx, `UPDATE bastion.meta SET value = CASE key WHEN 'origin' THEN $2 ELSE $3 END WHERE log_id = $1 AND key IN ('origin', 'verifier_key')`, dst, to, k.VerifierKey); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"checkpoints", "head"} {
		rows, err := db.Query(ctx, `SELECT tree_size, note FROM bastion.`+table+` WHERE log_id = $1`, dst)
		if err != nil {
			t.Fatal(err)
		}
		notes := map[int64][]byte{}
		for rows.Next() {
			var size int64
			var n []byte
			if err := rows.Scan(&size, &n); err != nil {
				t.Fatal(err)
			}
			notes[size] = n
		}
		rows.Close()
		for size, n := range notes {
			lines := strings.SplitN(string(n), "\n", 4)
			root, err := base64.StdEncoding.DecodeString(lines[2])
			if err != nil {
				t.Fatal(err)
			}
			signed, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: to, Size: size, Root: recorder.Hash(root)}, k.Signer)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, `UPDATE bastion.`+table+` SET note = $3 WHERE log_id = $1 AND tree_size = $2`, dst, size, signed); err != nil {
				t.Fatal(err)
			}
		}
	}
	return k.VerifierKey
}
