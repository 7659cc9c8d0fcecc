package evidence

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// findings computes the summary's counts, exceptions and open items.
func (b *builder) findings(vr *recorder.Report) {
	r := b.r
	sum := &r.Summary
	sum.Identities, sum.Grants, sum.Sessions, sum.Refusals = len(r.Identities), len(r.Grants), len(r.Sessions), len(r.Refusals)
	sum.JournalAccesses, sum.StandingSessions = len(r.Custody.Accesses), len(r.StandingAccess)
	ex := func(kind string, leaf int64, format string, a ...any) {
		sum.Exceptions = append(sum.Exceptions, Finding{Kind: kind, What: fmt.Sprintf(format, a...), Leaf: leaf})
	}
	open := func(kind string, leaf int64, format string, a ...any) {
		sum.OpenItems = append(sum.OpenItems, Finding{Kind: kind, What: fmt.Sprintf(format, a...), Leaf: leaf})
	}
	if !vr.Intact() {
		what := fmt.Sprintf("%d leaves are not covered by a valid signed checkpoint", vr.Uncovered)
		leaf := int64(-1)
		if len(vr.Problems) > 0 {
			what = fmt.Sprintf("%d problem(s); the first bad record: %s", len(vr.Problems), vr.Problems[0])
			leaf = vr.Problems[0].Leaf
		}
		ex(FindingNotIntact, leaf, "the journal does NOT verify: %s", what)
	}
	type refusalKey struct{ event, reason string }
	counts := map[refusalKey]int{}
	first := map[refusalKey]int64{}
	var keys []refusalKey
	for _, f := range r.Refusals {
		k := refusalKey{f.Event, f.Reason}
		if counts[k] == 0 {
			keys = append(keys, k)
			first[k] = f.Leaf
		}
		counts[k]++
	}
	for _, k := range keys {
		ex(FindingRefusal, first[k], "%d × %s (reason %q), the first at leaf %d: see Session activity, refused actions", counts[k], k.event, k.reason, first[k])
	}
	if r.Scope.To.After(b.now) {
		ex(FindingFuturePeriod, -1, "the period ends at %s, after the report was made (%s): records may still be added to it, so this report cannot be complete; make it again after the period ends", r.Scope.To.Format(time.RFC3339), b.now.Format(time.RFC3339))
	}
	for _, s := range r.Sessions {
		// exc names session s as an exception: it is reviewed in
		// detail whatever the sample.
		exc := func(kind string, leaf int64, format string, a ...any) {
			b.exceptional[s.ID] = true
			ex(kind, leaf, format, a...)
		}
		switch {
		case s.Problem != "":
			exc(FindingBrokenSession, s.StartLeaf, "session %s does not verify: %s", s.ID, s.Problem)
		}
		switch {
		case s.EndLeaf < 0:
			exc(FindingUnterminated, s.StartLeaf, "session %s (%s to %s) has no end record: it is still being recorded, or its recorder stopped", s.ID, s.Identity, s.Target)
		case s.EndReason == events.EndAbandoned:
			exc(FindingAbandoned, s.EndLeaf, "session %s (%s to %s) was abandoned: its recorder stopped, and the next writer ended it at its last committed frame", s.ID, s.Identity, s.Target)
		}
		if s.Grant != "" && s.GrantEnd != nil {
			limit := s.GrantEnd.Add(PastGrantGrace)
			switch {
			case s.Ended != nil && s.Ended.After(limit):
				exc(FindingPastGrant, s.EndLeaf, "session %s under grant %s ended at %s, after the grant's end at %s", s.ID, s.Grant, s.Ended.Format(time.RFC3339), s.GrantEnd.Format(time.RFC3339))
			case s.Ended == nil && b.now.After(limit):
				exc(FindingPastGrant, s.StartLeaf, "session %s under grant %s has no end record, and the grant ended at %s", s.ID, s.Grant, s.GrantEnd.Format(time.RFC3339))
			}
		}
	}
	b.devFindings()
	b.sodFindings()
	for _, a := range r.OperatorActions {
		if a.Verified == "account" && a.UID == "0" {
			ex(FindingUnverifiedOp, a.Leaf, "%s (%s) was done as root, which operator_accounts maps to %s: everyone who may use sudo acts as root, so the mapping names no one person", a.Action, a.Detail, a.Operator)
			continue
		}
		if a.Verified == "none" {
			who := a.By
			if who == "" {
				who = "an OS account (uid " + a.UID + ")"
			}
			ex(FindingUnverifiedOp, a.Leaf, "%s (%s) was done by %s: no person is named (no token, and the account maps to no identity); anyone with that account, or with root through sudo, could have done it", a.Action, a.Detail, who)
		}
	}
	for _, id := range r.Identities {
		for _, c := range id.Certificates {
			if g := b.grants[c.Grant]; g != nil {
				if end, ok := grantEnd(g); ok && c.ValidBefore.After(end.Add(time.Second)) && (c.Revoked == nil || c.Revoked.At.After(end.Add(PastGrantGrace))) {
					ex(FindingCertPastGrant, int64(c.Serial), "certificate %d of %s was valid until %s, after its grant %s ended at %s", c.Serial, id.Identity, c.ValidBefore.Format(time.RFC3339), g.ID, end.Format(time.RFC3339))
				}
			}
			if c.ValidBefore.After(b.now) && c.Revoked == nil {
				open(FindingLiveCertificate, int64(c.Serial), "certificate %d of %s is valid until %s", c.Serial, id.Identity, c.ValidBefore.Format(time.RFC3339))
			}
		}
	}
	if n := len(r.StandingAccess); n > 0 {
		rules := map[string]bool{}
		for _, s := range r.StandingAccess {
			rules[s.Rule] = true
		}
		ex(FindingStanding, r.StandingAccess[0].Leaf, "%d session(s) ran under standing access, with no grant (rules %s): review whether each needs standing access", n, strings.Join(quoteAll(slices.Sorted(maps.Keys(rules))), ", "))
	}
	r.Summary.Exceptions = append(r.Summary.Exceptions, r.Custody.Gaps...)
	for _, p := range r.Custody.Policies {
		if p.Event == events.PolicyRefused && b.inPeriod(p.At.UnixNano()) {
			ex(FindingPolicyRefused, p.Leaf, "a policy was refused at %s (%s): %s; the policy %s stayed in force", p.At.Format(time.RFC3339), p.Trigger, p.Error, p.Hash)
		}
	}
	for _, g := range r.Grants {
		switch g.State {
		case "pending":
			open(FindingPendingGrant, g.Leaf, "grant %s for %s to %s as %s is pending approval", g.ID, g.Requester, g.Target, g.Login)
		case "active":
			if g.End != nil && g.End.After(b.now) {
				open(FindingActiveGrant, g.Leaf, "grant %s for %s to %s as %s is active until %s", g.ID, g.Requester, g.Target, g.Login, g.End.Format(time.RFC3339))
			}
		}
	}
	for _, s := range r.Sessions {
		if s.EndLeaf < 0 {
			open(FindingLiveSession, s.StartLeaf, "session %s (%s to %s) had no end record at the report's time", s.ID, s.Identity, s.Target)
		}
	}
	// A journal that does not verify comes first, whatever its leaf: it
	// qualifies everything else.
	slices.SortStableFunc(sum.Exceptions, func(x, y Finding) int {
		return cmp.Or(cmp.Compare(rank(x), rank(y)), cmp.Compare(x.Leaf, y.Leaf))
	})
	slices.SortStableFunc(sum.OpenItems, func(x, y Finding) int { return cmp.Compare(x.Leaf, y.Leaf) })
}

func rank(f Finding) int {
	if f.Kind == FindingNotIntact {
		return 0
	}
	return 1
}
