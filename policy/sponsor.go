package policy

import (
	"fmt"
	"strings"
)

// A sponsor is a free string: whatever a delegation token's "sub", a
// provider's sponsor_claim or a role's sponsor attribute says (a subject,
// an email address, a team name). These functions say how such a string
// is compared with an identity, for segregation of duties: an approver
// must not be the requester's sponsor, nor act for the same sponsor, nor
// act for the requester.

// SponsorMatches reports whether sponsor names the person or account id
// is: sponsor equals id's SUBJECT@PROVIDER or its subject (both compared
// exactly, as subjects are case-sensitive), or id's email address
// compared without regard to case (as email addresses are in practice).
// An empty sponsor matches no identity, and an identity without an email
// address matches by subject only.
func SponsorMatches(sponsor string, id *Identity) bool {
	if sponsor == "" || id == nil {
		return false
	}
	if sponsor == id.String() || (id.Subject != "" && sponsor == id.Subject) {
		return true
	}
	return id.Email != "" && strings.EqualFold(sponsor, id.Email)
}

// sameSponsor reports whether two sponsor strings name the same party.
// They are compared without regard to case: a sponsor is a free string,
// and where two could name one person, the check errs towards finding a
// conflict, which refuses an approval rather than letting one through.
func sameSponsor(a, b string) bool {
	return a != "" && b != "" && strings.EqualFold(a, b)
}

// SponsorConflict says why an approval of requester's grant by approver
// would not be independent, or "" when it would be:
//
//   - the approver is the requester's sponsor ([SponsorMatches] with the
//     requester's sponsor), for example a human approving the grant of an
//     agent acting for them;
//   - the approver acts for the same sponsor as the requester, for example
//     another agent of the same human (the two sponsors are compared
//     without regard to case);
//   - the approver acts for the requester ([SponsorMatches] with the
//     approver's sponsor), for example an agent approving its human's
//     request.
//
// Each identity's Sponsor must be the one recorded for it (see
// [Policy.SponsorOf]). The requester approving their own request is not
// a conflict of this kind: [Policy.MayApprove] refuses it always.
func SponsorConflict(requester, approver *Identity) string {
	if requester == nil || approver == nil {
		return ""
	}
	switch {
	case SponsorMatches(requester.Sponsor, approver):
		return fmt.Sprintf("%s is the sponsor of %s (sponsor %q), who asked for it", approver, requester, requester.Sponsor)
	case sameSponsor(requester.Sponsor, approver.Sponsor):
		return fmt.Sprintf("%s acts for the same sponsor as %s, who asked for it (sponsor %q)", approver, requester, requester.Sponsor)
	case SponsorMatches(approver.Sponsor, requester):
		return fmt.Sprintf("%s acts for %s, who asked for it (sponsor %q)", approver, requester, approver.Sponsor)
	}
	return ""
}

// SponsorOf is the sponsor recorded for id: the one its token names, else
// the sponsor attribute of the first role, in policy order, that matches
// id and names one; empty for an identity acting for itself. A nil
// policy gives the token's.
func (p *Policy) SponsorOf(id *Identity) string {
	if id == nil {
		return ""
	}
	if id.Sponsor != "" || p == nil {
		return id.Sponsor
	}
	for _, i := range p.index.byProvider[id.Provider] {
		if c := p.roles[i]; c.Sponsor != "" && c.matchesIdentity(id) {
			return c.Sponsor
		}
	}
	return ""
}

// ApprovalConflict says why approver may not approve a grant of role
// roleName asked for by requester under the role's approval
// exclude_sponsor, or "" when it may (or the role does not exclude
// sponsors). requester.Sponsor is the sponsor the grant recorded; the
// approver's is found with [Policy.SponsorOf]. Whether approver is an
// approver at all is [Policy.MayApprove]'s question.
func (p *Policy) ApprovalConflict(roleName string, requester, approver *Identity) string {
	if p == nil {
		return ""
	}
	c, ok := p.byName[roleName]
	if !ok || c.Approval == nil || !c.Approval.ExcludeSponsor || requester == nil || approver == nil {
		return ""
	}
	a := *approver
	a.Sponsor = p.SponsorOf(approver)
	why := SponsorConflict(requester, &a)
	if why == "" {
		return ""
	}
	return fmt.Sprintf("role %s excludes the requester's sponsor from approving (approval exclude_sponsor): %s", roleName, why)
}
