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

// Role grants the identities it matches logins: in certificates, and on
// the front door's targets with what sessions may do there. Its zero
// capabilities are the least privilege: exec only, no PTY, shell, file
// transfer or forwarding, every exec command allowed unless Commands says
// otherwise.
type Role struct {
	Name string
	// Match is the inline identity matcher; Identities names matchers
	// defined apart. The role applies to an identity any of them matches.
	Match      Match
	Identities []string
	// Logins are the principals granted.
	Logins []string
	// MaxTTL caps the certificate lifetime; zero means DefaultTTL.
	MaxTTL time.Duration
	// Permit lists the certificate's permit-* extensions. When nil, they
	// follow the role's capabilities: permit-pty with PTY,
	// permit-port-forwarding with PortForwarding. When set (even empty),
	// it is exactly what the certificate gets.
	Permit []string
	// SourceAddresses pins certificates and sessions to these CIDRs, if
	// not empty.
	SourceAddresses []string
	// Sponsor names the human or team accountable for the identities this
	// role matches, when their tokens name none (an agent's owner).
	Sponsor string

	// Targets are glob patterns over the front door's target names. None:
	// the role grants certificates only (for hosts that trust the user CA
	// directly), and no front-door target.
	Targets []string
	// Access is AccessStanding (or empty) or AccessGrant: a grant-only
	// role allows only through an active Grant naming it.
	Access string
	// PTY, Shell and FileTransfer allow what their names say; exec is
	// always allowed (subject to Commands).
	PTY          bool
	Shell        bool
	FileTransfer bool
	// PortForwarding lists "host:port" glob patterns that port forwards
	// may reach; none by default.
	PortForwarding []string
	// MaxSession and IdleTimeout bound sessions; zero means the front
	// door's defaults.
	MaxSession  time.Duration
	IdleTimeout time.Duration
	// Masking names the masking profile applied to output.
	Masking string
	// RedactPasswordInput records what is typed at a password prompt (as
	// the output shows one) as a redaction marker, not as the characters.
	RedactPasswordInput bool
	// Commands restricts exec commands; nil allows every command.
	Commands *Commands
	// Approval says who approves grants of a grant-only role; required
	// for one, refused for a standing one.
	Approval *Approval
}

// Commands are a role's exec command rules: a command runs only if each of
// its simple commands matches an Allow pattern, and none matches a Deny
// pattern of any role that applies (deny wins). See [ParseCommand] for how
// commands are read and compileCommandPattern for the pattern syntax.
type Commands struct {
	Allow []string
	Deny  []string
}

// Approval is how a grant-only role's grants are approved.
type Approval struct {
	// Approvers name identity matchers whose members may approve.
	Approvers []string
	// Approvals is how many distinct approvers are needed; zero means 1.
	Approvals int
	// MaxDuration caps a grant's duration; zero means
	// DefaultGrantDuration.
	MaxDuration time.Duration
	// ExcludeSponsor refuses an approval that would not be independent
	// of the requester: by the requester's sponsor, by another identity
	// acting for the same sponsor, or by an identity acting for the
	// requester (see [SponsorConflict]).
	ExcludeSponsor bool
}

// DefaultGrantDuration is a grant's longest duration when the role says
// nothing.
const DefaultGrantDuration = time.Hour

func (r *Role) grantOnly() bool { return r.Access == AccessGrant }

func (a *Approval) approvals() int { return max(a.Approvals, 1) }

// MaxGrantDuration is the longest grant of r: its approval's max_duration,
// or DefaultGrantDuration when it sets none.
func (r *Role) MaxGrantDuration() time.Duration {
	if r.Approval == nil {
		return DefaultGrantDuration
	}
	return r.Approval.maxDuration()
}

func (a *Approval) maxDuration() time.Duration {
	if a.MaxDuration <= 0 {
		return DefaultGrantDuration
	}
	return a.MaxDuration
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
		if !id.claimMatches(name, pats) {
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

// Certificate decides what certificate req's identity may get. Every
// matching standing role contributes its logins, and a grant-only role the
// login of each active grant naming it; the TTL cap, extensions and source
// addresses are the most restrictive among the roles that grant the
// certificate's principals, so that asking for a login never widens what
// another role allowed. A certificate issued under grants ends no later
// than the first of them (NotAfter). Default deny.
func (p *Policy) Certificate(req CertRequest) CertDecision {
	if req.Identity == nil {
		return CertDecision{Reason: "no identity"}
	}
	asked := func(l string) bool { return len(req.Logins) == 0 || slices.Contains(req.Logins, l) }
	var matched []*compiledRole
	var grants []string
	var notAfter time.Time
	logins := map[string]bool{}
	for _, i := range p.index.byProvider[req.Identity.Provider] {
		r := p.roles[i]
		if !r.matchesIdentity(req.Identity) {
			continue
		}
		var give []string
		if r.grantOnly() {
			for gi := range req.Grants {
				g := &req.Grants[gi]
				if r.grantCovers(g, req.Identity, req.Time) && asked(g.Login) {
					give = append(give, g.Login)
					grants = append(grants, g.ID)
					if notAfter.IsZero() || g.End.Before(notAfter) {
						notAfter = g.End
					}
				}
			}
		} else {
			for _, l := range r.Logins {
				if asked(l) {
					give = append(give, l)
				}
			}
		}
		if len(give) == 0 {
			continue
		}
		matched = append(matched, r)
		for _, l := range give {
			logins[l] = true
		}
	}
	if len(matched) == 0 {
		if len(req.Logins) > 0 {
			return CertDecision{Rule: "default", Reason: fmt.Sprintf("no role grants %s login %s", req.Identity, strings.Join(req.Logins, ","))}
		}
		return CertDecision{Rule: "default", Reason: fmt.Sprintf("no role matches %s", req.Identity)}
	}
	for _, l := range req.Logins {
		if !logins[l] {
			return CertDecision{Rule: "default", Reason: fmt.Sprintf("no role grants %s login %s", req.Identity, l)}
		}
	}
	d := CertDecision{Allow: true, TTL: req.TTL, Sponsor: req.Identity.Sponsor, NotAfter: notAfter}
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
		for _, e := range r.permits {
			permit[e]++
		}
		if len(r.SourceAddresses) > 0 {
			if d.SourceAddresses == nil {
				d.SourceAddresses = intersectSources(r.SourceAddresses, r.SourceAddresses)
			} else {
				// Both pin: only what both allow survives.
				d.SourceAddresses = intersectSources(d.SourceAddresses, r.SourceAddresses)
				if len(d.SourceAddresses) == 0 {
					return CertDecision{Rule: "role:" + strings.Join(names, ",role:"), Reason: "roles pin disjoint source addresses"}
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
	d.Grant = strings.Join(grants, ",")
	return d
}
