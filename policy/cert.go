package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// Certificate extensions a role may permit, as OpenSSH names them.
const (
	PermitPTY             = "permit-pty"
	PermitPortForwarding  = "permit-port-forwarding"
	PermitAgentForwarding = "permit-agent-forwarding"
	PermitX11Forwarding   = "permit-X11-forwarding"
	PermitUserRC          = "permit-user-rc"
)

// KnownPermits lists every extension a role may name.
var KnownPermits = []string{PermitPTY, PermitPortForwarding, PermitAgentForwarding, PermitX11Forwarding, PermitUserRC}

// DefaultTTL is a certificate's lifetime when neither the request nor the
// role asks for less.
const DefaultTTL = 10 * time.Minute

// CertRequest is what a certificate is asked for.
type CertRequest struct {
	Identity *Identity
	// Time is when the decision is made.
	Time time.Time
	// Logins narrows the principals to these, if not empty; asking for a
	// login no rule grants is refused.
	Logins []string
	// TTL is the lifetime asked for; zero means the default.
	TTL time.Duration
	// ClientAddress is where the request came from (for the journal and
	// for rules that pin addresses).
	ClientAddress netip.Addr
	// Grants are the identity's active grants: a grant-only role
	// contributes its logins only through one, and the certificate ends
	// no later than the grant (CertDecision.NotAfter).
	Grants []Grant
}

// CertDecision is the answer: allow with what the certificate carries, or
// deny with the reason. Rule names what decided either way.
type CertDecision struct {
	Allow  bool
	Rule   string
	Reason string
	// Principals are the logins the certificate names, sorted.
	Principals []string
	// TTL is the certificate's lifetime: the asked-for TTL or DefaultTTL,
	// capped by the role's maximum. NotAfter, when set, caps it further
	// (a grant's end).
	TTL      time.Duration
	NotAfter time.Time
	// Extensions are the permit-* extensions granted (value "").
	Extensions []string
	// SourceAddresses pins where the certificate may be used from, as
	// OpenSSH's source-address critical option (CIDR list); empty: anywhere.
	SourceAddresses []string
	// Grant names the just-in-time grant the certificate was issued
	// under, if any.
	Grant string
	// Sponsor is the identity's sponsor: its token's, else the first
	// matching role's that names one.
	Sponsor string
}

// Role is a minimal role mapping: identities that match get these logins,
// at most this TTL, with these extensions. The policy language of grants and
// command rules builds on it.
type Role struct {
	Name  string
	Match Match
	// Logins are the principals granted.
	Logins []string
	// MaxTTL caps the certificate lifetime; zero means DefaultTTL.
	MaxTTL time.Duration
	// Permit lists permit-* extensions; none by default.
	Permit []string
	// SourceAddresses pins certificates to these CIDRs, if not empty.
	SourceAddresses []string
	// Sponsor names the human or team accountable for the identities this
	// role matches, when their tokens name none (an agent's owner).
	Sponsor string
}

// Match selects identities. Every field that is set must match; a role with
// an empty Match matches nobody (roles never match everyone by accident),
// and a valid role names its Providers: a subject or a claim means
// something only within the issuer that vouched for it.
type Match struct {
	// Providers are configured provider names.
	Providers []string
	// Subjects are glob patterns (path.Match syntax) on the subject.
	Subjects []string
	// Sponsors are glob patterns on the identity's sponsor (from its token);
	// an identity without one matches none.
	Sponsors []string
	// Claims maps a claim name (dotted for nested objects) to acceptable
	// glob patterns; the claim must have at least one value matching one.
	Claims map[string][]string
}

func (m *Match) empty() bool {
	return len(m.Providers) == 0 && len(m.Subjects) == 0 && len(m.Sponsors) == 0 && len(m.Claims) == 0
}

// matches reports whether id satisfies every set field of m.
func (m *Match) matches(id *Identity) bool {
	if m.empty() {
		return false
	}
	if len(m.Providers) > 0 && !slices.Contains(m.Providers, id.Provider) {
		return false
	}
	if len(m.Subjects) > 0 && !globAny(m.Subjects, id.Subject) {
		return false
	}
	if len(m.Sponsors) > 0 && (id.Sponsor == "" || !globAny(m.Sponsors, id.Sponsor)) {
		return false
	}
	for name, pats := range m.Claims {
		ok := false
		for _, v := range id.Claim(name) {
			if globAny(pats, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func globAny(pats []string, s string) bool {
	for _, p := range pats {
		if ok, err := path.Match(p, s); err == nil && ok {
			return true
		}
	}
	return false
}

// Validate checks a role for mistakes a config loader reports.
func (r *Role) Validate() error {
	if r.Name == "" {
		return fmt.Errorf("a role needs a name")
	}
	if r.Match.empty() {
		return fmt.Errorf("role %q matches nobody: give it a match on providers, subjects or claims", r.Name)
	}
	if len(r.Match.Providers) == 0 {
		// Subjects and claims mean something only within one issuer: the
		// same "sub" from another provider is someone else.
		return fmt.Errorf("role %q: its match must name the providers whose identities it grants", r.Name)
	}
	for _, p := range slices.Concat(r.Match.Subjects, r.Match.Sponsors, flatten(r.Match.Claims)) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("role %q: bad pattern %q: %v", r.Name, p, err)
		}
	}
	if len(r.Logins) == 0 {
		return fmt.Errorf("role %q grants no logins", r.Name)
	}
	for _, l := range r.Logins {
		if l == "" || strings.ContainsAny(l, " ,\t\n@") {
			return fmt.Errorf("role %q: invalid login %q", r.Name, l)
		}
	}
	if r.MaxTTL < 0 {
		return fmt.Errorf("role %q: negative max TTL", r.Name)
	}
	for _, p := range r.Permit {
		if !slices.Contains(KnownPermits, p) {
			return fmt.Errorf("role %q: unknown extension %q (known: %s)", r.Name, p, strings.Join(KnownPermits, ", "))
		}
	}
	for _, a := range r.SourceAddresses {
		if _, err := parseSource(a); err != nil {
			return fmt.Errorf("role %q: %v", r.Name, err)
		}
	}
	return nil
}

// parseSource reads a source address as OpenSSH does: an address or a
// CIDR block with no host bits set (sshd refuses "10.0.0.1/16").
func parseSource(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad source address %q: want an address or CIDR block", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("source address %q has host bits set: write %s", s, p.Masked())
	}
	return p, nil
}

// intersectSources returns the addresses both lists allow: for each
// overlapping pair, the narrower block.
func intersectSources(a, b []string) []string {
	var out []string
	for _, x := range a {
		px, err := parseSource(x)
		if err != nil {
			continue
		}
		for _, y := range b {
			py, err := parseSource(y)
			if err != nil || !px.Overlaps(py) {
				continue
			}
			n := px
			if py.Bits() > px.Bits() {
				n = py
			}
			if s := sourceString(n); !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// sourceString writes a block the way it would be configured: a single
// address without its /32 or /128.
func sourceString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func flatten(m map[string][]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v...)
	}
	return out
}

// Policy is a set of roles. Its decisions are pure: the same request always
// gets the same answer.
type Policy struct {
	Roles []Role
}

// New validates roles and returns a policy over them.
func New(roles []Role) (*Policy, error) {
	seen := map[string]bool{}
	for i := range roles {
		if err := roles[i].Validate(); err != nil {
			return nil, err
		}
		if seen[roles[i].Name] {
			return nil, fmt.Errorf("role %q is defined twice", roles[i].Name)
		}
		seen[roles[i].Name] = true
	}
	return &Policy{Roles: slices.Clone(roles)}, nil
}

// Certificate decides what certificate req's identity may get. Every
// matching role contributes its logins; the TTL cap, extensions and source
// addresses are the most restrictive among the roles that grant the
// certificate's principals, so that asking for a login never widens what
// another role allowed. Default deny.
func (p *Policy) Certificate(req CertRequest) CertDecision {
	if req.Identity == nil {
		return CertDecision{Reason: "no identity"}
	}
	var matched []*Role
	logins := map[string]bool{}
	for i := range p.Roles {
		r := &p.Roles[i]
		if !r.Match.matches(req.Identity) {
			continue
		}
		if len(req.Logins) > 0 && !slices.ContainsFunc(r.Logins, func(l string) bool { return slices.Contains(req.Logins, l) }) {
			continue
		}
		matched = append(matched, r)
		for _, l := range r.Logins {
			if len(req.Logins) == 0 || slices.Contains(req.Logins, l) {
				logins[l] = true
			}
		}
	}
	if len(matched) == 0 {
		if len(req.Logins) > 0 {
			return CertDecision{Reason: fmt.Sprintf("no role grants %s login %s", req.Identity, strings.Join(req.Logins, ","))}
		}
		return CertDecision{Reason: fmt.Sprintf("no role matches %s", req.Identity)}
	}
	for _, l := range req.Logins {
		if !logins[l] {
			return CertDecision{Reason: fmt.Sprintf("no role grants %s login %s", req.Identity, l)}
		}
	}
	d := CertDecision{Allow: true, TTL: req.TTL, Sponsor: req.Identity.Sponsor}
	if d.TTL <= 0 {
		d.TTL = DefaultTTL
	}
	var names []string
	permit := map[string]int{}
	for _, r := range matched {
		names = append(names, r.Name)
		if d.Sponsor == "" {
			d.Sponsor = r.Sponsor
		}
		max := r.MaxTTL
		if max <= 0 {
			max = DefaultTTL
		}
		d.TTL = min(d.TTL, max)
		for _, e := range r.Permit {
			permit[e]++
		}
		if len(r.SourceAddresses) > 0 {
			if d.SourceAddresses == nil {
				d.SourceAddresses = intersectSources(r.SourceAddresses, r.SourceAddresses)
			} else {
				// Both pin: only what both allow survives.
				d.SourceAddresses = intersectSources(d.SourceAddresses, r.SourceAddresses)
				if len(d.SourceAddresses) == 0 {
					return CertDecision{Rule: strings.Join(names, ","), Reason: "roles pin disjoint source addresses"}
				}
			}
		}
	}
	for _, e := range KnownPermits {
		if permit[e] == len(matched) {
			d.Extensions = append(d.Extensions, e)
		}
	}
	for l := range logins {
		d.Principals = append(d.Principals, l)
	}
	slices.Sort(d.Principals)
	d.Rule = "role:" + strings.Join(names, ",role:")
	return d
}
