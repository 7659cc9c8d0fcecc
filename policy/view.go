package policy

import (
	"time"

	"github.com/bastionhq/bastion/policy/mask"
)

// RoleView is a role as a reviewer reads it: what it grants, to whom,
// with every default made explicit and every named identity matcher
// expanded, so that least privilege can be judged from it alone. Lists
// are never null: an empty one means none (no targets, no forwards) or,
// for a matcher's subjects, sponsors and claims, no constraint. It is the
// JSON of the journal's policy.loaded "roles.json" attribute
// (docs/journal-format.md).
type RoleView struct {
	Name string `json:"name"`
	// Access is "standing" or "grant".
	Access string `json:"access"`
	// Identities are the role's matchers: its named identity blocks, in
	// the order it names them, then its inline match block, if any,
	// whose Name is "".
	Identities []MatcherView `json:"identities"`
	Targets    []string      `json:"targets"`
	Logins     []string      `json:"logins"`
	PTY        bool          `json:"pty"`
	Shell      bool          `json:"shell"`
	// FileTransfer allows sftp and scp.
	FileTransfer   bool     `json:"file_transfer"`
	PortForwarding []string `json:"port_forwarding"`
	// Commands are the exec command rules; nil: every command is
	// allowed.
	Commands *CommandsView `json:"commands"`
	// Permit are the certificate extensions the role gives.
	Permit []string `json:"permit"`
	// MaxTTL is the longest certificate lifetime: the role's max_ttl
	// (DefaultTTL when it has none), capped by the certificates' max_ttl
	// the policy was checked against ("10m0s").
	MaxTTL string `json:"max_ttl"`
	// MaxSession and IdleTimeout are the role's own session limits;
	// "": the front door's.
	MaxSession  string `json:"max_session"`
	IdleTimeout string `json:"idle_timeout"`
	// Masking names the session's masking profile; "": none.
	Masking string `json:"masking"`
	// SourceAddresses pin the role to client addresses; empty: anywhere.
	SourceAddresses []string `json:"source_addresses"`
	// Approval says who approves the grants of a grant-only role; nil for
	// a standing role.
	Approval *ApprovalView `json:"approval"`
}

// MatcherView is an identity matcher (an identity block, or a role's
// inline match block with Name "").
type MatcherView struct {
	Name      string              `json:"name"`
	Providers []string            `json:"providers"`
	Subjects  []string            `json:"subjects"`
	Sponsors  []string            `json:"sponsors"`
	Claims    map[string][]string `json:"claims"`
}

// CommandsView is a role's exec command rules.
type CommandsView struct {
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

// ApprovalView is how a grant-only role's grants are approved.
type ApprovalView struct {
	// Approvers name identity blocks; ApproverIdentities are those
	// blocks, in the same order.
	Approvers          []string      `json:"approvers"`
	ApproverIdentities []MatcherView `json:"approver_identities"`
	// Approvals is how many distinct approvers are needed.
	Approvals int `json:"approvals"`
	// MaxDuration is the longest grant ("1h0m0s").
	MaxDuration    string `json:"max_duration"`
	ExcludeSponsor bool   `json:"exclude_sponsor"`
}

// RoleViews returns p's roles, in policy order, as reviewers read them.
func (p *Policy) RoleViews() []RoleView {
	views := make([]RoleView, 0, len(p.roles))
	for _, c := range p.roles {
		v := RoleView{
			Name:            c.Name,
			Access:          c.Access,
			Identities:      []MatcherView{},
			Targets:         nonNil(c.Targets),
			Logins:          nonNil(c.Logins),
			PTY:             c.PTY,
			Shell:           c.Shell,
			FileTransfer:    c.FileTransfer,
			PortForwarding:  nonNil(c.PortForwarding),
			Permit:          nonNil(c.permits),
			MaxTTL:          durationOr(p.maxTTL(c.MaxTTL), DefaultTTL),
			MaxSession:      durationOr(c.MaxSession, 0),
			IdleTimeout:     durationOr(c.IdleTimeout, 0),
			Masking:         c.Masking,
			SourceAddresses: nonNil(c.SourceAddresses),
		}
		if v.Access == "" {
			v.Access = AccessStanding
		}
		for _, name := range c.Identities {
			v.Identities = append(v.Identities, p.matcherView(name))
		}
		if !c.Match.empty() {
			v.Identities = append(v.Identities, matcherView("", &c.Match))
		}
		if c.Commands != nil {
			v.Commands = &CommandsView{Allow: nonNil(c.Commands.Allow), Deny: nonNil(c.Commands.Deny)}
		}
		if a := c.Approval; a != nil {
			av := &ApprovalView{
				Approvers:          nonNil(a.Approvers),
				ApproverIdentities: []MatcherView{},
				Approvals:          a.approvals(),
				MaxDuration:        a.maxDuration().String(),
				ExcludeSponsor:     a.ExcludeSponsor,
			}
			for _, name := range a.Approvers {
				av.ApproverIdentities = append(av.ApproverIdentities, p.matcherView(name))
			}
			v.Approval = av
		}
		views = append(views, v)
	}
	return views
}

// RolesJSON is [Policy.RoleViews] as one JSON array, without
// insignificant white space or HTML escaping, fields in the order of the
// types: the journal's "roles.json". With a masker, every string in it
// (names and patterns, not the claims' names) is masked first, and the
// values hidden are returned: a pattern in a policy should hold no
// secret, but could.
func (p *Policy) RolesJSON(m *mask.Masker) ([]byte, []mask.Hit) {
	views := p.RoleViews()
	var hits []mask.Hit
	for i := range views {
		hits = append(hits, maskStrings(m, views[i].eachString)...)
	}
	return compactJSON(views), hits
}

// eachString calls f with every string value of v.
func (v *RoleView) eachString(f func(*string)) {
	all := func(s []string) {
		for i := range s {
			f(&s[i])
		}
	}
	matchers := func(ms []MatcherView) {
		for i := range ms {
			eachMatcherString(&ms[i], f)
		}
	}
	for _, s := range []*string{&v.Name, &v.Access, &v.MaxTTL, &v.MaxSession, &v.IdleTimeout, &v.Masking} {
		f(s)
	}
	matchers(v.Identities)
	all(v.Targets)
	all(v.Logins)
	all(v.PortForwarding)
	all(v.Permit)
	all(v.SourceAddresses)
	if v.Commands != nil {
		all(v.Commands.Allow)
		all(v.Commands.Deny)
	}
	if a := v.Approval; a != nil {
		all(a.Approvers)
		matchers(a.ApproverIdentities)
		f(&a.MaxDuration)
	}
}

// maxTTL is a role's max_ttl, capped by the certificates'.
func (p *Policy) maxTTL(d time.Duration) time.Duration {
	if d <= 0 {
		d = DefaultTTL
	}
	if p.opts.MaxTTL > 0 {
		d = min(d, p.opts.MaxTTL)
	}
	return d
}

// matcherView is the identity block called name.
func (p *Policy) matcherView(name string) MatcherView {
	if m := p.identities[name]; m != nil {
		return matcherView(name, m)
	}
	// A built policy names only identities it defines.
	return matcherView(name, &Match{})
}

func matcherView(name string, m *Match) MatcherView {
	v := MatcherView{
		Name:      name,
		Providers: nonNil(m.Providers),
		Subjects:  nonNil(m.Subjects),
		Sponsors:  nonNil(m.Sponsors),
		Claims:    map[string][]string{},
	}
	for k, pats := range m.Claims {
		v.Claims[k] = nonNil(pats)
	}
	return v
}

// nonNil is a copy of s, never nil.
func nonNil(s []string) []string {
	return append([]string{}, s...)
}

// durationOr writes d, or def when d is zero; "" when both are.
func durationOr(d, def time.Duration) string {
	if d == 0 {
		d = def
	}
	if d == 0 {
		return ""
	}
	return d.String()
}
