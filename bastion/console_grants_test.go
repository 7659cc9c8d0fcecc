package bastion

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// devToken mints a development token for sub, as "bastion dev token" does.
func (fx *consoleFixture) devToken(t *testing.T, sub string) string {
	t.Helper()
	tok, err := fx.dev.Mint(sub, []string{oidc.DevAudience}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the anti-forgery token in a console page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no anti-forgery token in the page:\n%s", page)
	}
	return m[1]
}

// postConsole posts a form to a console page as a browser on the
// console's own page does (Origin and Sec-Fetch-Site: same-origin), with
// extra headers hdr (an empty value leaves that header out).
func (fx *consoleFixture) postConsole(t *testing.T, b *http.Client, path string, vals url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fx.ts.APIURL()+path, strings.NewReader(vals.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", fx.ts.APIURL())
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k) // a header a browser would not send
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	wantSecurityHeaders(t, resp)
	return resp, readPage(t, resp)
}

// grantEvent returns the attributes of grant id's event name, failing
// unless there is exactly one.
func grantEvents(t *testing.T, fx *consoleFixture, name, id string) []recorder.Attrs {
	t.Helper()
	var out []recorder.Attrs
	for _, a := range fx.ts.events(t, name) {
		if a["grant"] == id {
			out = append(out, a)
		}
	}
	return out
}

// The grants inbox: bob asks for the db role's login deploy through the
// API; lena, its approver, sees what it would allow and approves it with
// a comment through the console's form, by the grants store's rules and
// with its journal leaf; bob's certificate for deploy then follows. Her
// own request, anyone but an approver, a cross-site form and a grant
// already decided are refused; clients' text renders inert.
func TestConsoleGrants(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	ctx := context.Background()
	reason := `restore the replica <script>alert(1)</script><img src=x onerror="alert(2)"> ` + "\u202egnp.exe"
	ticket := `"><script>alert(3)</script>`
	g, err := fx.ts.client.RequestGrant(ctx, fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "10m", Reason: reason, Ticket: ticket})
	if err != nil {
		t.Fatal(err)
	}
	own, err := fx.ts.client.RequestGrant(ctx, fx.devToken(t, "lena"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "5m", Reason: "my own look"})
	if err != nil {
		t.Fatal(err)
	}
	denied, err := fx.ts.client.RequestGrant(ctx, fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "1h", Reason: "another look"})
	if err != nil {
		t.Fatal(err)
	}

	lena := fx.browser(t)
	fx.signIn(t, lena, "lena")
	resp, page := get(t, lena, fx.ts.APIURL()+"/ui/grants")
	if resp.StatusCode != 200 {
		t.Fatalf("lena GET /ui/grants: %d\n%s", resp.StatusCode, page)
	}
	wantSecurityHeaders(t, resp)
	assertInert(t, page)
	for _, want := range []string{
		`<tr data-grant="` + g.ID + `"><td class="grant">` + g.ID + `</td>`,
		`<span class="identity">bob@dev</span>`,
		`<td class="reason">restore the replica &lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&#34;alert(2)&#34;&gt; \u202egnp.exe</td>`,
		`<td class="ticket">&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;</td>`,
		`target <span class="target">box</span>, login <span class="login">deploy</span>, for <span class="duration">10m0s</span>, role <span class="role">db</span>`,
		`<span class="rule">1 approval(s) from leads</span>; so far: <span class="approvals">none</span>`,
		`<form method="post" action="/ui/grants/` + g.ID + `/approve">`,
		`formaction="/ui/grants/` + g.ID + `/deny"`,
		`<script src="/ui/static/grants.js" defer></script>`,
		`your own request: another approver decides it`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("lena's inbox lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, `action="/ui/grants/`+own.ID+`/approve"`) {
		t.Errorf("lena is offered to approve her own request %s", own.ID)
	}
	csrf := csrfOf(t, page)

	// What the script refreshes the page with: the same grants.
	resp, body := get(t, lena, fx.ts.APIURL()+"/ui/grants.json")
	var inbox struct {
		Approver bool
		Pending  []struct {
			ID, Identity, Reason, Ticket, Target, Login, Duration, Rule string
			Own, Decide                                                 bool
		}
	}
	if err := json.Unmarshal([]byte(body), &inbox); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("grants.json: %v %s\n%s", err, resp.Header.Get("Content-Type"), body)
	}
	var ids []string
	for _, p := range inbox.Pending {
		ids = append(ids, p.ID)
		switch p.ID {
		case g.ID:
			if p.Identity != "bob@dev" || p.Reason != reason || p.Ticket != ticket || p.Target != "box" || p.Login != "deploy" || p.Duration != "10m0s" || !p.Decide || p.Own {
				t.Errorf("grants.json, bob's request: %+v", p)
			}
		case own.ID:
			if !p.Own || p.Decide {
				t.Errorf("grants.json, lena's own request: %+v", p)
			}
		}
	}
	if !inbox.Approver || !slices.Equal(ids, []string{g.ID, own.ID, denied.ID}) {
		t.Errorf("grants.json: approver %v, pending %v", inbox.Approver, ids)
	}

	// Refused: her own request; a form from another site; without the
	// token.
	approve := func(id string) string { return "/ui/grants/" + id + "/approve" }
	if resp, page := fx.postConsole(t, lena, approve(own.ID), url.Values{"csrf": {csrf}, "comment": {"mine"}}, nil); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(page, "Refused (own_grant)") || !strings.Contains(page, "you cannot approve it") {
		t.Errorf("lena approves her own request: %d\n%s", resp.StatusCode, page)
	}
	for name, hdr := range map[string]map[string]string{
		"cross-site":   {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		"other origin": {"Sec-Fetch-Site": "", "Origin": "https://evil.example"},
	} {
		if resp, page := fx.postConsole(t, lena, approve(g.ID), url.Values{"csrf": {csrf}}, hdr); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "cannot change anything here") {
			t.Errorf("%s approval: %d\n%s", name, resp.StatusCode, page)
		}
	}
	if resp, _ := fx.postConsole(t, lena, approve(g.ID), url.Values{"comment": {"no token"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("approval without the token: %d", resp.StatusCode)
	}
	if got, _ := fx.ts.grants.Get(g.ID); got.State != grants.GrantPending {
		t.Fatalf("after refused approvals, %s is %s", g.ID, got.State)
	}

	// alice (an operator, not an approver) and carol (an auditor) may
	// look, with no form; their POST is refused. mallory sees nothing.
	for _, sub := range []string{"alice", "carol"} {
		b := fx.browser(t)
		fx.signIn(t, b, sub)
		resp, page := get(t, b, fx.ts.APIURL()+"/ui/grants")
		if resp.StatusCode != 200 || strings.Contains(page, `action="/ui/grants/`) || !strings.Contains(page, "only approvers decide") {
			t.Errorf("%s GET /ui/grants: %d, want the inbox without forms\n%s", sub, resp.StatusCode, page)
		}
		resp, page = fx.postConsole(t, b, approve(g.ID), url.Values{"csrf": {csrfOf(t, page)}, "comment": {"me too"}}, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "This page is for the approvers") {
			t.Errorf("%s approves: %d\n%s", sub, resp.StatusCode, page)
		}
	}
	mallory := fx.browser(t)
	fx.signIn(t, mallory, "mallory")
	for _, path := range []string{"/ui/grants", "/ui/grants.json"} {
		if resp, page := get(t, mallory, fx.ts.APIURL()+path); resp.StatusCode != http.StatusForbidden || strings.Contains(page, "bob") || strings.Contains(page, g.ID) {
			t.Errorf("mallory GET %s: %d\n%s", path, resp.StatusCode, page)
		}
	}
	if len(grantEvents(t, fx, events.GrantApproved, g.ID)) != 0 {
		t.Fatalf("a refused approval was journaled as an approval")
	}

	// lena approves through the form, with a comment.
	comment := `ok for the replica <iframe src="javascript:alert(5)"></iframe>`
	resp, page = fx.postConsole(t, lena, approve(g.ID), url.Values{"csrf": {csrf}, "comment": {comment}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "You approved grant "+g.ID+": it is active.") {
		t.Fatalf("lena approves %s: %d\n%s", g.ID, resp.StatusCode, page)
	}
	assertInert(t, page)
	for _, want := range []string{
		`<tr data-grant="` + g.ID + `"><td class="grant">` + g.ID + `</td><td class="state">active</td>`,
		`<td class="by">lena@dev</td><td class="comment">ok for the replica &lt;iframe src=&#34;javascript:alert(5)&#34;&gt;&lt;/iframe&gt;</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("after the approval, the page lacks %q:\n%s", want, page)
		}
	}
	ap := grantEvents(t, fx, events.GrantApproved, g.ID)
	signedIn := fx.ts.events(t, events.ConsoleSignedIn)
	var lenaSession string
	for _, e := range signedIn {
		if e["identity"] == "lena@dev" {
			lenaSession = e["console.session"]
		}
	}
	if len(ap) != 1 || ap[0]["by"] != "lena@dev" || ap[0]["comment"] != comment || ap[0]["via"] != "console" ||
		ap[0]["console.session"] != lenaSession || lenaSession == "" || ap[0]["client.address"] != "127.0.0.1" || ap[0]["by.provider"] != DevProviderName {
		t.Errorf("grant.approved: %v (lena's console session %q)", ap, lenaSession)
	}
	if act := grantEvents(t, fx, events.GrantActivated, g.ID); len(act) != 1 {
		t.Errorf("grant.activated: %v", act)
	}
	// Decided already: refused, with the reason.
	if resp, page := fx.postConsole(t, lena, approve(g.ID), url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusConflict || !strings.Contains(page, "Refused (grant_state)") {
		t.Errorf("approving %s again: %d\n%s", g.ID, resp.StatusCode, page)
	}

	// A denial, through the form's other button.
	resp, page = fx.postConsole(t, lena, "/ui/grants/"+denied.ID+"/deny", url.Values{"csrf": {csrf}, "comment": {"not now"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "You denied grant "+denied.ID+".") || !strings.Contains(page, `<td class="state">denied</td>`) {
		t.Errorf("lena denies %s: %d\n%s", denied.ID, resp.StatusCode, page)
	}
	if dn := grantEvents(t, fx, events.GrantDenied, denied.ID); len(dn) != 1 || dn[0]["by"] != "lena@dev" || dn[0]["comment"] != "not now" || dn[0]["via"] != "console" {
		t.Errorf("grant.denied: %v", dn)
	}

	// bob's certificate for deploy, under the grant, and a session with it.
	dir := t.TempDir()
	key, pub := newKey(t, dir, "id_ed25519")
	cert, err := fx.ts.client.Certificate(ctx, fx.devToken(t, "bob"), certauth.CertificateRequest{PublicKey: pub, Logins: []string{"deploy"}})
	if err != nil {
		t.Fatalf("bob's certificate for deploy after the approval: %v", err)
	}
	if !slices.Contains(cert.Principals, "deploy") {
		t.Fatalf("bob's certificate: principals %v", cert.Principals)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(cert.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(fx.ts.auth.KnownHostsLines("*"), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(fx.ts.SSHAddr())
	out, err := exec.Command(needTool(t, "ssh"), "-F", "none", "-i", key, "-p", port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=none",
		"deploy@box@127.0.0.1", "echo granted-ok").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "granted-ok") {
		t.Fatalf("ssh deploy@box under the grant: %v\n%s", err, out)
	}
}

// In a real browser: lena approves a pending request by typing a comment
// and clicking Approve; the request leaves the pending table for the
// decided one. A request made while the page is open appears by the
// page's script, without a reload.
func TestConsoleBrowserGrants(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	br := newBrowser(t, 60*time.Second) // after the server: stopped before it
	g, err := fx.ts.client.RequestGrant(context.Background(), fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "10m", Reason: "rotate the replication slot", Ticket: "OPS-42"})
	if err != nil {
		t.Fatal(err)
	}
	br.signIn(fx.ts.APIURL(), "lena")
	row := `#pending tr[data-grant="` + g.ID + `"]`
	br.run("the inbox", chromedp.Navigate(fx.ts.APIURL()+"/ui/grants"), chromedp.WaitVisible(chromedp.CSS(row)))
	if got := br.text(row); !strings.Contains(got, "bob@dev") || !strings.Contains(got, "rotate the replication slot") || !strings.Contains(got, "OPS-42") || !strings.Contains(got, "login deploy") {
		t.Errorf("the pending row as rendered: %q", got)
	}

	// Live: a second request shows up without a reload.
	g2, err := fx.ts.client.RequestGrant(context.Background(), fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "5m", Reason: "a second look"})
	if err != nil {
		t.Fatal(err)
	}
	br.until("the request made while the page was open appears", `document.querySelector('#pending tr[data-grant="`+g2.ID+`"]') !== null`)

	br.run("approve "+g.ID,
		chromedp.SendKeys(chromedp.CSS(row+` input[name="comment"]`), "ok for OPS-42"),
		chromedp.Click(chromedp.CSS(row+` button.approve`)),
		chromedp.WaitVisible(chromedp.CSS(`#decided tr[data-grant="`+g.ID+`"]`)),
	)
	notice, decided, pending := br.text("#notice"), br.text(`#decided tr[data-grant="`+g.ID+`"]`), br.text("#pending")
	br.shot("console-grants.png")
	if !strings.Contains(notice, "You approved grant "+g.ID) {
		t.Errorf("#notice: %q", notice)
	}
	if !strings.Contains(decided, "active") || !strings.Contains(decided, "lena@dev") || !strings.Contains(decided, "ok for OPS-42") {
		t.Errorf("the decided row as rendered: %q", decided)
	}
	if strings.Contains(pending, "rotate the replication slot") || !strings.Contains(pending, "a second look") {
		t.Errorf("#pending after the approval: %q", pending)
	}
	ap := grantEvents(t, fx, events.GrantApproved, g.ID)
	if len(ap) != 1 || ap[0]["by"] != "lena@dev" || ap[0]["comment"] != "ok for OPS-42" || ap[0]["via"] != "console" {
		t.Errorf("grant.approved: %v", ap)
	}

	// A grant approved elsewhere (the API) while the page is open shows
	// up active by the page's script, with the revocation form it builds;
	// revoked through that form.
	if _, err := fx.ts.client.DecideGrant(context.Background(), fx.devToken(t, "lena"), g2.ID, "approve", "via the API"); err != nil {
		t.Fatal(err)
	}
	revoke := `#decided tr[data-grant="` + g2.ID + `"] td.end form`
	br.until("the script shows the grant approved elsewhere, with its form", `document.querySelector('`+revoke+` button.revoke') !== null`)
	br.run("revoke "+g2.ID,
		chromedp.SendKeys(chromedp.CSS(revoke+` input[name="comment"]`), "work done"),
		chromedp.Click(chromedp.CSS(revoke+` button.revoke`)))
	// The approval's notice is on the page until the revocation's answer
	// replaces it.
	br.until("the revocation's answer", `(document.getElementById("notice") || {textContent: ""}).textContent.includes("You revoked grant")`)
	if notice := br.text("#notice"); !strings.Contains(notice, "You revoked grant "+g2.ID+": it is revoked") {
		t.Errorf("#notice after the revocation: %q", notice)
	}
	rv := grantEvents(t, fx, events.GrantRevoked, g2.ID)
	if len(rv) != 1 || rv[0]["by"] != "lena@dev" || rv[0]["comment"] != "work done" || rv[0]["via"] != "console" {
		t.Errorf("grant.revoked: %v", rv)
	}
}

// Revoking an active grant from the console ends it and the sessions
// under it: an approver revokes one she may approve through the grants
// store (the API's rules, via console); an operator revokes any, as
// "bastion grants revoke --operator" does (the leaf names the person,
// operator.verified console). An auditor has no form, and her POST is
// refused.
func TestConsoleGrantRevoke(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	ctx := context.Background()
	active := func(reason string) string {
		t.Helper()
		g, err := fx.ts.client.RequestGrant(ctx, fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "10m", Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		if g, err := fx.ts.client.DecideGrant(ctx, fx.devToken(t, "lena"), g.ID, "approve", "ok"); err != nil || g.State != "active" {
			t.Fatalf("approve %s: %v %v", g.ID, g, err)
		}
		return g.ID
	}
	byLena := active("first look")
	// A session under the first grant, to be ended with it (started before
	// the second grant exists: a session takes the newest grant that fits).
	under := fx.ssh(t, "bob", "deploy", "echo under-the-grant; exec sleep 300")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if slices.ContainsFunc(fx.ts.LiveSessions(), func(l front.LiveSession) bool { return l.Grant == byLena }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live session under %s: %s%s", byLena, under.stdout.String(), under.stderr.String())
		}
	}
	byAlice := active("second look")

	carol := fx.browser(t)
	fx.signIn(t, carol, "carol")
	_, page := get(t, carol, fx.ts.APIURL()+"/ui/grants")
	if strings.Contains(page, "/revoke") {
		t.Errorf("carol (an auditor) is offered a revocation:\n%s", page)
	}

	lena := fx.browser(t)
	fx.signIn(t, lena, "lena")
	_, page = get(t, lena, fx.ts.APIURL()+"/ui/grants")
	assertInert(t, page)
	for _, id := range []string{byLena, byAlice} {
		if !strings.Contains(page, `<form method="post" action="/ui/grants/`+id+`/revoke">`) {
			t.Errorf("lena's inbox offers no revocation of %s:\n%s", id, page)
		}
	}
	resp, page := fx.postConsole(t, lena, "/ui/grants/"+byLena+"/revoke", url.Values{"csrf": {csrfOf(t, page)}, "comment": {"done early"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "You revoked grant "+byLena+": it is revoked") {
		t.Fatalf("lena revokes %s: %d\n%s", byLena, resp.StatusCode, page)
	}
	select {
	case <-under.done:
	case <-time.After(endBound):
		t.Fatal("bob's session under the revoked grant still runs")
	}
	rv := grantEvents(t, fx, events.GrantRevoked, byLena)
	if len(rv) != 1 || rv[0]["by"] != "lena@dev" || rv[0]["comment"] != "done early" || rv[0]["via"] != "console" || rv[0]["console.session"] == "" {
		t.Errorf("grant.revoked by lena: %v", rv)
	}

	alice := fx.browser(t)
	fx.signIn(t, alice, "alice")
	_, page = get(t, alice, fx.ts.APIURL()+"/ui/grants")
	if resp, page := fx.postConsole(t, carol, "/ui/grants/"+byAlice+"/revoke", url.Values{"csrf": {"x"}, "comment": {"no"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("carol revokes %s: %d\n%s", byAlice, resp.StatusCode, page)
	}
	resp, page = fx.postConsole(t, alice, "/ui/grants/"+byAlice+"/revoke", url.Values{"csrf": {csrfOf(t, page)}, "comment": {"incident over"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "You revoked grant "+byAlice) {
		t.Fatalf("alice revokes %s: %d\n%s", byAlice, resp.StatusCode, page)
	}
	rv = grantEvents(t, fx, events.GrantRevoked, byAlice)
	if len(rv) != 1 || rv[0]["operator"] != "alice@dev" || rv[0]["operator.verified"] != VerifiedConsole || rv[0]["comment"] != "incident over" || rv[0]["console.session"] == "" {
		t.Errorf("grant.revoked by alice: %v", rv)
	}
	// Revoked already: a second revocation is refused and changes nothing;
	// a pending request is not revoked here (it is denied).
	pending, err := fx.ts.client.RequestGrant(ctx, fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "10m", Reason: "third look"})
	if err != nil {
		t.Fatal(err)
	}
	_, page = get(t, alice, fx.ts.APIURL()+"/ui/grants")
	for _, id := range []string{byAlice, pending.ID} {
		if resp, page := fx.postConsole(t, alice, "/ui/grants/"+id+"/revoke", url.Values{"csrf": {csrfOf(t, page)}}, nil); resp.StatusCode != http.StatusConflict || !strings.Contains(page, "grant_state") {
			t.Errorf("revoking %s: %d, want 409\n%s", id, resp.StatusCode, page)
		}
	}
	if g, err := fx.ts.client.Grant(ctx, fx.devToken(t, "bob"), pending.ID); err != nil || g.State != "pending" {
		t.Errorf("the pending request after a refused revocation: %v %v", g, err)
	}
	// An operator's revocation the store refuses is journaled naming her.
	_, page = get(t, alice, fx.ts.APIURL()+"/ui/grants")
	if resp, _ := fx.postConsole(t, alice, "/ui/grants/G-404/revoke", url.Values{"csrf": {csrfOf(t, page)}}, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoking an unknown grant: %d", resp.StatusCode)
	}
	ref := grantEvents(t, fx, events.GrantRefused, "G-404")
	if len(ref) != 1 || ref[0]["operator"] != "alice@dev" || ref[0]["operator.verified"] != VerifiedConsole || ref[0]["client.address"] == "" {
		t.Errorf("grant.refused of alice's revocation: %v", ref)
	}
}
