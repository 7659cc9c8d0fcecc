package policy

import (
	"fmt"
	"slices"
	"strings"
)

// GrantRequest says whether a just-in-time grant may be asked for, under
// which role, for how long and approved by whom: the first grant-only role
// that matches the identity, the target and the login, and whose command
// rules allow the command if one is named. A command that a standing role
// of the same identity, target and login denies is refused too, since the
// grant could never run it.
func (p *Policy) GrantRequest(a GrantAsk) GrantRule {
	id := a.Identity
	if id == nil {
		return GrantRule{Reason: "the request names no identity"}
	}
	if a.Duration <= 0 {
		return GrantRule{Reason: fmt.Sprintf("a grant needs a positive duration, not %v", a.Duration)}
	}
	var cmds [][]string
	if a.Command != "" {
		var err error
		if cmds, err = ParseCommand(a.Command); err != nil {
			return GrantRule{Reason: fmt.Sprintf("command %q cannot be granted: it cannot be checked (%s)", a.Command, unwrapLiteral(err))}
		}
	}
	req := SessionRequest{Identity: id, Target: a.Target, Login: a.Login, Time: a.Time}
	cands := p.candidates(id.Provider, a.Target, a.Login)
	if cmds != nil {
		for _, i := range cands {
			c := p.roles[i]
			if c.grantOnly() || c.commands == nil {
				continue
			}
			if _, why := c.appliesTo(&req, false); why != "" {
				continue
			}
			if pat, ok := c.commands.denied(cmds); ok {
				return GrantRule{Role: c.Name, Reason: fmt.Sprintf("command %q is denied by role %s (pattern %q): no grant could run it", a.Command, c.Name, pat)}
			}
		}
	}
	var whyNot string
	for _, i := range cands {
		c := p.roles[i]
		if !c.grantOnly() || !c.matchesIdentity(id) || !c.matchesTarget(a.Target) {
			continue
		}
		if !slices.Contains(c.Logins, a.Login) {
			continue
		}
		if cmds != nil && c.commands != nil {
			if pat, ok := c.commands.denied(cmds); ok {
				whyNot = fmt.Sprintf("role %s denies command %q (pattern %q)", c.Name, a.Command, pat)
				continue
			}
			if argv, ok := c.commands.allowed(cmds); !ok {
				whyNot = fmt.Sprintf("role %s allows no command %q", c.Name, strings.Join(argv, " "))
				continue
			}
		}
		sponsor := id.Sponsor
		if sponsor == "" {
			sponsor = c.Sponsor
		}
		if sponsor == "" {
			sponsor = p.SponsorOf(id)
		}
		return GrantRule{
			Allow:     true,
			Sponsor:   sponsor,
			Role:      c.Name,
			Reason:    fmt.Sprintf("role %s grants %s access to %s as %s with %d approval(s) from %s", c.Name, id, a.Target, a.Login, c.Approval.approvals(), strings.Join(c.Approval.Approvers, ", ")),
			Duration:  min(a.Duration, c.Approval.maxDuration()),
			Approvals: c.Approval.approvals(),
			Approvers: append([]string(nil), c.Approval.Approvers...),
		}
	}
	reason := fmt.Sprintf("no grant-only role lets %s ask for %s as %s", id, a.Target, a.Login)
	if whyNot != "" {
		reason += ": " + whyNot
	}
	return GrantRule{Reason: reason}
}

// MayApprove says whether approver may approve a grant of role asked for by
// requester (an Identity.String()), and why. Nobody approves their own
// request.
func (p *Policy) MayApprove(roleName string, requester string, approver *Identity) (bool, string) {
	c, ok := p.byName[roleName]
	switch {
	case !ok:
		return false, fmt.Sprintf("there is no role %q", roleName)
	case !c.grantOnly():
		return false, fmt.Sprintf("role %s is not grant-only: it has no approvers", roleName)
	case approver == nil:
		return false, "the approval names no approver"
	case approver.String() == requester:
		return false, fmt.Sprintf("%s asked for this grant and may not approve it: another approver must", requester)
	}
	for i, m := range c.approvers {
		if m.matches(approver) {
			return true, fmt.Sprintf("%s is an approver of role %s (identity %s)", approver, roleName, c.Approval.Approvers[i])
		}
	}
	return false, fmt.Sprintf("%s is not among the approvers of role %s (%s)", approver, roleName, strings.Join(c.Approval.Approvers, ", "))
}
