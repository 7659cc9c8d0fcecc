package bastion

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/witness"
	"github.com/bastionhq/bastion/recorder/witness/witnesstest"
)

// leafAt returns the event leaf at index idx of the journal, and its name.
func (fx *consoleFixture) leafAt(t *testing.T, idx int64, name string) *recorder.Leaf {
	t.Helper()
	ctx := context.Background()
	snap, err := fx.ts.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	evs, err := recorder.Events(ctx, snap, fx.ts.key.Verifier, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Index == idx {
			return e.Leaf
		}
	}
	return nil
}

// checkReportZip checks a report downloaded from the console as "bastion
// verify --report ZIP" checks it (evidence.CheckSignature over the zip's
// files, then the journal's evidence.generated leaf at the signed index),
// and returns the leaf's attributes.
func (fx *consoleFixture) checkReportZip(t *testing.T, data []byte) recorder.Attrs {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("the download is not a zip archive: %v", err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	for _, want := range []string{evidence.HTMLFile, evidence.JSONFile, evidence.CheckpointFile, evidence.SignatureFile} {
		if !slices.Contains(names, want) {
			t.Errorf("the download lacks %s: %v", want, names)
		}
	}
	check, err := evidence.CheckSignature(zr, fx.ts.key.Verifier)
	if err != nil {
		t.Fatalf("the download's signature: %v", err)
	}
	for _, f := range check.Files {
		if !f.Intact() {
			t.Errorf("%s: sha256 %s, signed %s", f.Name, f.SHA256, f.Signed)
		}
	}
	leaf := fx.leafAt(t, check.Note.Leaf, recorder.EventEvidenceGenerated)
	if leaf == nil {
		t.Fatalf("no evidence.generated leaf at the signed index %d", check.Note.Leaf)
	}
	if leaf.Attrs["sha256.html"] != check.Note.SHA256HTML || leaf.Attrs["sha256.json"] != check.Note.SHA256JSON {
		t.Errorf("leaf %d records %v, the note signs %+v", check.Note.Leaf, leaf.Attrs, check.Note)
	}
	return leaf.Attrs
}

var shaOf = regexp.MustCompile(`id="(sha-html|sha-json|leaf)">([0-9a-f]+)<`)

// The evidence page: carol (an auditor) sees the journal verified now and
// makes today's report; the read and the report are journaled, naming
// her, before it is handed out, and the download verifies as "bastion
// verify --report" checks a report. Approvers and strangers are refused.
func TestConsoleEvidence(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	fx.liveSSH(t, "bob", "echo evidence; sleep 60")
	carol := fx.browser(t)
	fx.signIn(t, carol, "carol")
	resp, page := get(t, carol, fx.ts.APIURL()+"/ui/evidence")
	if resp.StatusCode != 200 {
		t.Fatalf("carol GET /ui/evidence: %d\n%s", resp.StatusCode, page)
	}
	wantSecurityHeaders(t, resp)
	assertInert(t, page)
	today := fx.now().UTC().Format(time.DateOnly)
	for _, want := range []string{
		`<td id="verdict" class="ok">OK: every leaf is proven against the signed head checkpoint</td>`,
		`<td id="origin">test.example/bastion</td>`,
		`id="no-witnesses"`,
		`<input type="text" name="from" value="` + today + `" required>`,
		`<a href="/ui/evidence" aria-current="page">Evidence</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the evidence page lacks %q:\n%s", want, page)
		}
	}
	checks := fx.ts.events(t, events.JournalAccessed)
	if len(checks) != 1 || checks[0]["action"] != "verify" || checks[0]["via"] != ViaConsole || checks[0]["identity"] != "carol@dev" {
		t.Errorf("the page's check journaled as %v", checks)
	}

	// Nothing to download before a report is made.
	if resp, _ := get(t, carol, fx.ts.APIURL()+"/ui/evidence/report.zip"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("report.zip before any report: %d", resp.StatusCode)
	}
	// A period that ends before it starts, and a target the journal
	// never names, are refused with the reason.
	csrf := csrfOf(t, page)
	tomorrow := fx.now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	for _, c := range []struct {
		vals url.Values
		want string
	}{
		{url.Values{"from": {tomorrow}, "to": {today}}, "the period ends before it starts"},
		{url.Values{"from": {"yesterday"}, "to": {today}}, "is not a date (2006-01-02)"},
		{url.Values{"from": {today}, "to": {tomorrow}, "targets": {"bx"}}, `no target &#34;bx&#34; in the journal; did you mean &#34;box&#34;?`},
	} {
		c.vals.Set("csrf", csrf)
		if resp, page := fx.postConsole(t, carol, "/ui/evidence", c.vals, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, c.want) {
			t.Errorf("report %v: %d, want 400 and %q\n%s", c.vals, resp.StatusCode, c.want, page)
		}
	}
	if gen := fx.ts.events(t, events.EvidenceGenerated); len(gen) != 0 {
		t.Fatalf("a refused report was journaled: %v", gen)
	}

	resp, page = fx.postConsole(t, carol, "/ui/evidence", url.Values{"csrf": {csrf}, "from": {today}, "to": {tomorrow}, "targets": {"box"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "The report is made and recorded at leaf") {
		t.Fatalf("carol makes today's report: %d\n%s", resp.StatusCode, page)
	}
	assertInert(t, page)
	shown := map[string]string{}
	for _, m := range shaOf.FindAllStringSubmatch(page, -1) {
		shown[m[1]] = m[2]
	}
	gen := fx.ts.events(t, events.EvidenceGenerated)
	if len(gen) != 1 {
		t.Fatalf("evidence.generated: %v", gen)
	}
	g := gen[0]
	from, _ := time.Parse(time.DateOnly, today)
	to, _ := time.Parse(time.DateOnly, tomorrow)
	if g["identity"] != "carol@dev" || g["via"] != ViaConsole || g["reader.role"] != "auditor" || g["client.address"] != "127.0.0.1" ||
		g["period.from"] != from.Format(time.RFC3339) || g["period.to"] != to.Format(time.RFC3339) || g["targets"] != "box" ||
		!recorder.IsSHA256Hex(g["sha256.html"]) || !recorder.IsSHA256Hex(g["sha256.json"]) ||
		g["sha256.html"] != shown["sha-html"] || g["sha256.json"] != shown["sha-json"] {
		t.Errorf("evidence.generated %v; the page shows %v", g, shown)
	}
	// The read before the report: the one that failed its filter, then
	// this one; the page's check once, when it was opened.
	var acts []string
	for _, a := range fx.ts.events(t, events.JournalAccessed) {
		if a["identity"] != "carol@dev" || a["via"] != ViaConsole {
			t.Errorf("journal.accessed: %v", a)
		}
		acts = append(acts, a["action"]+":"+a["targets"]+":"+a["period.from"])
	}
	if want := []string{"verify::", "evidence:bx:" + g["period.from"], "evidence:box:" + g["period.from"]}; !slices.Equal(acts, want) {
		t.Errorf("journal.accessed: %v, want %v", acts, want)
	}

	resp, err := carol.Get(fx.ts.APIURL() + "/ui/evidence/report.zip")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/zip" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="evidence-`) {
		t.Fatalf("report.zip: %d %v", resp.StatusCode, resp.Header)
	}
	leaf := fx.checkReportZip(t, data)
	if leaf["sha256.html"] != g["sha256.html"] || shown["leaf"] == "" {
		t.Errorf("the download's leaf %v, the journal's %v", leaf, g)
	}
	zr, _ := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	html, err := zipText(zr, evidence.HTMLFile)
	if err != nil || !strings.Contains(html, "bob@dev") || !strings.Contains(html, "bastion verify --db") {
		t.Errorf("evidence.html of the download: %v\n%.2000s", err, html)
	}

	// Only auditors and operators: lena (an approver) and mallory (whose
	// sign-in was refused: she holds no console session, so no token)
	// are refused the page, the report and its download.
	for _, sub := range []string{"lena", "mallory"} {
		b := fx.browser(t)
		fx.signIn(t, b, sub)
		var token string
		for _, path := range []string{"/ui/evidence", "/ui/evidence/report.zip"} {
			resp, page := get(t, b, fx.ts.APIURL()+path)
			if resp.StatusCode != http.StatusForbidden || strings.Contains(page, "verdict") {
				t.Errorf("%s GET %s: %d\n%s", sub, path, resp.StatusCode, page)
			}
			if sub == "lena" {
				token = csrfOf(t, page)
			}
		}
		vals := url.Values{"csrf": {token}, "from": {today}, "to": {tomorrow}}
		if resp, _ := fx.postConsole(t, b, "/ui/evidence", vals, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s POST /ui/evidence: %d", sub, resp.StatusCode)
		}
	}
	if n := len(fx.ts.events(t, events.EvidenceGenerated)); n != 1 {
		t.Errorf("%d evidence.generated leaves after the refusals, want 1", n)
	}
}

// TestConsoleEvidenceSerials: the evidence page's check of the journal
// includes verification's step 10, as bastion verify --key does: a signed
// cert.issued leaf whose serial is not its own leaf's index fails it.
func TestConsoleEvidenceSerials(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	idx, err := fx.ts.journal.AppendEvent(context.Background(), events.CertIssued, recorder.Attrs{"identity": "mallory@dev", "serial": "7"})
	if err != nil {
		t.Fatal(err)
	}
	carol := fx.browser(t)
	fx.signIn(t, carol, "carol")
	resp, page := get(t, carol, fx.ts.APIURL()+"/ui/evidence")
	want := fmt.Sprintf(`<td id="verdict" class="failed">FAILED: leaf %d (event cert.issued): serial 7 is not this leaf&#39;s`, idx)
	if resp.StatusCode != 200 || !strings.Contains(page, want) {
		t.Errorf("the evidence page (%d) lacks %q:\n%s", resp.StatusCode, want, page)
	}
}

// The reports held for their download take a bounded memory, all console
// sessions together: a new one drops the oldest held, whose page and
// download then say to make it again; a report larger than the bound is
// refused before it is journaled.
func TestConsoleEvidenceHeldBounded(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	today := fx.now().UTC().Format(time.DateOnly)
	tomorrow := fx.now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	type person struct {
		b    *http.Client
		csrf string
	}
	signIn := func(sub string) person {
		b := fx.browser(t)
		fx.signIn(t, b, sub)
		resp, page := get(t, b, fx.ts.APIURL()+"/ui/evidence")
		if resp.StatusCode != 200 {
			t.Fatalf("%s GET /ui/evidence: %d\n%s", sub, resp.StatusCode, page)
		}
		return person{b, csrfOf(t, page)}
	}
	makeReport := func(p person) (int, string) {
		t.Helper()
		resp, page := fx.postConsole(t, p.b, "/ui/evidence", url.Values{"csrf": {p.csrf}, "from": {today}, "to": {tomorrow}}, nil)
		return resp.StatusCode, page
	}
	download := func(p person) (int, []byte) {
		t.Helper()
		resp, err := p.b.Get(fx.ts.APIURL() + "/ui/evidence/report.zip")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, data
	}
	const dropped = "was dropped from memory to make room for newer reports: make it again to download it."
	wantDropped := func(who string, p person) {
		t.Helper()
		if _, page := get(t, p.b, fx.ts.APIURL()+"/ui/evidence"); !strings.Contains(page, dropped) || strings.Contains(page, `id="download"`) {
			t.Errorf("%s's evidence page does not say the report was dropped:\n%s", who, page)
		}
		if code, data := download(p); code != http.StatusGone || !strings.Contains(string(data), dropped) {
			t.Errorf("%s's dropped report.zip: %d, want 410 saying it was dropped\n%s", who, code, data)
		}
	}
	wantHeld := func(who string, p person) int {
		t.Helper()
		code, data := download(p)
		if code != 200 {
			t.Fatalf("%s's report.zip: %d\n%s", who, code, data)
		}
		fx.checkReportZip(t, data)
		return len(data)
	}

	alice, carol := signIn("alice"), signIn("carol")
	if code, page := makeReport(alice); code != 200 {
		t.Fatalf("alice makes a report: %d\n%s", code, page)
	}
	size := wantHeld("alice", alice)
	// Room for one report: the next journal's report is no smaller.
	fx.ts.console.SetBounds(console.Bounds{HeldReports: 2*int64(size) - 1})
	if code, page := makeReport(carol); code != 200 {
		t.Fatalf("carol makes a report: %d\n%s", code, page)
	}
	wantHeld("carol", carol)
	wantDropped("alice", alice)
	// Made again, alice's is held and carol's dropped.
	if code, page := makeReport(alice); code != 200 {
		t.Fatalf("alice makes her report again: %d\n%s", code, page)
	}
	wantHeld("alice", alice)
	wantDropped("carol", carol)

	// A report larger than the bound is refused, and not journaled.
	n := len(fx.ts.events(t, events.EvidenceGenerated))
	fx.ts.console.SetBounds(console.Bounds{HeldReports: 100})
	if code, page := makeReport(carol); code != http.StatusRequestEntityTooLarge || !strings.Contains(page, "the report is larger than the console hands out (100 B)") {
		t.Errorf("a report past the bound: %d, want 413\n%s", code, page)
	}
	if m := len(fx.ts.events(t, events.EvidenceGenerated)); m != n {
		t.Errorf("a refused report was journaled: %d evidence.generated leaves, then %d", n, m)
	}
	wantHeld("alice", alice)
}

// zipText is the text of the file name in zr.
func zipText(zr *zip.Reader, name string) (string, error) {
	f, err := zr.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

// With a witness (litewitness, on loopback): the evidence page shows its
// state and what it cosigned, and the report rests on it.
func TestConsoleEvidenceWitness(t *testing.T) {
	t.Parallel()
	var lw *witnesstest.Litewitness
	fx := startConsole(t, func(o *ServerOptions) {
		pub, err := os.ReadFile(filepath.Join(o.Home, certauth.JournalPubKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		lw = witnesstest.Start(t, "lw.test/w1", strings.TrimSpace(string(pub)))
		key, err := witness.ParseKey(lw.VKey)
		if err != nil {
			t.Fatal(err)
		}
		o.Config.Witnesses = WitnessesConfig{List: []WitnessConfig{{Name: "lw", URL: lw.URL, Key: key}}, Threshold: 1, StaleAfter: DefaultWitnessStaleAfter}
	})
	carol := fx.browser(t)
	fx.signIn(t, carol, "carol")
	// The sign-in's leaf is cosigned once the witness has caught up.
	var page string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var resp *http.Response
		resp, page = get(t, carol, fx.ts.APIURL()+"/ui/evidence")
		if resp.StatusCode != 200 {
			t.Fatalf("GET /ui/evidence: %d\n%s", resp.StatusCode, page)
		}
		if strings.Contains(page, `<td class="witness">lw</td><td class="state">ok</td>`) && !strings.Contains(page, "<td>unknown</td>") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the witness is not shown cosigning:\n%s", page)
		}
	}
	assertInert(t, page)
	if !strings.Contains(page, `1 must cosign a checkpoint. Alarms raised: <span id="alarms">none</span>.`) {
		t.Errorf("the witnesses' summary:\n%s", page)
	}
	today := fx.now().UTC()
	resp, page := fx.postConsole(t, carol, "/ui/evidence", url.Values{"csrf": {csrfOf(t, page)},
		"from": {today.Format(time.DateOnly)}, "to": {today.Add(-time.Second).Format(time.RFC3339)}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("the report: %d\n%s", resp.StatusCode, page)
	}
	resp, data := get(t, carol, fx.ts.APIURL()+"/ui/evidence/report.zip")
	if resp.StatusCode != 200 {
		t.Fatalf("report.zip: %d", resp.StatusCode)
	}
	fx.checkReportZip(t, []byte(data))
	zr, _ := zip.NewReader(strings.NewReader(data), int64(len(data)))
	report, err := zipText(zr, evidence.JSONFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(report, `--witness `+lw.VKey) {
		t.Errorf("the report's verification command does not name the witness:\n%.3000s", report)
	}
}
