package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Step is one role's part in a decision, as Explain tells it.
type Step struct {
	// Rule is the role, "role:NAME".
	Rule string
	// Outcome says whether the role applied, and why it allowed, denied
	// or did not apply.
	Outcome string
}

// Session decides what a session may do. A role applies to (identity,
// target, login) when it matches all three and is standing, or grant-only
// with an active grant of it for them. Among applying roles, a deny
// pattern of any one refuses an exec command whatever the others allow;
// otherwise the first applying role in policy order that allows the action
// decides, and the session runs under its limits. Default deny.
func (p *Policy) Session(req SessionRequest) Decision {
	return p.decide(&req, nil)
}

// Explain is Session with the reasoning: a step for every role of the
// policy, in order, saying whether it applied and what it said.
func (p *Policy) Explain(req SessionRequest) (Decision, []Step) {
	steps := make([]Step, 0, len(p.roles))
	d := p.decide(&req, &steps)
	return d, steps
}

// applied is a role that applies to a request, with the active grants it
// applies through (grant-only roles).
type applied struct {
	role   *compiledRole
	grants []*Grant
	// step is the role's index in the trace, when tracing.
	step int
}

// decide is Session, tracing into steps when not nil. Without a trace it
// looks only at the index's candidates; with one, at every role. The
// index only ever leaves out roles that cannot apply, so both decide the
// same.
func (p *Policy) decide(req *SessionRequest, steps *[]Step) Decision {
	id := req.Identity
	if id == nil {
		if steps != nil {
			for _, c := range p.roles {
				*steps = append(*steps, Step{Rule: c.rule, Outcome: "does not apply: the request names no identity"})
			}
		}
		return Decision{Rule: "default", Reason: "the request names no identity"}
	}
	var buf [8]applied
	apply := buf[:0]
	var grantOnly *compiledRole // a grant-only role that would apply under a grant
	cands := p.candidates(id.Provider, req.Target, req.Login)
	if steps != nil {
		cands = make([]int32, len(p.roles))
		for i := range cands {
			cands[i] = int32(i)
		}
	}
	for _, i := range cands {
		c := p.roles[i]
		grants, why := c.appliesTo(req, steps != nil)
		if why != "" {
			if why == noGrant && grantOnly == nil {
				grantOnly = c
			}
			if steps != nil {
				*steps = append(*steps, Step{Rule: c.rule, Outcome: "does not apply: " + why})
			}
			continue
		}
		a := applied{role: c, grants: grants, step: -1}
		if steps != nil {
			a.step = len(*steps)
			*steps = append(*steps, Step{Rule: c.rule, Outcome: "applies" + c.through(grants)})
		}
		apply = append(apply, a)
	}
	note := func(a *applied, outcome string) {
		if steps != nil {
			(*steps)[a.step].Outcome += outcome
		}
	}
	if len(apply) == 0 {
		reason := fmt.Sprintf("no role grants %s access to %s as %s", id, req.Target, req.Login)
		if grantOnly != nil {
			reason += fmt.Sprintf("; role %s grants it under a just-in-time grant: request one (bastion grants request --target %s --login %s)", grantOnly.Name, req.Target, req.Login)
		}
		return Decision{Rule: "default", Reason: reason}
	}

	// The command is parsed once, for every role.
	var cmds [][]string
	var perr error
	if req.Action == ActionExec {
		cmds, perr = ParseCommand(req.Command)
		// Deny wins: any applying role's deny refuses, and a command
		// that cannot be read cannot be shown to escape a deny.
		for i := range apply {
			a := &apply[i]
			rules := a.role.commands
			if rules == nil || len(rules.deny) == 0 {
				continue
			}
			if perr != nil {
				note(a, ": denies: the command cannot be checked against its deny rules")
				return Decision{Rule: a.role.rule, Reason: fmt.Sprintf("command %q is refused: it cannot be checked against role %s's deny rules (%s)", req.Command, a.role.Name, unwrapLiteral(perr))}
			}
			if pat, ok := rules.denied(cmds); ok {
				note(a, fmt.Sprintf(": denies: the command matches deny pattern %q", pat))
				return Decision{Rule: "role:" + a.role.Name + " deny:" + pat, Reason: fmt.Sprintf("command %q is denied by role %s (pattern %q)", req.Command, a.role.Name, pat)}
			}
		}
	}

	var firstWhy string
	for i := range apply {
		a := &apply[i]
		g, why := a.role.allows(req, a.grants, cmds, perr)
		if why != "" {
			note(a, ": does not allow it: "+why)
			if firstWhy == "" {
				firstWhy = fmt.Sprintf("role %s: %s", a.role.Name, why)
			}
			continue
		}
		note(a, ": allows it")
		for j := i + 1; j < len(apply); j++ {
			note(&apply[j], ": not needed, an earlier role allowed")
		}
		d := Decision{Allow: true, Rule: a.role.rule, Limits: a.role.limits(g)}
		if g != nil {
			d.Grant = g.ID
		}
		return d
	}
	return Decision{Rule: "default", Reason: fmt.Sprintf("%s may reach %s as %s, but no role allows %s: %s", id, req.Target, req.Login, actionPhrase(req), firstWhy)}
}

// noGrant is why a grant-only role that matches does not apply.
const noGrant = "it is grant-only, and no active grant of it covers this identity, target and login"

// appliesTo returns the active grants through which the role applies to
// req (none for a standing role), or why it does not apply: in words when
// explaining, else only not empty (decisions do not pay for sentences
// nobody reads).
func (c *compiledRole) appliesTo(req *SessionRequest, explain bool) ([]*Grant, string) {
	switch {
	case len(c.targets) == 0:
		return nil, "it has no targets (it grants certificates only)"
	case !c.matchesTarget(req.Target):
		return nil, sentence(explain, "its targets do not include ", req.Target)
	case !slices.Contains(c.Logins, req.Login):
		return nil, sentence(explain, "it does not grant login ", req.Login)
	case !c.matchesIdentity(req.Identity): // the dearest test last
		if !explain {
			return nil, "no"
		}
		return nil, "it does not match " + req.Identity.String()
	case !c.grantOnly():
		return nil, ""
	}
	var grants []*Grant
	for i := range req.Grants {
		g := &req.Grants[i]
		if g.Target == req.Target && g.Login == req.Login && c.grantCovers(g, req.Identity, req.Time) {
			grants = append(grants, g)
		}
	}
	if len(grants) == 0 {
		return nil, noGrant
	}
	return grants, ""
}

// sentence is what+arg when explaining; else a word that only says there
// is a reason.
func sentence(explain bool, what, arg string) string {
	if !explain {
		return "no"
	}
	return what + arg
}

func (c *compiledRole) through(grants []*Grant) string {
	if len(grants) == 0 {
		return " (standing)"
	}
	ids := make([]string, len(grants))
	for i, g := range grants {
		ids[i] = g.ID
	}
	return " (grant " + strings.Join(ids, ", ") + ")"
}

// allows says whether the applying role allows req's action, and under
// which of its grants (the one ending last, for a grant-only role); else
// why not. cmds and perr are req.Command parsed.
func (c *compiledRole) allows(req *SessionRequest, grants []*Grant, cmds [][]string, perr error) (*Grant, string) {
	if !c.fromSource(req.ClientAddress) {
		return nil, fmt.Sprintf("the client address %s is not among its source addresses", addrString(req))
	}
	if !c.grantOnly() {
		return nil, c.allowsAction(req, nil, cmds, perr)
	}
	var best *Grant
	why := ""
	for _, g := range grants {
		if w := c.allowsAction(req, g, cmds, perr); w != "" {
			why = w
			continue
		}
		if best == nil || g.End.After(best.End) {
			best = g
		}
	}
	if best == nil {
		return nil, why
	}
	return best, ""
}

func addrString(req *SessionRequest) string {
	if !req.ClientAddress.IsValid() {
		return "(unknown)"
	}
	return req.ClientAddress.String()
}

// allowsAction says why the role (under grant g, if not nil) does not
// allow req's action, or "" if it does.
func (c *compiledRole) allowsAction(req *SessionRequest, g *Grant, cmds [][]string, perr error) string {
	scoped := g != nil && g.Command != ""
	switch req.Action {
	case ActionConnect:
		return ""
	case ActionShell:
		switch {
		case scoped:
			return fmt.Sprintf("grant %s allows only the command %q", g.ID, g.Command)
		case !c.Shell:
			return "it does not allow an interactive shell"
		case req.PTY && !c.PTY:
			return "it does not allow a PTY"
		}
		return ""
	case ActionExec:
		if req.PTY && !c.PTY {
			return "it does not allow a PTY"
		}
		if scoped {
			want, err := ParseCommand(g.Command)
			if err != nil || perr != nil || !slices.EqualFunc(want, cmds, slices.Equal) {
				return fmt.Sprintf("grant %s allows only the command %q", g.ID, g.Command)
			}
		}
		if c.commands == nil {
			return ""
		}
		if perr != nil {
			return fmt.Sprintf("the command cannot be checked against its command rules (%s)", unwrapLiteral(perr))
		}
		if argv, ok := c.commands.allowed(cmds); !ok {
			return fmt.Sprintf("no allow pattern matches %q", strings.Join(argv, " "))
		}
		return ""
	case ActionFileTransfer:
		switch {
		case scoped:
			return fmt.Sprintf("grant %s allows only the command %q", g.ID, g.Command)
		case !c.FileTransfer:
			return "it does not allow file transfer"
		}
		return ""
	case ActionForward:
		switch {
		case scoped:
			return fmt.Sprintf("grant %s allows only the command %q", g.ID, g.Command)
		case len(c.forward) == 0:
			return "it does not allow port forwarding"
		}
		if _, ok := matchForward(c.forward, req.Forward); !ok {
			return fmt.Sprintf("no port_forwarding pattern matches %q", req.Forward)
		}
		return ""
	}
	return fmt.Sprintf("unknown action %q", req.Action)
}

func actionPhrase(req *SessionRequest) string {
	switch req.Action {
	case ActionShell:
		if req.PTY {
			return "an interactive shell with a PTY"
		}
		return "an interactive shell"
	case ActionExec:
		return fmt.Sprintf("the command %q", req.Command)
	case ActionFileTransfer:
		return "file transfer"
	case ActionForward:
		return fmt.Sprintf("a port forward to %q", req.Forward)
	case ActionConnect:
		return "the connection"
	}
	return fmt.Sprintf("action %q", req.Action)
}

// limits are what a session allowed by the role (under grant g, if not
// nil) runs under.
func (c *compiledRole) limits(g *Grant) Limits {
	l := Limits{
		Role:         c.Name,
		MaxSession:   c.MaxSession,
		IdleTimeout:  c.IdleTimeout,
		PTY:          c.PTY,
		Shell:        c.Shell,
		FileTransfer: c.FileTransfer,
		Forward:      slices.Clone(c.PortForwarding),
		Masking:      c.Masking,

		RedactPasswordInput: c.RedactPasswordInput,
	}
	if g != nil {
		l.NotAfter = g.End
		if g.Command != "" {
			// A grant for one command is for that command only.
			l.Shell, l.FileTransfer, l.Forward = false, false, nil
		}
	}
	return l
}
