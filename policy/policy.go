package policy

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/bastionhq/bastion/policy/mask"
)

// IdentityMatcher is a named identity matcher (an "identity" block), which
// roles name in Identities and approvals in Approvers.
type IdentityMatcher struct {
	Name  string
	Match Match
}

// Options are what a policy is checked against: the rest of the
// configuration.
type Options struct {
	// Providers are the configured identity provider names; a matcher
	// naming another is an error. "dev" is always allowed. Empty: not
	// checked.
	Providers []string
	// Targets are the configured target names; a role's target pattern
	// matching none of them is a warning. Decisions on these targets are
	// indexed at load. Empty: not checked.
	Targets []string
	// MaxTTL is the certificates' max_ttl: a role's max_ttl above it is an
	// error. Zero: not checked.
	MaxTTL time.Duration
}

// devProvider is the embedded development issuer's provider name, always
// a known provider.
const devProvider = "dev"

// Policy is a set of identity matchers and roles, compiled for decisions.
// Its decisions are pure: the same request always gets the same answer.
// A Policy is immutable once built and safe for concurrent use.
type Policy struct {
	Identities []IdentityMatcher
	Roles      []Role
	// MaskingProfiles are the policy's own masking profiles, by name
	// (besides the built-in ones).
	MaskingProfiles map[string]mask.Profile
	// TextMasking names the masking profile for text that belongs to no
	// session, or to a session whose role names none (a refused command,
	// a grant's reason, a revocation's reason): a built-in profile, a
	// masking_profile, or NoTextMasking. Empty means DefaultTextMasking.
	TextMasking string
	// Operators and Auditors name the identity blocks (of Identities)
	// whose identities are the bastion's operators (who end sessions and
	// revoke through the admin socket) and its auditors (who read the
	// journal): the top-level "operators" and "auditors" attributes. Nil
	// when the policy does not set them.
	Operators, Auditors []string

	hash string
	// source is the policy's text as it was loaded (see Text); empty
	// for a policy built from values.
	source     string
	opts       Options
	identities map[string]*Match
	// operators and auditors are the matchers Operators and Auditors name.
	operators, auditors []IdentityMatcher
	roles               []*compiledRole // in the order of Roles
	byName              map[string]*compiledRole
	index               roleIndex
}

// A compiledRole is a Role with its patterns compiled and its names
// resolved.
type compiledRole struct {
	*Role
	// pos is the role's place in policy order.
	pos int
	// rule is how decisions name the role, "role:NAME".
	rule      string
	matchers  []*Match
	providers []string
	targets   []glob
	commands  *commandRules // nil: every command is allowed
	forward   []forwardPattern
	sources   []netip.Prefix
	permits   []string // the certificate's extensions
	approvers []*Match
}

// A forwardPattern is a "host:port" destination pattern.
type forwardPattern struct {
	src        string
	host, port glob
}

// roleIndex narrows a request to the roles that may apply, so that a
// decision looks at a handful of roles whatever the size of the policy.
// Every matcher names its providers, so a role can only apply to
// identities of those; a role's logins are literal, and its targets are
// matched against the configured target names once, at load.
type roleIndex struct {
	// byProvider: the roles that may match an identity of a provider.
	byProvider map[string][]int32
	// byLogin: roles with targets, by provider and login.
	byLogin map[loginKey][]int32
	// byTarget: the same, narrowed to a configured target.
	byTarget map[targetKey][]int32
	// targets are the configured target names byTarget covers.
	targets map[string]bool
}

type loginKey struct{ provider, login string }

type targetKey struct{ provider, login, target string }

// New validates roles and returns a policy over them, without named
// identities or options.
func New(roles []Role) (*Policy, error) {
	p, _, err := Build(nil, roles, Options{})
	return p, err
}

// Build checks and compiles identities and roles into a policy. It returns
// the warnings, and an *Error when there are errors.
func Build(identities []IdentityMatcher, roles []Role, opts Options) (*Policy, []Diagnostic, error) {
	return build(identities, roles, opts, nil, "")
}

// Hash identifies the policy's source: "sha256:<hex>" over its files (see
// [Load]), or what the caller of [Decode] gave; empty for a policy built
// from values.
func (p *Policy) Hash() string { return p.hash }

// Text is the policy as it was put together, for the journal to keep
// beside its Hash, so that what was in force can be read later:
//
//   - from [Load], each file's text in name order, each preceded by a
//     line "# file: NAME" (its base name);
//   - from [DecodeConfig], a line "# file: NAME" and the policy's blocks
//     and attributes as written in that configuration file, each in full,
//     in file order (the rest of the file is left out: it may hold
//     secrets, such as a webhook URL);
//   - from values ([New], [Build], [Decode]), the policy written in the
//     policy language;
//   - roles added by [Policy.WithRoles] follow, written in the policy
//     language after a comment line that says they were read from no
//     file.
//
// The text is not masked: a policy should hold no secret, but a comment
// might, and the journal masks the text before it keeps it.
func (p *Policy) Text() string {
	if p.source != "" {
		return p.source
	}
	text := renderHCL(p.Identities, p.Roles, p.MaskingProfiles, p.TextMasking)
	if staff := renderStaff(p.Operators, p.Auditors); staff != "" {
		text += "\n" + staff
	}
	return text
}

// WithRoles returns a policy with roles appended to p's (after them in
// policy order), checked against the options p was built with; p is
// unchanged, and the new policy keeps its Hash. Its [Policy.Text] is p's
// followed by the roles in the policy language.
func (p *Policy) WithRoles(roles ...Role) (*Policy, error) {
	text := p.Text()
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if text != "" {
		text += "\n"
	}
	text += "# Not read from any file: roles added when this policy was put in force.\n" + renderHCL(nil, roles, nil, "")
	np, _, err := build(p.Identities, slices.Concat(p.Roles, roles), p.opts,
		&sources{profiles: p.MaskingProfiles, textMasking: p.TextMasking, text: text, operators: p.Operators, auditors: p.Auditors}, p.hash)
	return np, err
}

// MaskingProfile returns the masking profile called name: the policy's
// own, or a built-in one.
func (p *Policy) MaskingProfile(name string) (mask.Profile, bool) {
	if mp, ok := p.MaskingProfiles[name]; ok {
		return mp, true
	}
	return mask.BuiltinProfile(name)
}

// TextMaskingProfile returns the profile that masks text belonging to no
// session or to a role without one (see [Policy.TextMasking]); ok is
// false when the policy turns that masking off. A nil policy gives the
// default.
func (p *Policy) TextMaskingProfile() (prof mask.Profile, ok bool) {
	name := DefaultTextMasking
	if p != nil && p.TextMasking != "" {
		name = p.TextMasking
	}
	if name == NoTextMasking {
		return mask.Profile{}, false
	}
	if p != nil {
		return p.MaskingProfile(name)
	}
	return mask.BuiltinProfile(name)
}

// DevRole is the role "serve --dev" adds: any identity of the development
// issuer may reach any target as logins, with a PTY, a shell and file
// transfer.
func DevRole(logins []string) Role {
	return Role{
		Name:         "dev",
		Match:        Match{Providers: []string{devProvider}},
		Targets:      []string{"*"},
		Logins:       slices.Clone(logins),
		Access:       AccessStanding,
		PTY:          true,
		Shell:        true,
		FileTransfer: true,
		Permit:       []string{PermitPTY},
	}
}

// Validate checks a role on its own (names of identity matchers are not
// resolved) and returns the first mistake.
func (r *Role) Validate() error {
	_, probs := compileRole(r)
	if len(probs) > 0 {
		return fmt.Errorf("role %q: %s", r.Name, probs[0].msg)
	}
	return nil
}

// A problem is a mistake found in a role or identity, located by its
// attribute name (dotted inside nested blocks) and list item (-1: the
// whole attribute), so that a loader can point at it.
type problem struct {
	field string
	item  int
	msg   string
}

type problems []problem

func (pr *problems) add(field string, item int, format string, args ...any) {
	*pr = append(*pr, problem{field, item, fmt.Sprintf(format, args...)})
}

// compileRole checks r on its own and compiles its patterns.
func compileRole(r *Role) (*compiledRole, problems) {
	var probs problems
	c := &compiledRole{Role: r, rule: "role:" + r.Name}
	if r.Name == "" {
		probs.add("", -1, "a role needs a name")
	}
	if r.Match.empty() && len(r.Identities) == 0 {
		probs.add("", -1, "matches nobody: give it identities or a match on providers, subjects or claims")
	}
	if !r.Match.empty() {
		checkMatch(&r.Match, "match.", &probs)
	}
	if len(r.Logins) == 0 {
		probs.add("logins", -1, "grants no logins")
	}
	for i, l := range r.Logins {
		if l == "" || strings.ContainsAny(l, " ,\t\n@*?[") {
			probs.add("logins", i, "invalid login %q", l)
		}
	}
	if r.MaxTTL < 0 {
		probs.add("max_ttl", -1, "negative max_ttl")
	}
	if r.MaxSession < 0 {
		probs.add("max_session", -1, "negative max_session")
	}
	if r.IdleTimeout < 0 {
		probs.add("idle_timeout", -1, "negative idle_timeout")
	}

	for i, e := range r.Permit {
		if !slices.Contains(KnownPermits, e) {
			probs.add("permit", i, "unknown extension %q (known: %s)", e, strings.Join(KnownPermits, ", "))
		}
	}
	for i, a := range r.SourceAddresses {
		pfx, err := parseSource(a)
		if err != nil {
			probs.add("source_addresses", i, "%v", err)
			continue
		}
		c.sources = append(c.sources, pfx)
	}
	for i, t := range r.Targets {
		g, err := compileGlob(t)
		if err != nil || t == "" {
			probs.add("targets", i, "bad target pattern %q: %v", t, orEmpty(err))
			continue
		}
		c.targets = append(c.targets, g)
	}
	for i, f := range r.PortForwarding {
		fp, err := compileForward(f)
		if err != nil {
			probs.add("port_forwarding", i, "%v", err)
			continue
		}
		c.forward = append(c.forward, fp)
	}
	switch r.Access {
	case "", AccessStanding:
		if r.Approval != nil {
			probs.add("approval", -1, "an approval block belongs only to a role with access = %q", AccessGrant)
		}
	case AccessGrant:
		if r.Approval == nil {
			probs.add("access", -1, "a grant-only role needs an approval block saying who approves")
		}
	default:
		probs.add("access", -1, "access must be %q or %q, not %q", AccessStanding, AccessGrant, r.Access)
	}
	if a := r.Approval; a != nil {
		if len(a.Approvers) == 0 {
			probs.add("approval.approvers", -1, "approval names no approvers")
		}
		if a.Approvals < 0 {
			probs.add("approval.approvals", -1, "approvals must be at least 1")
		}
		if a.MaxDuration < 0 {
			probs.add("approval.max_duration", -1, "negative max_duration")
		}
	}
	if cmds := r.Commands; cmds != nil {
		c.commands = &commandRules{}
		for i, s := range cmds.Allow {
			cp, err := compileCommandPattern(s)
			if err != nil {
				probs.add("commands.allow", i, "%v", err)
				continue
			}
			c.commands.allow = append(c.commands.allow, cp)
		}
		for i, s := range cmds.Deny {
			cp, err := compileCommandPattern(s)
			if err != nil {
				probs.add("commands.deny", i, "%v", err)
				continue
			}
			c.commands.deny = append(c.commands.deny, cp)
		}
	}
	c.permits = r.Permit
	if r.Permit == nil {
		if r.PTY {
			c.permits = append(c.permits, PermitPTY)
		}
		if len(r.PortForwarding) > 0 {
			c.permits = append(c.permits, PermitPortForwarding)
		}
	}
	return c, probs
}

func orEmpty(err error) string {
	if err == nil {
		return "empty"
	}
	return err.Error()
}

// checkMatch checks a matcher's patterns; prefix names its block.
func checkMatch(m *Match, prefix string, probs *problems) {
	if len(m.Providers) == 0 {
		// Subjects and claims mean something only within one issuer: the
		// same "sub" from another provider is someone else.
		probs.add(prefix+"providers", -1, "a matcher must name the providers whose identities it matches")
	}
	for i, p := range m.Subjects {
		if _, err := path.Match(p, ""); err != nil {
			probs.add(prefix+"subjects", i, "bad pattern %q: %v", p, err)
		}
	}
	for i, p := range m.Sponsors {
		if _, err := path.Match(p, ""); err != nil {
			probs.add(prefix+"sponsors", i, "bad pattern %q: %v", p, err)
		}
	}
	for _, name := range sortedKeys(m.Claims) {
		for i, p := range m.Claims[name] {
			if _, err := path.Match(p, ""); err != nil {
				probs.add(prefix+"claims."+name, i, "bad pattern %q: %v", p, err)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compileForward parses a "host:port" pattern.
func compileForward(s string) (forwardPattern, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" {
		return forwardPattern{}, fmt.Errorf("bad port_forwarding pattern %q: want host:port, for example localhost:5432", s)
	}
	hg, err := compileGlob(strings.ToLower(host))
	if err != nil {
		return forwardPattern{}, fmt.Errorf("bad port_forwarding pattern %q: %v", s, err)
	}
	pg, err := compileGlob(port)
	if err != nil {
		return forwardPattern{}, fmt.Errorf("bad port_forwarding pattern %q: %v", s, err)
	}
	return forwardPattern{src: s, host: hg, port: pg}, nil
}

// matchForward reports whether dest ("host:port") matches one of pats.
func matchForward(pats []forwardPattern, dest string) (string, bool) {
	host, port, err := net.SplitHostPort(dest)
	if err != nil {
		return "", false
	}
	host = strings.ToLower(host)
	for i := range pats {
		if pats[i].host.match(host) && pats[i].port.match(port) {
			return pats[i].src, true
		}
	}
	return "", false
}

// sources locates what build reports; nil when the policy is built from
// values.
type sources struct {
	identities []*blockPos
	roles      []*blockPos
	// profiles are the masking_profile blocks, already checked.
	profiles map[string]mask.Profile
	// textMasking is the text_masking attribute, already checked.
	textMasking string
	// text is the policy's source text (see Policy.Text); empty: none.
	text string
	// operators and auditors are the attributes of those names (nil when
	// not set), and where they are written (nil when built from values).
	operators, auditors       []string
	operatorsPos, auditorsPos *blockPos
}

// The text_masking values with a meaning of their own.
const (
	// DefaultTextMasking is the profile for text when the policy names
	// none: every built-in detector.
	DefaultTextMasking = "all"
	// NoTextMasking turns masking of text off.
	NoTextMasking = "none"
)

// build checks and compiles a policy, reporting through a diagnostics list
// positioned by srcs (if any).
func build(identities []IdentityMatcher, roles []Role, opts Options, srcs *sources, hash string) (*Policy, []Diagnostic, error) {
	var d diagnostics
	idPos := func(i int) *blockPos {
		if srcs == nil || i >= len(srcs.identities) {
			return nil
		}
		return srcs.identities[i]
	}
	rolePos := func(i int) *blockPos {
		if srcs == nil || i >= len(srcs.roles) {
			return nil
		}
		return srcs.roles[i]
	}
	p := &Policy{
		Identities:      slices.Clone(identities),
		Roles:           slices.Clone(roles),
		MaskingProfiles: map[string]mask.Profile{},
		hash:            hash,
		opts:            opts,
		identities:      map[string]*Match{},
		byName:          map[string]*compiledRole{},
	}
	if srcs != nil {
		maps.Copy(p.MaskingProfiles, srcs.profiles)
		p.TextMasking = srcs.textMasking
		p.source = srcs.text
		p.Operators, p.Auditors = slices.Clone(srcs.operators), slices.Clone(srcs.auditors)
	}
	providerKnown := func(name string) bool {
		return len(opts.Providers) == 0 || name == devProvider || slices.Contains(opts.Providers, name)
	}
	checkProviders := func(m *Match, at *blockPos, field, what string) {
		for i, pn := range m.Providers {
			if !providerKnown(pn) {
				d.errorf(at.at(field, i), "%s matches provider %q, which is not configured", what, pn)
			}
		}
	}
	for i := range p.Identities {
		im := &p.Identities[i]
		at := idPos(i)
		if im.Name == "" {
			d.errorf(at.at("", -1), "an identity needs a name")
		}
		if _, dup := p.identities[im.Name]; dup {
			d.errorf(at.at("", -1), "identity %q is defined twice", im.Name)
			continue
		}
		var probs problems
		checkMatch(&im.Match, "", &probs)
		for _, pr := range probs {
			d.errorf(at.at(pr.field, pr.item), "identity %q: %s", im.Name, pr.msg)
		}
		checkProviders(&im.Match, at, "providers", fmt.Sprintf("identity %q", im.Name))
		p.identities[im.Name] = &im.Match
	}
	for i := range p.Roles {
		r := &p.Roles[i]
		at := rolePos(i)
		c, probs := compileRole(r)
		c.pos = i
		if r.Masking != "" {
			if _, ok := p.MaskingProfile(r.Masking); !ok {
				probs = append(probs, problem{field: "masking", item: -1, msg: fmt.Sprintf("masking profile %q is neither built in (%s) nor a masking_profile block", r.Masking, strings.Join(mask.BuiltinProfiles(), ", "))})
			}
		}
		for _, pr := range probs {
			d.errorf(at.at(pr.field, pr.item), "role %q: %s", r.Name, pr.msg)
		}
		if _, dup := p.byName[r.Name]; dup {
			d.errorf(at.at("", -1), "role %q is defined twice", r.Name)
		}
		p.byName[r.Name] = c
		p.roles = append(p.roles, c)
		if !r.Match.empty() {
			c.matchers = append(c.matchers, &r.Match)
			checkProviders(&r.Match, at, "match.providers", fmt.Sprintf("role %q", r.Name))
		}
		for j, name := range r.Identities {
			m, ok := p.identities[name]
			if !ok {
				d.errorf(at.at("identities", j), "role %q names identity %q, which is not defined", r.Name, name)
				continue
			}
			c.matchers = append(c.matchers, m)
		}
		for _, m := range c.matchers {
			for _, pn := range m.Providers {
				if !slices.Contains(c.providers, pn) {
					c.providers = append(c.providers, pn)
				}
			}
		}
		if a := r.Approval; a != nil {
			for j, name := range a.Approvers {
				m, ok := p.identities[name]
				if !ok {
					d.errorf(at.at("approval.approvers", j), "role %q: approver %q is not a defined identity", r.Name, name)
					continue
				}
				c.approvers = append(c.approvers, m)
			}
		}
		if opts.MaxTTL > 0 && r.MaxTTL > opts.MaxTTL {
			d.errorf(at.at("max_ttl", -1), "role %q: max_ttl %v is above the certificates' max_ttl %v", r.Name, r.MaxTTL, opts.MaxTTL)
		}
	}
	if srcs != nil {
		p.operators = resolveStaff(p, "operators", p.Operators, srcs.operatorsPos, &d)
		p.auditors = resolveStaff(p, "auditors", p.Auditors, srcs.auditorsPos, &d)
	}
	if d.hasErrors() {
		return nil, d.warnings(), &Error{Diagnostics: d.errors()}
	}
	p.buildIndex(opts.Targets)
	check(p, opts, idPos, rolePos, &d)
	return p, d.warnings(), nil
}

// buildIndex fills p.index; targets are the configured target names.
func (p *Policy) buildIndex(targets []string) {
	ix := roleIndex{
		byProvider: map[string][]int32{},
		byLogin:    map[loginKey][]int32{},
		byTarget:   map[targetKey][]int32{},
		targets:    map[string]bool{},
	}
	for _, t := range targets {
		ix.targets[t] = true
	}
	for _, c := range p.roles {
		i := int32(c.pos)
		for _, pn := range c.providers {
			ix.byProvider[pn] = append(ix.byProvider[pn], i)
			if len(c.targets) == 0 {
				continue
			}
			for _, l := range uniq(c.Logins) {
				k := loginKey{pn, l}
				ix.byLogin[k] = append(ix.byLogin[k], i)
				for t := range ix.targets {
					if c.matchesTarget(t) {
						tk := targetKey{pn, l, t}
						ix.byTarget[tk] = append(ix.byTarget[tk], i)
					}
				}
			}
		}
	}
	p.index = ix
}

func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// candidates returns, in policy order, the roles that might apply to an
// identity of provider reaching target as login: a superset of those that
// do.
func (p *Policy) candidates(provider, target, login string) []int32 {
	if p.index.targets[target] {
		return p.index.byTarget[targetKey{provider, login, target}]
	}
	return p.index.byLogin[loginKey{provider, login}]
}

// matchesIdentity reports whether any of the role's matchers matches id.
func (c *compiledRole) matchesIdentity(id *Identity) bool {
	for _, m := range c.matchers {
		if m.matches(id) {
			return true
		}
	}
	return false
}

func (c *compiledRole) matchesTarget(t string) bool {
	for i := range c.targets {
		if c.targets[i].match(t) {
			return true
		}
	}
	return false
}

// fromSource reports whether the role admits a client at addr.
func (c *compiledRole) fromSource(addr netip.Addr) bool {
	if len(c.sources) == 0 {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, s := range c.sources {
		if s.Contains(addr) {
			return true
		}
	}
	return false
}

// grantCovers reports whether g is an active grant of this role for id at
// t. The role must still grant g's login (and target, when the role has
// targets): a grant never outlives the policy that allowed it.
func (c *compiledRole) grantCovers(g *Grant, id *Identity, t time.Time) bool {
	return g.Role == c.Name && g.Identity == id.String() &&
		!t.Before(g.Start) && t.Before(g.End) &&
		slices.Contains(c.Logins, g.Login) &&
		(len(c.targets) == 0 || c.matchesTarget(g.Target))
}
