package main

import (
	crand "crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// The quarter the generated journal covers: Q1 2026, to the start of Q2.
var (
	quarterFrom = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	quarterTo   = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
)

// quarterSpec sizes a generated quarter.
type quarterSpec struct {
	// Sessions is how many sessions run in the quarter, grant sessions
	// and the injected exceptions' included. One in a hundred has an
	// exec refused by policy before it (an agent's).
	Sessions int
	// Seed seeds every choice the generator makes.
	Seed uint64
}

// quarterJournal is what buildQuarterJournal made.
type quarterJournal struct {
	home string
	// What the journal holds, as generated.
	sessions, refusedCommands, certificates, grants, frames, payload int
	// injected names the exceptions the generator put in, one line each.
	injected []string
	// took is how long generating took.
	took time.Duration
}

// The quarter's people and agents. dbas approve database grants and
// sponsor no agent, so that no approval is one of segregation of duties.
var (
	quarterPeople = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mike", "nina"}
	quarterDBAs   = []string{"dave", "grace", "ivan"}
	quarterAgents = func() (out []quarterAgent) {
		sponsors := []string{"alice", "bob", "carol", "erin", "frank", "heidi", "judy", "mike", "nina"}
		for i := 1; i <= 12; i++ {
			out = append(out, quarterAgent{fmt.Sprintf("agent-ci-%02d", i), sponsors[i%len(sponsors)]})
		}
		for i := 1; i <= 8; i++ {
			out = append(out, quarterAgent{fmt.Sprintf("agent-deploy-%02d", i), sponsors[(i+3)%len(sponsors)]})
		}
		for i := 1; i <= 8; i++ {
			out = append(out, quarterAgent{fmt.Sprintf("agent-db-%02d", i), sponsors[(i+6)%len(sponsors)]})
		}
		return out
	}()
	quarterTargets = map[string][]string{
		"ops": {"web-1", "web-2", "web-3", "web-4", "web-5", "web-6", "app-1", "app-2", "app-3", "app-4"},
		"ci":  {"ci-1", "ci-2", "ci-3", "ci-4", "build-1", "build-2", "app-1", "app-2", "app-3", "app-4"},
		"db":  {"db-1", "db-2", "db-3"},
	}
)

type quarterAgent struct{ name, sponsor string }

// quarterRoles is the quarter's policy: people with standing shells on
// web and app servers; CI and deploy agents with standing exec of a few
// commands; database agents only through grants that a DBA approves.
// extraOps is added to the ops role's targets (a reload's change).
func quarterRoles(extraOps ...string) ([]policy.IdentityMatcher, []policy.Role) {
	ids := []policy.IdentityMatcher{
		{Name: "people", Match: policy.Match{Providers: []string{"corp"}, Subjects: quarterPeople}},
		{Name: "dbas", Match: policy.Match{Providers: []string{"corp"}, Subjects: quarterDBAs}},
		{Name: "ci-agents", Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{"agent-ci-*", "agent-deploy-*"}}},
		{Name: "db-agents", Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{"agent-db-*"}}},
	}
	roles := []policy.Role{
		{Name: "ops", Identities: []string{"people"}, Targets: append([]string{"web-*", "app-*"}, extraOps...), Logins: []string{"deploy"},
			MaxTTL: time.Hour, PTY: true, Shell: true},
		{Name: "ci", Identities: []string{"ci-agents"}, Targets: []string{"ci-*", "build-*", "app-*"}, Logins: []string{"ci"}, MaxTTL: time.Hour,
			Commands: &policy.Commands{Allow: []string{"make **", "go **", "git **", "./deploy.sh **"}, Deny: []string{"rm **", "curl **"}}},
		{Name: "db-grant", Identities: []string{"db-agents"}, Targets: []string{"db-*"}, Logins: []string{"postgres"}, MaxTTL: time.Hour,
			Access: policy.AccessGrant, Approval: &policy.Approval{Approvers: []string{"dbas"}, Approvals: 1, MaxDuration: 4 * time.Hour}},
	}
	return ids, roles
}

// quarterOptions are the generator's simOptions, chosen to make writing
// 10,000 sessions cheap: the journal written with synchronous=NORMAL (the
// same file format; every commit survives a crash of the process, not of
// the host), without the kept-checkpoint file beside the key (the first
// reader creates it), with session ends queued (a commit per session),
// and tokens signed with a 1,024-bit RSA key.
func quarterOptions(t testing.TB) simOptions {
	t.Helper()
	ids, roles := quarterRoles()
	key, err := rsa.GenerateKey(crand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return simOptions{
		Origin: "bank.example/bastion/q1", Start: quarterFrom, Identities: ids, Roles: roles,
		Storage: storage.Options{Synchronous: storage.SyncNormal}, PendingTTL: 4 * time.Hour, QueueEnds: true, TokenKey: key,
	}
}

// simEvent is something the bastion does at a time.
type simEvent struct {
	at  time.Time
	seq int
	run func()
}

// quarterGen generates one quarter: a schedule of events, run in order
// of time on the test clock, each at its time or, when the one before
// ran late, right after it.
type quarterGen struct {
	t      testing.TB
	b      *simBastion
	rng    *rand.Rand
	q      *quarterJournal
	events []simEvent
	pid    int
	// certs are the identities' current certificates.
	certs map[string]*certauth.Issued
}

func (g *quarterGen) at(t time.Time, run func()) {
	g.events = append(g.events, simEvent{at: t, seq: len(g.events), run: run})
}

// buildQuarterJournal writes a quarter of a bank's bastion: people and
// agents working on weekdays (less on weekends), a certificate per hour
// of work, sessions of about ten frames and 2 KB, a refused command
// before one session in a hundred, 20 grants (14 used and ended on time,
// one revoked early, three denied, two expired), weekly restarts with
// the policy journaled, a policy reload, a certificate revoked, failed
// authentications, and five exceptions: a crash (an unclean stop and an
// abandoned session), a session that outlived its grant, a refused
// policy reload, and a session killed by an operator known only by an
// account.
//
// Every choice comes from spec.Seed and every time from the test clock:
// two runs differ only in session IDs, keys and what they sign, and in
// how frames fall into segment leaves (the writer takes them as they
// come, as serve's does).
func buildQuarterJournal(t testing.TB, spec quarterSpec) *quarterJournal {
	t.Helper()
	start := time.Now()
	g := &quarterGen{t: t, b: newSimBastion(t, quarterOptions(t)), rng: rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x5eed)),
		q: &quarterJournal{}, pid: 4000, certs: map[string]*certauth.Issued{}}
	g.q.home = g.b.home
	g.serveStart("start")
	g.schedule(spec)
	slices.SortStableFunc(g.events, func(x, y simEvent) int { return cmpTime(x.at, y.at, x.seq, y.seq) })
	for _, e := range g.events {
		g.b.clock.Set(e.at)
		e.run()
	}
	g.b.clock.Set(quarterTo.Add(-30 * time.Minute))
	g.b.event(events.ServeStopped, recorder.Attrs{"reason": "requested", "ssh.sessions-ended": "0"})
	g.b.close()
	g.q.took = time.Since(start)
	if g.q.sessions != spec.Sessions {
		t.Fatalf("generated %d sessions, want %d", g.q.sessions, spec.Sessions)
	}
	return g.q
}

func cmpTime(a, b time.Time, sa, sb int) int {
	if c := a.Compare(b); c != 0 {
		return c
	}
	return sa - sb
}

// schedule lays out the quarter's events.
func (g *quarterGen) schedule(spec quarterSpec) {
	day := func(n int) time.Time { return quarterFrom.AddDate(0, 0, n) }
	days := int(quarterTo.Sub(quarterFrom) / (24 * time.Hour))

	// Grants: 20, one every four or five days; the sessions they carry
	// count among the quarter's.
	grantSessions := 0
	for k := range 20 {
		grantSessions += g.scheduleGrant(k, day(2+k*days/21).Add(time.Duration(9+k%7)*time.Hour))
	}
	// The exceptions, and what else happens once.
	special := 0
	special += g.scheduleCrash(day(40).Add(14*time.Hour + 10*time.Minute))
	special += g.scheduleKill(day(58).Add(11*time.Hour + 5*time.Minute))
	g.q.injected = append(g.q.injected, "a policy reload refused (a typo in the file)")
	g.at(day(23).Add(16*time.Hour), func() {
		g.b.event(events.PolicyRefused, recorder.Attrs{"trigger": "signal", "in-force": g.b.policy().Hash(),
			"error": "policy.hcl:31:5: role \"ops\": unknown attribute \"max_tll\"; did you mean \"max_ttl\"?"})
	})
	g.at(day(23).Add(16*time.Hour+20*time.Minute), func() {
		ids, roles := quarterRoles("api-*")
		p, _, err := policy.Build(ids, roles, policy.Options{})
		if err != nil {
			g.t.Fatal(err)
		}
		old := g.b.policy()
		g.b.reload(p)
		g.b.event(events.PolicyLoaded, withPolicyRecord(g.t, p, recorder.Attrs{"trigger": "signal", "hash": p.Hash(), "previous": old.Hash(),
			"roles": strconv.Itoa(len(roles)), "warnings": "0", "source": "/etc/bastion/policy.hcl"}))
	})
	g.at(day(33).Add(8*time.Hour+40*time.Minute), func() {
		c := g.cert("erin", time.Hour, "deploy")
		if _, err := g.b.reg.Revoke(g.b.ctx, g.b.j, certauth.RevokeRequest{Serials: []uint64{c.Record.Serial}, Reason: "laptop lost", By: "secops"}, g.b.clock.Now()); err != nil {
			g.t.Fatal(err)
		}
		delete(g.certs, "erin")
	})
	// Strangers: a scanner's keys, and expired tokens.
	for k := range 5 {
		g.at(day(10+k*15).Add(3*time.Hour+time.Duration(k)*time.Minute), func() {
			g.b.event(events.AuthRefused, recorder.Attrs{"reason": "untrusted_ca", "user": "root@db-1",
				"client": fmt.Sprintf("203.0.113.%d:%d", 20+k, 40000+k), "key.sha256": fmt.Sprintf("SHA256:scanner-key-%d", k)})
		})
	}
	for k := range 3 {
		g.at(day(20+k*20).Add(9*time.Hour), func() {
			now := g.b.clock.Now()
			tok := g.b.token("bob", map[string]any{"iat": now.Add(-3 * time.Hour).Unix(), "exp": now.Add(-2 * time.Hour).Unix()})
			if _, err := g.b.issuer.Issue(g.b.ctx, certauth.IssueRequest{Token: tok, PublicKey: "x", ClientAddress: netip.MustParseAddr("10.20.0.9")}); err == nil {
				g.t.Fatal("an expired token was accepted")
			}
		})
	}
	// Weekly restarts, Sundays at 03:00.
	for d := range days {
		if day(d).Weekday() == time.Sunday {
			g.at(day(d).Add(3*time.Hour), func() {
				// The journal stays open (reopening it costs a read of
				// every leaf); the issuer starts again.
				g.b.event(events.ServeStopped, recorder.Attrs{"reason": "requested", "ssh.sessions-ended": "0"})
				g.b.clock.Advance(time.Minute)
				g.b.startIssuer()
				g.serveStart("start")
			})
		}
	}

	// The everyday work: blocks of three to eight sessions of one
	// identity within an hour, under one certificate; weekdays carry
	// five times a weekend day's.
	work := spec.Sessions - grantSessions - special
	weights := make([]float64, days)
	total := 0.0
	for d := range days {
		weights[d] = 1
		if wd := day(d).Weekday(); wd == time.Saturday || wd == time.Sunday {
			weights[d] = 0.2
		}
		total += weights[d]
	}
	left := work
	for d := range days {
		n := int(float64(work)*weights[d]/total + 0.5)
		if d == days-1 || n > left {
			n = left
		}
		left -= n
		for n > 0 {
			k := min(n, 3+g.rng.IntN(6))
			n -= k
			g.scheduleBlock(day(d), k)
		}
	}
}

// serveStart journals a start of serve and the policy it loaded.
func (g *quarterGen) serveStart(trigger string) {
	g.pid += 1 + g.rng.IntN(50)
	g.b.event(events.ServeStarted, recorder.Attrs{"pid": strconv.Itoa(g.pid), "api": "10.0.0.5:8443", "admin": "/run/bastion/admin.sock",
		"config": "/etc/bastion/bastion.hcl", "home": "/var/lib/bastion", "ssh": "10.0.0.5:22"})
	p := g.b.policy()
	g.b.event(events.PolicyLoaded, withPolicyRecord(g.t, p, recorder.Attrs{"trigger": trigger, "hash": p.Hash(), "roles": strconv.Itoa(len(p.Roles)), "warnings": "0",
		"source": "/etc/bastion/policy.hcl"}))
}

// scheduleBlock schedules k sessions of one identity on day d: a person
// in office hours, or a CI or deploy agent at any hour.
func (g *quarterGen) scheduleBlock(d time.Time, k int) {
	human := g.rng.IntN(10) < 4
	var who string
	var start time.Time
	if human {
		who = quarterPeople[g.rng.IntN(len(quarterPeople))]
		start = d.Add(7*time.Hour + time.Duration(g.rng.Int64N(int64(11*time.Hour))))
	} else {
		who = quarterAgents[g.rng.IntN(20)].name // CI and deploy agents
		start = d.Add(time.Duration(g.rng.Int64N(int64(23 * time.Hour))))
	}
	at := start
	for range k {
		at = at.Add(time.Minute + time.Duration(g.rng.Int64N(int64(6*time.Minute))))
		seed := g.rng.Uint64()
		if human {
			g.at(at, func() { g.humanSession(who, seed, false) })
		} else {
			g.at(at, func() { g.agentSession(who, seed) })
		}
	}
}

// cert is who's certificate, issued anew when none is valid for the
// next need.
func (g *quarterGen) cert(who string, need time.Duration, logins ...string) *certauth.Issued {
	now := g.b.clock.Now()
	if c := g.certs[who]; c != nil && now.Add(need).Before(c.Record.ValidBefore) {
		return c
	}
	claims := map[string]any{}
	client := "10.20.0."
	if strings.HasPrefix(who, "agent-") {
		claims["on_behalf_of"] = sponsorOf(who)
		client = "10.30.0."
	} else {
		claims["email"] = who + "@example.com"
	}
	// An hour, the roles' longest: a grant's certificate ends with it.
	c := g.b.issueTTL(g.b.token(who, claims), fmt.Sprintf("%s#%d", who, g.q.certificates), netip.MustParseAddr(client+strconv.Itoa(10+len(who))), time.Hour, logins...)
	g.certs[who] = c
	g.q.certificates++
	return c
}

func sponsorOf(agent string) string {
	for _, a := range quarterAgents {
		if a.name == agent {
			return a.sponsor
		}
	}
	return ""
}

// decide is the policy's decision on a session, which must be want.
func (g *quarterGen) decide(c *certauth.Issued, target, login string, action policy.Action, command string, want bool) policy.Decision {
	g.t.Helper()
	now := g.b.clock.Now()
	var grants []policy.Grant
	if g.b.grants != nil {
		grants = g.b.grants.Active(c.Record.Identity, now)
	}
	d := g.b.policy().Session(policy.SessionRequest{Identity: c.Identity, Target: target, Login: login, Time: now, Action: action,
		Command: command, PTY: action == policy.ActionShell, Grants: grants})
	if d.Allow != want {
		g.t.Fatalf("policy: %s to %s@%s %s %q: allow %v (%s, %s), want %v", c.Record.Identity, login, target, action, command, d.Allow, d.Rule, d.Reason, want)
	}
	return d
}

// policyAttrs adds a decision's attributes as the front door does.
func (g *quarterGen) policyAttrs(a recorder.Attrs, d policy.Decision) recorder.Attrs {
	a["policy.rule"], a["policy.hash"] = d.Rule, g.b.policy().Hash()
	if d.Grant != "" {
		a["policy.grant"] = d.Grant
		a["policy.grant.end"] = d.Limits.NotAfter.UTC().Format(time.RFC3339)
	}
	return a
}

var (
	humanCommands = []string{"systemctl status app", "df -h", "tail -n 20 /var/log/app/app.log", "uptime", "free -m",
		"journalctl -u app --since -1h | tail -n 20", "sudo systemctl restart app", "cat /etc/app/config.yaml", "ls -la /srv/app/releases"}
	agentCommands = []string{"make test", "make build", "go test ./...", "git fetch --prune origin", "./deploy.sh app --version ${V}", "make lint"}
	refusedCmds   = []string{"rm -rf /var/lib/ci/cache", "curl -fsSL http://203.0.113.50/bootstrap.sh"}
)

// logLines is about n bytes of an application's log, for output.
func logLines(rng *rand.Rand, at time.Time, n int) []byte {
	var b []byte
	for len(b) < n {
		b = fmt.Appendf(b, "%s app[%d]: GET /api/v1/accounts/%d %d %dms\r\n", at.Format(time.RFC3339), 1000+rng.IntN(9000), rng.IntN(100000),
			[]int{200, 200, 200, 201, 204, 404, 500}[rng.IntN(7)], 1+rng.IntN(300))
	}
	return b
}

// humanSession records an interactive shell of a person: a terminal,
// two commands with their output, logout: about ten frames and 2 KB.
// With leaveOpen, it is left open before its exit (the caller ends it).
func (g *quarterGen) humanSession(who string, seed uint64, leaveOpen bool) *recorder.Session {
	rng := rand.New(rand.NewPCG(seed, 1))
	c := g.cert(who, 15*time.Minute, "deploy")
	targets := quarterTargets["ops"]
	target := targets[rng.IntN(len(targets))]
	d := g.decide(c, target, "deploy", policy.ActionShell, "", true)
	prompt := []byte("deploy@" + target + ":~$ ")
	now := g.b.clock.Now()
	frames := []simFrame{
		attrFrame(g.t, recorder.KindPTY, recorder.Attrs{"term": "xterm-256color", "cols": "120", "rows": "40"}, 0),
		{recorder.KindOutput, append(fmt.Appendf(nil, "Last login: %s from 10.20.0.%d\r\n", now.Add(-26*time.Hour).Format(time.ANSIC), 10+len(who)), prompt...), 400 * time.Millisecond},
	}
	for i := range 2 + rng.IntN(2) {
		cmd := humanCommands[rng.IntN(len(humanCommands))]
		out := logLines(rng, now, 350+rng.IntN(400))
		frames = append(frames,
			simFrame{recorder.KindInput, []byte(cmd + "\r"), time.Duration(2+rng.IntN(8)) * time.Second},
			simFrame{recorder.KindOutput, append(append([]byte(cmd+"\r\n"), out...), prompt...), time.Duration(200+rng.IntN(900)) * time.Millisecond})
		if i == 0 && rng.IntN(50) == 0 {
			// A card number in a log line, masked by the output's masker.
			frames = append(frames,
				simFrame{recorder.KindOutput, []byte("payment declined card 4111********1111\r\n"), 10 * time.Millisecond},
				attrFrame(g.t, recorder.KindMask, recorder.Attrs{"detector": "pan", "count": "1", "offset": "22"}, 0))
		}
	}
	frames = append(frames,
		simFrame{recorder.KindInput, []byte("exit\r"), time.Duration(3+rng.IntN(20)) * time.Second},
		simFrame{recorder.KindOutput, []byte("exit\r\nlogout\r\n"), 50 * time.Millisecond})
	if leaveOpen {
		return g.record(c, "10.20.0.10:"+strconv.Itoa(40000+rng.IntN(20000)), g.policyAttrs(recorder.Attrs{"request": "shell", "login": "deploy", "target": target,
			"term": "xterm-256color"}, d), frames, nil)
	}
	frames = append(frames, attrFrame(g.t, recorder.KindExit, recorder.Attrs{"status": "0"}, 20*time.Millisecond))
	return g.record(c, "10.20.0.10:"+strconv.Itoa(40000+rng.IntN(20000)), g.policyAttrs(recorder.Attrs{"request": "shell", "login": "deploy", "target": target,
		"term": "xterm-256color"}, d), frames, recorder.Attrs{"reason": "exited", "exit-status": "0"})
}

// agentSession records an agent's exec: its command, output and
// warnings, the exit status. One session in a hundred is preceded by a
// command the policy refuses.
func (g *quarterGen) agentSession(who string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	c := g.cert(who, 15*time.Minute, "ci")
	targets := quarterTargets["ci"]
	target := targets[rng.IntN(len(targets))]
	client := "10.30.0.20:" + strconv.Itoa(40000+rng.IntN(20000))
	if g.q.refusedCommands < (g.q.sessions+1)/100 {
		cmd := refusedCmds[rng.IntN(len(refusedCmds))]
		d := g.decide(c, target, "ci", policy.ActionExec, cmd, false)
		// As the front door's authorize journals a refusal.
		a := recorder.Attrs{"reason": "policy_denied", "request": "exec", "action": string(policy.ActionExec), "user": "ci@" + target, "target": target,
			"login": "ci", "policy.rule": d.Rule, "detail": d.Reason, "policy.hash": g.b.policy().Hash(), "command": cmd,
			"identity": c.Record.Identity, "serial": strconv.FormatUint(c.Record.Serial, 10), "key-id": c.Cert.KeyId, "client": client}
		g.b.event(events.RequestRefused, a)
		g.q.refusedCommands++
		g.b.clock.Advance(time.Duration(5+rng.IntN(30)) * time.Second)
	}
	cmd := strings.ReplaceAll(agentCommands[rng.IntN(len(agentCommands))], "${V}", fmt.Sprintf("1.%d.%d", rng.IntN(40), rng.IntN(10)))
	d := g.decide(c, target, "ci", policy.ActionExec, cmd, true)
	frames := []simFrame{{recorder.KindExec, []byte(cmd), 0}}
	for i := range 8 {
		kind, n := recorder.KindOutput, 250+rng.IntN(300)
		if i%2 == 1 {
			kind, n = recorder.KindStderr, 80+rng.IntN(160)
		}
		frames = append(frames, simFrame{kind, agentOutput(rng, kind, n), time.Duration(300+rng.IntN(4000)) * time.Millisecond})
	}
	frames = append(frames, attrFrame(g.t, recorder.KindExit, recorder.Attrs{"status": "0"}, 10*time.Millisecond))
	g.record(c, client, g.policyAttrs(recorder.Attrs{"request": "exec", "login": "ci", "target": target, "command": cmd}, d), frames,
		recorder.Attrs{"reason": "exited", "exit-status": "0"})
}

func agentOutput(rng *rand.Rand, kind recorder.Kind, n int) []byte {
	var b []byte
	for len(b) < n {
		if kind == recorder.KindStderr {
			b = fmt.Appendf(b, "warning: %s is deprecated (pkg/ledger/%d.go:%d)\n", []string{"Ledger.Post", "io/ioutil", "Tx.Commit"}[rng.IntN(3)], rng.IntN(90), rng.IntN(400))
		} else {
			b = fmt.Appendf(b, "ok  \tbank.example/ledger/pkg/%s\t%d.%03ds\n", []string{"posting", "accounts", "fx", "audit", "limits"}[rng.IntN(5)], rng.IntN(9), rng.IntN(1000))
		}
	}
	return b
}

// record records a session and counts it.
func (g *quarterGen) record(c *certauth.Issued, client string, attrs recorder.Attrs, frames []simFrame, end recorder.Attrs) *recorder.Session {
	g.q.sessions++
	g.q.frames += len(frames)
	for _, f := range frames {
		g.q.payload += len(f.data)
	}
	return g.b.session(c, client, attrs, frames, end)
}

// scheduleGrant schedules grant k's life from at; it returns how many
// sessions it carries. Of 20: 14 are approved, used and end on time (the
// sixth also carries a session that outlives it), the tenth is revoked
// early, three are denied and two expire unanswered.
func (g *quarterGen) scheduleGrant(k int, at time.Time) int {
	agent := quarterAgents[20+k%8].name
	approver := quarterDBAs[k%len(quarterDBAs)]
	target := quarterTargets["db"][k%3]
	var id string
	g.at(at, func() {
		tok := g.b.token(agent, map[string]any{"on_behalf_of": sponsorOf(agent)})
		gr, err := g.b.grants.Request(g.b.ctx, grants.GrantAsk{Identity: g.b.identity(tok), Target: target, Login: "postgres", Duration: time.Hour,
			Reason: fmt.Sprintf("apply migration %d to the ledger", 100+k), Ticket: fmt.Sprintf("CHG-%d", 4100+k), ClientAddress: netip.MustParseAddr("10.30.0.40")})
		if err != nil {
			g.t.Fatal(err)
		}
		id = gr.ID
		g.q.grants++
	})
	by := &policy.Identity{Provider: "corp", Issuer: g.b.oidc.Issuer(), Subject: approver, Claims: map[string]any{"email": approver + "@example.com"}}
	decideAt := at.Add(time.Duration(5+k%20) * time.Minute)
	switch k % 20 {
	case 3, 11, 17: // denied
		g.at(decideAt, func() {
			if _, err := g.b.grants.Deny(g.b.ctx, grants.GrantDecision{ID: id, By: by, Comment: "no change ticket approved for this window"}); err != nil {
				g.t.Fatal(err)
			}
		})
		return 0
	case 7, 14: // expired: nobody answered within the pending TTL
		g.at(at.Add(g.b.opts.PendingTTL), func() { g.b.settleGrants(grantIn(id, grants.GrantExpired)) })
		return 0
	}
	g.at(decideAt, func() {
		if _, err := g.b.grants.Approve(g.b.ctx, grants.GrantDecision{ID: id, By: by, Comment: "ok, during the maintenance window"}); err != nil {
			g.t.Fatal(err)
		}
	})
	sessions := 3
	if k == 10 {
		// Revoked after its first session.
		sessions = 1
		g.at(decideAt.Add(2*time.Minute), func() { g.grantSession(agent, target, id, k, 0, false) })
		g.at(decideAt.Add(20*time.Minute), func() {
			if _, err := g.b.grants.Revoke(g.b.ctx, grants.GrantDecision{ID: id, By: by, Comment: "done early; closing"}); err != nil {
				g.t.Fatal(err)
			}
			// As serve does: the grant's certificates are revoked with it.
			var serials []uint64
			for _, c := range g.b.reg.Certificates() {
				if c.Grant == id && !c.Revoked {
					serials = append(serials, c.Serial)
				}
			}
			if len(serials) > 0 {
				if _, err := g.b.reg.Revoke(g.b.ctx, g.b.j, certauth.RevokeRequest{Serials: serials, Reason: "its grant " + id + " was revoked",
					By: "bastion (grant " + id + " revoked)", Attrs: recorder.Attrs{"cause": "grant.revoked", "grant": id}}, g.b.clock.Now()); err != nil {
					g.t.Fatal(err)
				}
			}
		})
		return sessions
	}
	for i := range sessions {
		g.at(decideAt.Add(time.Duration(2+i*12)*time.Minute), func() { g.grantSession(agent, target, id, k, i, false) })
	}
	endAt := decideAt.Add(time.Hour)
	if k == 5 {
		// Exception: a session still running when the grant ends, ended
		// ten minutes later (the front door should have cut it).
		sessions++
		var s *recorder.Session
		g.at(endAt.Add(-4*time.Minute), func() { s = g.grantSession(agent, target, id, k, sessions, true) })
		g.at(endAt.Add(10*time.Minute), func() {
			if err := s.End(g.b.ctx, recorder.Attrs{"reason": "exited", "exit-status": "0"}); err != nil {
				g.t.Fatal(err)
			}
		})
		g.q.injected = append(g.q.injected, "a session that outlived its grant by ten minutes")
	}
	g.at(endAt, func() { g.b.settleGrants(grantIn(id, grants.GrantEnded)) })
	return sessions
}

// grantSession records a database agent's migration under grant id.
// With leaveOpen, the session is left open, its exit not recorded.
func (g *quarterGen) grantSession(agent, target, id string, k, i int, leaveOpen bool) *recorder.Session {
	c := g.cert(agent, time.Minute, "postgres")
	if c.Record.Grant != id {
		// The certificate is of an earlier grant: a new one, under this.
		delete(g.certs, agent)
		c = g.cert(agent, time.Minute, "postgres")
	}
	cmd := fmt.Sprintf("psql -v ON_ERROR_STOP=1 -f migrations/%03d_%d.sql", 100+k, i)
	d := g.decide(c, target, "postgres", policy.ActionExec, cmd, true)
	rng := rand.New(rand.NewPCG(uint64(k), uint64(i)))
	frames := []simFrame{{recorder.KindExec, []byte(cmd), 0}}
	for range 8 {
		frames = append(frames, simFrame{recorder.KindOutput, []byte(strings.Repeat("ALTER TABLE\nCREATE INDEX\n", 6+rng.IntN(8))), time.Duration(1+rng.IntN(20)) * time.Second})
	}
	client := "10.30.0.40:" + strconv.Itoa(40000+rng.IntN(20000))
	attrs := g.policyAttrs(recorder.Attrs{"request": "exec", "login": "postgres", "target": target, "command": cmd}, d)
	if leaveOpen {
		return g.record(c, client, attrs, frames, nil)
	}
	frames = append(frames, attrFrame(g.t, recorder.KindExit, recorder.Attrs{"status": "0"}, 10*time.Millisecond))
	return g.record(c, client, attrs, frames, recorder.Attrs{"reason": "exited", "exit-status": "0"})
}

// scheduleCrash: serve dies with a session open. The next start ends
// the session as abandoned, and journals a start without a stop.
func (g *quarterGen) scheduleCrash(at time.Time) int {
	g.at(at, func() {
		g.humanSession("carol", 41, true)
		g.b.clock.Advance(90 * time.Second)
		g.b.restart()
		g.serveStart("start")
	})
	g.q.injected = append(g.q.injected, "serve crashed: an unclean stop", "the session open at the crash, abandoned")
	return 1
}

// scheduleKill: an operator kills a person's session through the admin
// socket, known only by the socket peer's account.
func (g *quarterGen) scheduleKill(at time.Time) int {
	g.at(at, func() {
		s := g.humanSession("mike", 58, true)
		g.b.clock.Advance(40 * time.Second)
		if err := s.End(g.b.ctx, recorder.Attrs{"reason": "killed", "detail": "the session was ended by an operator: suspicious activity",
			"killed-by": "uid 0, pid 31337", "kill-reason": "suspicious activity"}); err != nil {
			g.t.Fatal(err)
		}
	})
	g.q.injected = append(g.q.injected, "a session killed by an operator named by no identity (uid 0)")
	return 1
}
