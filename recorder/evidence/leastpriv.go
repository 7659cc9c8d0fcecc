package evidence

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// LeastPrivilege is the policy in force during the period, as its
// policy.loaded leaves recorded it: every role, who could reach what as
// which login under which commands, and what each reload changed.
type LeastPrivilege struct {
	// Policies are the policies in force in the period: the last one
	// loaded before it, then every one loaded during it.
	Policies []PolicyInForce `json:"policies"`
	// Reach is, for the policies in force, each role's reach: who it
	// applies to, which targets as which logins, under which commands.
	Reach []Reach `json:"reach"`
}

// PolicyInForce is one policy.loaded leaf.
type PolicyInForce struct {
	Leaf int64     `json:"leaf"`
	At   time.Time `json:"at"`
	Hash string    `json:"hash"`
	// Recorded says whether the leaf holds the policy itself (text and
	// roles); leaves written before bastion recorded them hold only its
	// hash.
	Recorded bool   `json:"recorded"`
	Roles    []Role `json:"roles"`
	Text     string `json:"text,omitempty"`
	Masked   string `json:"masked,omitempty"`
	// Reloaded are the later loads of this same policy (same hash) in
	// the period, before another was loaded: a restart, or a reload
	// that changed nothing.
	Reloaded []PolicyLoad `json:"reloaded"`
	// Changes lists, role by role, what changed from the policy before
	// it; Diff is the unified diff of the two texts.
	Changes []string `json:"changes"`
	Diff    string   `json:"diff,omitempty"`

	rolesJSON string // as recorded
}

// samePolicy reports whether two loads put one policy in force: the same
// hash, or, without hashes, the same recorded text and roles.
func samePolicy(a, b *PolicyInForce) bool {
	if a.Hash != "" || b.Hash != "" {
		return a.Hash == b.Hash
	}
	return a.Recorded && b.Recorded && a.Text == b.Text && a.rolesJSON == b.rolesJSON
}

// PolicyLoad is one more load of a policy already in force.
type PolicyLoad struct {
	Leaf int64     `json:"leaf"`
	At   time.Time `json:"at"`
}

// Role is one role of a policy, as the policy.loaded leaf's roles.json
// attribute holds it (docs/journal-format.md, section 6.2): the shape
// serve writes, read back.
type Role = policy.RoleView

// Matcher is an identity matcher of a role.
type Matcher = policy.MatcherView

// Commands are a role's exec command rules.
type Commands = policy.CommandsView

// Approval is a grant-only role's approval rule.
type Approval = policy.ApprovalView

// Reach is what one role of a policy in force let its identities do.
type Reach struct {
	Policy string `json:"policy"` // its hash
	// PolicyLeaf is the policy.loaded leaf of the policy.
	PolicyLeaf int64  `json:"policy_leaf"`
	Role       string `json:"role"`
	Who        string `json:"who"`
	Access     string `json:"access"`
	Targets    string `json:"targets"`
	Logins     string `json:"logins"`
	Commands   string `json:"commands"`
	Allows     string `json:"allows"`
	// Masking is the role's masking profile, if any.
	Masking string `json:"masking,omitempty"`
	// UsedBy are the identities whose sessions or certificates in the
	// period name the role.
	UsedBy []string `json:"used_by"`
}

// readPolicies reads the policies in force during the period.
func (b *builder) readPolicies() error {
	type load struct {
		idx int64
		l   *recorder.Leaf
	}
	var loads []load
	if err := b.events(events.PolicyLoaded, func(idx int64, l *recorder.Leaf) { loads = append(loads, load{idx, l}) }); err != nil {
		return err
	}
	lp := &b.r.LeastPrivilege
	var prev *PolicyInForce
	for i, ld := range loads {
		p := policyOf(ld.idx, ld.l)
		b.policies[p.Hash] = &p
		next := int64(0)
		if i+1 < len(loads) {
			next = loads[i+1].l.WallNS
		}
		bad := p.Changes // what could not be read of the leaf
		if prev != nil {
			p.Changes, p.Diff = changes(prev, &p)
		} else {
			p.Changes = []string{"the first policy the journal records"}
		}
		p.Changes = append(bad, p.Changes...)
		q := p
		prev = &q
		// In force from its load to the next one.
		if ld.l.WallNS > b.to || next != 0 && next < b.from {
			continue
		}
		// The same policy loaded again (serve restarted): one more
		// load of the policy already listed.
		if n := len(lp.Policies); n > 0 && samePolicy(&lp.Policies[n-1], &p) {
			lp.Policies[n-1].Reloaded = append(lp.Policies[n-1].Reloaded, PolicyLoad{Leaf: p.Leaf, At: p.At})
			continue
		}
		lp.Policies = append(lp.Policies, p)
	}
	used := map[string]map[string]bool{}
	use := func(rule, identity string) {
		for _, r := range ruleRoles(rule) {
			if used[r] == nil {
				used[r] = map[string]bool{}
			}
			used[r][identity] = true
		}
	}
	for _, s := range b.r.Sessions {
		use(s.Rule, s.Identity)
	}
	for _, c := range b.certs {
		if b.overlaps(c.ValidAfter.UnixNano(), c.ValidBefore.UnixNano()) {
			use(c.Rule, c.identity)
		}
	}
	for _, p := range lp.Policies {
		for _, r := range p.Roles {
			lp.Reach = append(lp.Reach, Reach{
				Policy: p.Hash, PolicyLeaf: p.Leaf, Role: r.Name, Who: describeMatchers(r.Identities), Access: describeAccess(r),
				Targets: orNone(r.Targets, "no front-door target: certificates only"), Logins: strings.Join(r.Logins, ", "),
				Commands: describeCommands(r.Commands), Allows: describeAllows(r), Masking: r.Masking, UsedBy: nonNil(sortedKeys(used[r.Name])),
			})
		}
	}
	return nil
}

// ruleRoles are the roles a decision's rule names: "role:NAME", or
// several joined by commas (a certificate's), possibly followed by what
// within the role decided ("role:ops deny:rm *").
func ruleRoles(rule string) []string {
	var out []string
	for _, part := range strings.Split(rule, ",") {
		name, ok := strings.CutPrefix(strings.TrimSpace(part), "role:")
		if name, _, _ = strings.Cut(name, " "); ok && name != "" {
			out = append(out, name)
		}
	}
	return out
}

func policyOf(idx int64, l *recorder.Leaf) PolicyInForce {
	a := l.Attrs
	p := PolicyInForce{Leaf: idx, At: wall(l), Hash: a["hash"], Roles: []Role{}, Text: a["text"], Masked: a[maskedAttr], Changes: []string{}, Reloaded: []PolicyLoad{}}
	p.rolesJSON = a["roles.json"]
	if rj := a["roles.json"]; rj != "" {
		var roles []Role
		if err := json.Unmarshal([]byte(rj), &roles); err == nil {
			p.Roles, p.Recorded = roles, true
		} else {
			p.Changes = append(p.Changes, "its roles.json attribute does not parse: "+err.Error())
		}
	}
	return p
}

// maskedAttr is the attribute that says what masking hid in a leaf's
// text (docs/journal-format.md, section 6.2).
const maskedAttr = "masked"

// changes says what changed from policy a to policy b: roles added,
// removed and changed, field by field, and the unified diff of the texts.
func changes(a, b *PolicyInForce) ([]string, string) {
	if samePolicy(a, b) {
		return []string{"none: the same policy was loaded again"}, ""
	}
	var out []string
	if !a.Recorded || !b.Recorded {
		out = append(out, "the policy changed (hash "+short(a.Hash)+" to "+short(b.Hash)+"); the journal does not hold both policies' roles")
	} else {
		old := map[string]Role{}
		for _, r := range a.Roles {
			old[r.Name] = r
		}
		seen := map[string]bool{}
		for _, r := range b.Roles {
			seen[r.Name] = true
			o, ok := old[r.Name]
			if !ok {
				out = append(out, fmt.Sprintf("role %q added: %s", r.Name, describeRole(r)))
				continue
			}
			for _, f := range roleFields {
				if x, y := f.get(o), f.get(r); x != y {
					out = append(out, fmt.Sprintf("role %q: %s %s → %s", r.Name, f.name, x, y))
				}
			}
		}
		for _, r := range a.Roles {
			if !seen[r.Name] {
				out = append(out, fmt.Sprintf("role %q removed", r.Name))
			}
		}
		if len(out) == 0 {
			out = append(out, "no role changed (the text changed: see the diff)")
		}
	}
	var diff string
	if a.Text != "" && b.Text != "" {
		diff, _ = difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(a.Text), B: difflib.SplitLines(b.Text),
			FromFile: "policy " + short(a.Hash) + " (leaf " + fmt.Sprint(a.Leaf) + ")", ToFile: "policy " + short(b.Hash) + " (leaf " + fmt.Sprint(b.Leaf) + ")",
			Context: 2,
		})
	}
	return out, diff
}

var roleFields = []struct {
	name string
	get  func(Role) string
}{
	{"identities", func(r Role) string { return describeMatchers(r.Identities) }},
	{"access", describeAccess},
	{"targets", func(r Role) string { return orNone(r.Targets, "none") }},
	{"logins", func(r Role) string { return orNone(r.Logins, "none") }},
	{"commands", func(r Role) string { return describeCommands(r.Commands) }},
	{"allows", describeAllows},
	{"permit", func(r Role) string { return orNone(r.Permit, "none") }},
	{"max_ttl", func(r Role) string { return r.MaxTTL }},
	{"masking", func(r Role) string { return cmp.Or(r.Masking, "default") }},
	{"max_session", func(r Role) string { return cmp.Or(r.MaxSession, "default") }},
	{"idle_timeout", func(r Role) string { return cmp.Or(r.IdleTimeout, "default") }},
	{"source_addresses", func(r Role) string { return orNone(r.SourceAddresses, "anywhere") }},
}

func describeRole(r Role) string {
	return fmt.Sprintf("%s; %s; targets %s as %s; commands: %s; %s", describeMatchers(r.Identities), describeAccess(r),
		orNone(r.Targets, "none"), strings.Join(r.Logins, ", "), describeCommands(r.Commands), describeAllows(r))
}

func describeMatchers(ms []Matcher) string {
	if len(ms) == 0 {
		return "nobody"
	}
	var parts []string
	for _, m := range ms {
		var c []string
		c = append(c, "provider "+strings.Join(m.Providers, "|"))
		if len(m.Subjects) > 0 {
			c = append(c, "subject "+strings.Join(m.Subjects, "|"))
		}
		if len(m.Sponsors) > 0 {
			c = append(c, "sponsor "+strings.Join(m.Sponsors, "|"))
		}
		for _, k := range slices.Sorted(maps.Keys(m.Claims)) {
			c = append(c, "claim "+k+" "+strings.Join(m.Claims[k], "|"))
		}
		s := strings.Join(c, ", ")
		if m.Name != "" {
			s = m.Name + " (" + s + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; or ")
}

func describeAccess(r Role) string {
	if r.Access != "grant" {
		return "standing: whenever the identity matches"
	}
	if r.Approval == nil {
		return "grant only"
	}
	a := r.Approval
	s := fmt.Sprintf("grant only: %d approval(s) from %s, at most %s", a.Approvals, describeApprovers(a), a.MaxDuration)
	if a.ExcludeSponsor {
		s += "; a requester's sponsor may not approve"
	}
	return s
}

func describeApprovers(a *Approval) string {
	if len(a.ApproverIdentities) > 0 {
		return describeMatchers(a.ApproverIdentities)
	}
	return strings.Join(a.Approvers, ", ")
}

func describeCommands(c *Commands) string {
	if c == nil {
		return "every exec command"
	}
	s := "allow " + orNone(c.Allow, "every command not denied")
	if len(c.Deny) > 0 {
		s += "; deny " + strings.Join(c.Deny, ", ")
	}
	return s
}

func describeAllows(r Role) string {
	var a []string
	if r.PTY {
		a = append(a, "PTY")
	}
	if r.Shell {
		a = append(a, "interactive shell")
	}
	if r.FileTransfer {
		a = append(a, "file transfer")
	}
	if len(r.PortForwarding) > 0 {
		a = append(a, "port forwards to "+strings.Join(r.PortForwarding, ", "))
	}
	s := "exec only: no PTY, shell, file transfer or forwards"
	if len(a) > 0 {
		s = "exec, " + strings.Join(a, ", ")
	}
	return s
}

// scopeOf renders what grant g allowed, from its role in the policy in
// force when it was requested.
func (b *builder) scopeOf(g *Grant) string {
	s := fmt.Sprintf("login %s on target %s", g.Login, g.Target)
	if g.Duration != "" {
		s += " for " + g.Duration
	}
	var role *Role
	if p := b.policies[g.PolicyHash]; p != nil {
		for i := range p.Roles {
			if p.Roles[i].Name == g.Role {
				role = &p.Roles[i]
			}
		}
	}
	switch {
	case g.Command != "":
		s += "; only the exec command " + strconv.Quote(g.Command)
	case role != nil && role.Commands == nil:
		s += "; any exec command (the role has no command rules)"
	case role != nil:
		s += "; exec commands: " + describeCommands(role.Commands)
	default:
		s += "; the commands role " + strconv.Quote(g.Role) + " allows (the journal does not record that policy's roles)"
	}
	if role != nil {
		s += "; " + describeAllows(*role)
		if role.MaxSession != "" {
			s += "; each session ends after " + role.MaxSession
		}
		if role.Masking != "" {
			s += "; masking " + role.Masking
		}
	}
	return s + " (role " + g.Role + ")"
}

func orNone(ss []string, none string) string {
	if len(ss) == 0 {
		return none
	}
	return strings.Join(ss, ", ")
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
