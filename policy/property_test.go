package policy

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The property test generates small policies over a small universe, so
// that requests often hit, and checks every decision against oracle: a
// naive reading of the rules written independently of the package's
// matching, indexing and command parsing.

var (
	propProviders = []string{"p1", "p2"}
	propSubjects  = []string{"s1", "s2", "agent-1"}
	propGroups    = []string{"g1", "g2"}
	propTargets   = []string{"t1", "t2", "web"}
	propTPatterns = []string{"t1", "t2", "web", "t*", "*"}
	propLogins    = []string{"l1", "l2"}
	propForwards  = []string{"localhost:*", "10.0.0.*:443"}
	propDests     = []string{"localhost:5432", "10.0.0.7:443", "10.0.0.7:80", "evil:443"}
	propAddrs     = []string{"10.1.2.3", "192.168.1.1", ""}
	propSources   = []string{"10.0.0.0/8", "192.168.0.0/16"}
	// Patterns are words: a literal, "*" (one argument) or "**" (any run).
	propPatterns = []string{"a **", "a *", "b **", "** x **", "c", "a b", "**", "b x"}
)

// propCommands are exec command lines with the argv a shell would run,
// written out by hand; nil is a command that is not literal.
var propCommands = []struct {
	line string
	argv [][]string
}{
	{"a", [][]string{{"a"}}},
	{"a b", [][]string{{"a", "b"}}},
	{"a  'x'", [][]string{{"a", "x"}}},
	{"a x | b", [][]string{{"a", "x"}, {"b"}}},
	{"c; a b", [][]string{{"c"}, {"a", "b"}}},
	{"b x && c", [][]string{{"b", "x"}, {"c"}}},
	{`b "x y"`, [][]string{{"b", "x y"}}},
	{"c x", [][]string{{"c", "x"}}},
	{"a $V", nil},
	{"a > f", nil},
	{"(c)", nil},
}

type propCase struct {
	idents []IdentityMatcher
	roles  []Role
	opts   Options
	req    SessionRequest
	argv   [][]string // the oracle's parse of req.Command
	parsed bool
}

func genMatch(t *rapid.T, label string) Match {
	m := Match{Providers: rapid.SliceOfNDistinct(rapid.SampledFrom(propProviders), 1, 2, rapid.ID).Draw(t, label+"providers")}
	if rapid.Bool().Draw(t, label+"bysubject") {
		m.Subjects = []string{rapid.SampledFrom(append(slices.Clone(propSubjects), "s*", "agent-*")).Draw(t, label+"subject")}
	}
	if rapid.Bool().Draw(t, label+"bygroup") {
		m.Claims = map[string][]string{"groups": {rapid.SampledFrom(propGroups).Draw(t, label+"group")}}
	}
	return m
}

func genCase(t *rapid.T) propCase {
	var c propCase
	nid := rapid.IntRange(1, 3).Draw(t, "identities")
	for i := range nid {
		c.idents = append(c.idents, IdentityMatcher{Name: fmt.Sprintf("id%d", i), Match: genMatch(t, fmt.Sprintf("id%d.", i))})
	}
	names := func() []string {
		var n []string
		for _, im := range c.idents {
			n = append(n, im.Name)
		}
		return n
	}()
	nroles := rapid.IntRange(1, 6).Draw(t, "roles")
	for i := range nroles {
		l := fmt.Sprintf("r%d.", i)
		r := Role{Name: fmt.Sprintf("r%d", i)}
		if rapid.Bool().Draw(t, l+"inline") {
			r.Match = genMatch(t, l)
		} else {
			r.Identities = rapid.SliceOfNDistinct(rapid.SampledFrom(names), 1, 2, rapid.ID).Draw(t, l+"identities")
		}
		r.Targets = rapid.SliceOfNDistinct(rapid.SampledFrom(propTPatterns), 0, 2, rapid.ID).Draw(t, l+"targets")
		r.Logins = rapid.SliceOfNDistinct(rapid.SampledFrom(propLogins), 1, 2, rapid.ID).Draw(t, l+"logins")
		if rapid.Bool().Draw(t, l+"grant") {
			r.Access = AccessGrant
			r.Approval = &Approval{Approvers: []string{rapid.SampledFrom(names).Draw(t, l+"approver")}}
		}
		r.PTY = rapid.Bool().Draw(t, l+"pty")
		r.Shell = rapid.Bool().Draw(t, l+"shell")
		r.FileTransfer = rapid.Bool().Draw(t, l+"ft")
		r.PortForwarding = rapid.SliceOfNDistinct(rapid.SampledFrom(propForwards), 0, 2, rapid.ID).Draw(t, l+"forward")
		if rapid.IntRange(0, 3).Draw(t, l+"pinned") == 0 {
			r.SourceAddresses = []string{rapid.SampledFrom(propSources).Draw(t, l+"source")}
		}
		if rapid.Bool().Draw(t, l+"commands") {
			r.Commands = &Commands{
				Allow: rapid.SliceOfNDistinct(rapid.SampledFrom(propPatterns), 0, 3, rapid.ID).Draw(t, l+"allow"),
				Deny:  rapid.SliceOfNDistinct(rapid.SampledFrom(propPatterns), 0, 2, rapid.ID).Draw(t, l+"deny"),
			}
		}
		c.roles = append(c.roles, r)
	}
	if rapid.Bool().Draw(t, "indexed") {
		c.opts.Targets = rapid.SliceOfNDistinct(rapid.SampledFrom(propTargets), 0, 3, rapid.ID).Draw(t, "configured")
	}

	id := &Identity{
		Provider: rapid.SampledFrom(propProviders).Draw(t, "provider"),
		Subject:  rapid.SampledFrom(propSubjects).Draw(t, "subject"),
		Claims:   map[string]any{"groups": []any{rapid.SampledFrom(propGroups).Draw(t, "group")}},
	}
	cmd := rapid.SampledFrom(propCommands).Draw(t, "command")
	c.req = SessionRequest{
		Identity: id,
		Target:   rapid.SampledFrom(propTargets).Draw(t, "target"),
		Login:    rapid.SampledFrom(propLogins).Draw(t, "login"),
		Time:     t0,
		Action:   rapid.SampledFrom([]Action{ActionConnect, ActionShell, ActionExec, ActionFileTransfer, ActionForward}).Draw(t, "action"),
		Command:  cmd.line,
		PTY:      rapid.Bool().Draw(t, "reqpty"),
		Forward:  rapid.SampledFrom(propDests).Draw(t, "dest"),
	}
	c.argv, c.parsed = cmd.argv, cmd.argv != nil
	if a := rapid.SampledFrom(propAddrs).Draw(t, "addr"); a != "" {
		c.req.ClientAddress = netip.MustParseAddr(a)
	}
	ng := rapid.IntRange(0, 3).Draw(t, "grants")
	for i := range ng {
		l := fmt.Sprintf("g%d.", i)
		g := Grant{
			ID:       fmt.Sprintf("g%d", i),
			Identity: id.String(),
			Role:     rapid.SampledFrom(c.roles).Draw(t, l+"role").Name,
			Target:   c.req.Target,
			Login:    c.req.Login,
			Start:    t0.Add(-time.Minute),
			End:      t0.Add(time.Duration(rapid.IntRange(1, 10).Draw(t, l+"minutes")) * time.Minute),
		}
		switch rapid.IntRange(0, 5).Draw(t, l+"twist") {
		case 0:
			g.Identity = "someone@else"
		case 1:
			g.Target = "t2"
		case 2:
			g.Login = "l2"
		case 3:
			g.End = t0.Add(-time.Second)
		case 4:
			g.Command = rapid.SampledFrom(propCommands).Draw(t, l+"command").line
		}
		c.req.Grants = append(c.req.Grants, g)
	}
	return c
}

// oracle decides req from the rules as written: which roles allow it, and
// whether a deny applies.
type oracle struct{ c *propCase }

func (o oracle) matches(m Match, id *Identity) bool {
	if !slices.Contains(m.Providers, id.Provider) {
		return false
	}
	for _, s := range m.Subjects {
		if ok, _ := path.Match(s, id.Subject); !ok {
			return false
		}
	}
	for _, g := range m.Claims["groups"] {
		if !slices.ContainsFunc(id.Claims["groups"].([]any), func(v any) bool { return v == g }) {
			return false
		}
	}
	return true
}

func (o oracle) roleMatches(r Role, id *Identity) bool {
	if len(r.Match.Providers) > 0 && o.matches(r.Match, id) {
		return true
	}
	for _, n := range r.Identities {
		for _, im := range o.c.idents {
			if im.Name == n && o.matches(im.Match, id) {
				return true
			}
		}
	}
	return false
}

// grants returns the grants through which r applies, and whether it does.
func (o oracle) applies(r Role) ([]Grant, bool) {
	req := o.c.req
	target := slices.ContainsFunc(r.Targets, func(p string) bool { ok, _ := path.Match(p, req.Target); return ok })
	if !o.roleMatches(r, req.Identity) || !target || !slices.Contains(r.Logins, req.Login) {
		return nil, false
	}
	if r.Access != AccessGrant {
		return nil, true
	}
	var gs []Grant
	for _, g := range req.Grants {
		if g.Role == r.Name && g.Identity == req.Identity.String() && g.Target == req.Target && g.Login == req.Login &&
			!req.Time.Before(g.Start) && req.Time.Before(g.End) {
			gs = append(gs, g)
		}
	}
	return gs, len(gs) > 0
}

// wordsMatch is a naive recursive matcher of space-separated pattern words.
func wordsMatch(pat, argv []string) bool {
	if len(pat) == 0 {
		return len(argv) == 0
	}
	switch pat[0] {
	case "**":
		for i := 0; i <= len(argv); i++ {
			if wordsMatch(pat[1:], argv[i:]) {
				return true
			}
		}
		return false
	case "*":
		return len(argv) > 0 && wordsMatch(pat[1:], argv[1:])
	}
	return len(argv) > 0 && argv[0] == pat[0] && wordsMatch(pat[1:], argv[1:])
}

func anyMatch(pats []string, argv []string) bool {
	return slices.ContainsFunc(pats, func(p string) bool { return wordsMatch(strings.Fields(p), argv) })
}

// denied reports whether some applying role's deny refuses the command.
func (o oracle) denied() bool {
	if o.c.req.Action != ActionExec {
		return false
	}
	for _, r := range o.c.roles {
		if _, ok := o.applies(r); !ok || r.Commands == nil || len(r.Commands.Deny) == 0 {
			continue
		}
		if !o.c.parsed {
			return true
		}
		for _, argv := range o.c.argv {
			if anyMatch(r.Commands.Deny, argv) {
				return true
			}
		}
	}
	return false
}

// allows reports whether role r allows the request on its own.
func (o oracle) allows(r Role) bool {
	req := o.c.req
	grants, ok := o.applies(r)
	if !ok {
		return false
	}
	if len(r.SourceAddresses) > 0 {
		pfx := netip.MustParsePrefix(r.SourceAddresses[0])
		if !req.ClientAddress.IsValid() || !pfx.Contains(req.ClientAddress) {
			return false
		}
	}
	if r.Access != AccessGrant {
		return o.action(r, nil)
	}
	return slices.ContainsFunc(grants, func(g Grant) bool { return o.action(r, &g) })
}

func (o oracle) action(r Role, g *Grant) bool {
	req := o.c.req
	scoped := g != nil && g.Command != ""
	switch req.Action {
	case ActionConnect:
		return true
	case ActionShell:
		return !scoped && r.Shell && (!req.PTY || r.PTY)
	case ActionFileTransfer:
		return !scoped && r.FileTransfer
	case ActionForward:
		host, port, _ := net.SplitHostPort(req.Forward)
		return !scoped && slices.ContainsFunc(r.PortForwarding, func(p string) bool {
			ph, pp, _ := net.SplitHostPort(p)
			okh, _ := path.Match(ph, host)
			okp, _ := path.Match(pp, port)
			return okh && okp
		})
	case ActionExec:
		if req.PTY && !r.PTY {
			return false
		}
		if scoped {
			var want [][]string
			for _, pc := range propCommands {
				if pc.line == g.Command {
					want = pc.argv
				}
			}
			if want == nil || !o.c.parsed || !slices.EqualFunc(want, o.c.argv, slices.Equal) {
				return false
			}
		}
		if r.Commands == nil {
			return true
		}
		if !o.c.parsed {
			return false
		}
		// Deny rules alone allow every command they do not deny.
		for _, argv := range o.c.argv {
			if len(r.Commands.Allow) > 0 && !anyMatch(r.Commands.Allow, argv) {
				return false
			}
		}
		return true
	}
	return false
}

func TestPropertyDecisions(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genCase(t)
		p, _, err := Build(c.idents, c.roles, c.opts)
		if err != nil {
			t.Fatalf("generated policy refused: %v", err)
		}
		o := oracle{&c}
		d := p.Session(c.req)
		denied := o.denied()
		first := ""
		if !denied {
			for _, r := range c.roles {
				if o.allows(r) {
					first = "role:" + r.Name
					break
				}
			}
		}
		// Nothing is allowed that no rule grants, and deny always wins.
		if d.Allow && first == "" {
			t.Fatalf("allowed by %s (%s) though no rule grants it (denied by a rule: %v)", d.Rule, d.Limits.Role, denied)
		}
		if denied && d.Allow {
			t.Fatalf("a deny applies, yet allowed by %s", d.Rule)
		}
		// Nothing granted is refused, and the first allowing role decides.
		if !d.Allow && first != "" {
			t.Fatalf("refused (%s: %s) though %s allows it", d.Rule, d.Reason, first)
		}
		if d.Allow && d.Rule != first {
			t.Fatalf("decided by %s, want the first allowing role %s", d.Rule, first)
		}
		if denied && !strings.HasPrefix(d.Rule, "role:") {
			t.Fatalf("a deny applies, but the rule is %q", d.Rule)
		}
		// Explain, which looks at every role, decides the same.
		if e, _ := p.Explain(c.req); e.Allow != d.Allow || e.Rule != d.Rule || e.Grant != d.Grant {
			t.Fatalf("Explain %+v, Session %+v", e, d)
		}
	})
}
