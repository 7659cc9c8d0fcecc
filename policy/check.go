package policy

import (
	"fmt"
	"slices"
	"strings"
)

// check adds the warnings about a valid policy: rules that look like
// mistakes because they can never take effect.
func check(p *Policy, opts Options, idPos, rolePos func(int) *blockPos, d *diagnostics) {
	used := map[string]bool{}
	for _, n := range slices.Concat(p.Operators, p.Auditors) {
		used[n] = true
	}
	for _, r := range p.Roles {
		for _, n := range r.Identities {
			used[n] = true
		}
		if r.Approval != nil {
			for _, n := range r.Approval.Approvers {
				used[n] = true
			}
		}
	}
	for i, im := range p.Identities {
		if !used[im.Name] {
			d.warnf(idPos(i).at("", -1), "identity %q is not used by any role or approval", im.Name)
		}
		for _, claim := range emptyClaims(&im.Match) {
			d.warnf(idPos(i).at("claims."+claim, -1), "identity %q matches nobody: claim %q lists no values", im.Name, claim)
		}
	}
	keys := make([]string, len(p.roles))
	for i, c := range p.roles {
		at := rolePos(i)
		keys[i] = identityKey(c.Role)
		for _, claim := range emptyClaims(&c.Match) {
			d.warnf(at.at("match.claims."+claim, -1), "role %q: its match matches nobody: claim %q lists no values", c.Name, claim)
		}
		if len(opts.Targets) > 0 {
			for j := range c.targets {
				if !slices.ContainsFunc(opts.Targets, c.targets[j].match) {
					d.warnf(at.at("targets", j), "role %q: target pattern %q matches no configured target", c.Name, c.Targets[j])
				}
			}
		}
		if c.Shell && c.commands != nil {
			d.warnf(at.at("shell", -1), "role %q: interactive shells are not checked against command rules; shell = true lets its identities run anything", c.Name)
		}
		if c.commands != nil {
			for j := range c.commands.allow {
				for k := range c.commands.deny {
					if patternCovers(&c.commands.deny[k], &c.commands.allow[j]) {
						d.warnf(at.at("commands.allow", j), "role %q: allow pattern %q never allows anything: deny pattern %q covers it", c.Name, c.commands.allow[j].src, c.commands.deny[k].src)
						break
					}
				}
			}
		}
		if c.Approval != nil {
			if n, ok := approverBound(c); ok && n < c.Approval.approvals() {
				d.warnf(at.at("approval.approvals", -1), "role %q: its grants need %d approvals, but at most %d identities may approve them (and never the requester): they can never be approved", c.Name, c.Approval.approvals(), n)
			}
		}
		for j := range i {
			e := p.roles[j]
			if keys[j] != keys[i] {
				continue
			}
			if shadows(e, c) {
				d.warnf(at.at("", -1), "role %q is shadowed by role %q before it: that role applies to the same identities, targets and logins, and allows everything this one does", c.Name, e.Name)
				break
			}
			if disjointPins(e, c) {
				d.warnf(at.at("source_addresses", -1), "role %q and role %q match the same identities with shared logins but pin disjoint source addresses: a certificate for their logins is always refused", c.Name, e.Name)
			}
		}
	}
}

// emptyClaims returns the claims a matcher requires but lists no values
// for: no identity can satisfy them.
func emptyClaims(m *Match) []string {
	var out []string
	for _, k := range sortedKeys(m.Claims) {
		if len(m.Claims[k]) == 0 {
			out = append(out, k)
		}
	}
	return out
}

// identityKey is equal for two roles that name the same identity
// matchers.
func identityKey(r *Role) string {
	ids := slices.Clone(r.Identities)
	slices.Sort(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "%q|", slices.Compact(ids))
	if !r.Match.empty() {
		m := &r.Match
		fmt.Fprintf(&b, "%q|%q|%q|", sortedSet(m.Providers), sortedSet(m.Subjects), sortedSet(m.Sponsors))
		for _, k := range sortedKeys(m.Claims) {
			fmt.Fprintf(&b, "%q=%q|", k, sortedSet(m.Claims[k]))
		}
	}
	return b.String()
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// shadows reports whether the earlier role e always decides before the
// later role c could: both standing, for the same identities (the caller
// checks), e reaching every target and login of c from every address c
// admits, with no command rules, and allowing at least what c does.
func shadows(e, c *compiledRole) bool {
	if e.grantOnly() || c.grantOnly() || e.commands != nil || len(c.targets) == 0 {
		return false
	}
	for i := range c.targets {
		if !slices.ContainsFunc(e.targets, func(g glob) bool { return globCovers(&g, &c.targets[i]) }) {
			return false
		}
	}
	for _, l := range c.Logins {
		if !slices.Contains(e.Logins, l) {
			return false
		}
	}
	if (c.PTY && !e.PTY) || (c.Shell && !e.Shell) || (c.FileTransfer && !e.FileTransfer) {
		return false
	}
	for _, f := range c.forward {
		if !slices.ContainsFunc(e.forward, func(g forwardPattern) bool {
			return globCovers(&g.host, &f.host) && globCovers(&g.port, &f.port)
		}) {
			return false
		}
	}
	if len(e.sources) > 0 {
		if len(c.sources) == 0 {
			return false
		}
		for _, s := range c.sources {
			in := false
			for _, es := range e.sources {
				if es.Bits() <= s.Bits() && es.Contains(s.Addr()) {
					in = true
				}
			}
			if !in {
				return false
			}
		}
	}
	return true
}

// disjointPins reports whether two standing roles for the same identities
// share a login but pin source addresses no client can satisfy both of.
func disjointPins(e, c *compiledRole) bool {
	if e.grantOnly() || c.grantOnly() || len(e.SourceAddresses) == 0 || len(c.SourceAddresses) == 0 {
		return false
	}
	if !slices.ContainsFunc(c.Logins, func(l string) bool { return slices.Contains(e.Logins, l) }) {
		return false
	}
	return len(intersectSources(e.SourceAddresses, c.SourceAddresses)) == 0
}

// globCovers reports (conservatively) whether every string b matches, a
// matches too.
func globCovers(a, b *glob) bool {
	switch {
	case a.kind == globStar || a.src == b.src:
		return true
	case b.kind == globLiteral:
		return a.match(b.lit)
	case a.kind == globPrefix && b.kind == globPrefix:
		return strings.HasPrefix(b.lit, a.lit)
	}
	return false
}

// patternCovers reports (conservatively) whether every argv that p
// matches, d matches too: word by word, with d's "**" taking any run of
// p's words.
func patternCovers(d, p *commandPattern) bool {
	n, m := len(d.words), len(p.words)
	// memo[i][j]: 0 unknown, 1 covers, 2 does not.
	memo := make([][]uint8, n+1)
	for i := range memo {
		memo[i] = make([]uint8, m+1)
	}
	var covers func(i, j int) bool
	covers = func(i, j int) bool {
		if memo[i][j] != 0 {
			return memo[i][j] == 1
		}
		var ok bool
		switch {
		case i == n:
			ok = j == m
		case d.words[i].any:
			ok = covers(i+1, j) || (j < m && covers(i, j+1))
		case j == m || p.words[j].any:
			ok = false
		default:
			ok = wordCovers(&d.words[i], &p.words[j]) && covers(i+1, j+1)
		}
		memo[i][j] = 2
		if ok {
			memo[i][j] = 1
		}
		return ok
	}
	return covers(0, 0)
}

// wordCovers reports (conservatively) whether every argument p matches, d
// matches too.
func wordCovers(d, p *wordPattern) bool {
	switch {
	case d.re != nil && p.re != nil:
		return d.re.String() == p.re.String()
	case d.re != nil:
		return p.glob.kind == globLiteral && d.re.MatchString(p.glob.lit)
	case p.re != nil:
		return d.glob.kind == globStar
	}
	return globCovers(&d.glob, &p.glob)
}

// approverBound returns how many distinct identities could approve the
// role's grants, when that is bounded: every approver matcher names its
// subjects literally.
func approverBound(c *compiledRole) (int, bool) {
	who := map[string]bool{}
	for _, m := range c.approvers {
		if len(m.Subjects) == 0 {
			return 0, false
		}
		for _, s := range m.Subjects {
			if strings.ContainsAny(s, `*?[\`) {
				return 0, false
			}
			for _, pn := range m.Providers {
				who[s+"@"+pn] = true
			}
		}
	}
	return len(who), true
}
