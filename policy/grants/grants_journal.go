package grants

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// The grant events' attributes. Every event has "at" (RFC 3339 with
// nanoseconds, UTC) and, but for grant.requested, "grant" (the ID):
//
//	grant.requested  grant.index (its own leaf index, plus the cluster
//	                 member's ID << 48 on a member: the ID is "G-" and
//	                 it), identity, provider, issuer, subject, [sponsor]
//	                 (the token's, else the role's), [email], target,
//	                 login, [command], duration.asked, duration (capped),
//	                 reason, [ticket], role, approvals (how many are
//	                 needed), approvers, pending_until, [policy.hash],
//	                 [client.address]
//	grant.approved   by, by.issuer, [by.provider], [by.subject],
//	                 [by.email], [by.sponsor], [comment], approvals (the
//	                 count with this one), [policy.hash], [client.address]
//	grant.denied     by, by.issuer, [by.provider], [by.subject],
//	                 [by.email], [by.sponsor], [comment], [policy.hash],
//	                 [client.address]
//	grant.activated  start, end
//	grant.expired    pending_until
//	grant.ended      end
//	grant.revoked    by, by.issuer (or by.kind), [by.provider],
//	                 [by.subject], [by.email], [by.sponsor], [comment],
//	                 [policy.hash], [client.address]
//
// The by.* details of the decider (by.sponsor as policy.SponsorOf says)
// let a reader check segregation of duties from the journal alone;
// leaves written before they were recorded lack them, and replay needs
// none of them.
//	grant.refused    action, reason, error, [grant], identity fields if
//	                 known, [client.address], [refusals_not_journaled]

// GrantEvents selects the events [OpenGrants] replays, for
// recorder.ReadLogOptions.
func GrantEvents(name string) bool { return slices.Contains(grantEvents, name) }

// load replays the grant events of log in leaf order.
func (s *Grants) load(log *recorder.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range log.Events {
		if !GrantEvents(e.Leaf.Event) {
			continue
		}
		if _, err := s.apply(e.Leaf.Event, s.base+uint64(e.Index), e.Leaf.Attrs); err != nil {
			if id := e.Leaf.Attrs["grant"]; s.base != 0 && e.Leaf.Event != events.GrantRequested && s.m[id] == nil {
				// A decision of this cluster member's on a grant
				// requested through another: applied once that
				// member's log is read (ApplyForeign).
				s.orphans[id] = append(s.orphans[id], recorder.LogEvent{Index: e.Index, Leaf: e.Leaf})
				continue
			}
			return fmt.Errorf("journal leaf %d (%s): %w", e.Index, e.Leaf.Event, err)
		}
	}
	return nil
}

// apply makes event name take effect and returns the grant it changed;
// num is the number its leaf gives a grant (its index plus the log's
// IndexBase). It is the only code that changes a grant, for a live
// transition and for a replayed one alike, so that a store rebuilt from
// the journal is the store that wrote it. s.mu must be held.
func (s *Grants) apply(name string, num uint64, a recorder.Attrs) (*Grant, error) {
	at, err := parseTimeAttr(a, "at")
	if err != nil {
		return nil, err
	}
	if name == events.GrantRequested {
		return s.applyRequest(num, at, a)
	}
	g := s.m[a["grant"]]
	if g == nil {
		return nil, fmt.Errorf("grant %q was never requested", a["grant"])
	}
	want := GrantPending
	switch name {
	case events.GrantActivated, events.GrantEnded:
		if name == events.GrantEnded {
			want = GrantActive
		}
	case events.GrantRevoked:
		if g.State == GrantActive {
			want = GrantActive
		}
	}
	if g.State != want {
		return nil, fmt.Errorf("%s of grant %s, which is %s", name, g.ID, g.State)
	}
	switch name {
	case events.GrantApproved:
		if a["by"] == "" || a["by"] == g.Identity || g.approvedBy(a["by"]) {
			return nil, fmt.Errorf("approval of grant %s by %q: not a new approver", g.ID, a["by"])
		}
		g.Approvals = append(g.Approvals, GrantApproval{By: a["by"], Comment: a["comment"], At: at})
	case events.GrantActivated:
		if len(g.Approvals) < g.ApprovalsNeeded {
			return nil, fmt.Errorf("grant %s activated with %d of %d approvals", g.ID, len(g.Approvals), g.ApprovalsNeeded)
		}
		start, err1 := parseTimeAttr(a, "start")
		end, err2 := parseTimeAttr(a, "end")
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		g.State, g.Start, g.End = GrantActive, start, end
	case events.GrantDenied:
		g.State, g.ClosedAt, g.ClosedBy, g.Comment = GrantDenied, at, a["by"], a["comment"]
	case events.GrantExpired:
		g.State, g.ClosedAt = GrantExpired, at
	case events.GrantEnded:
		g.State, g.ClosedAt = GrantEnded, at
	case events.GrantRevoked:
		g.State, g.ClosedAt, g.ClosedBy, g.Comment = GrantRevoked, at, a["by"], a["comment"]
	default:
		return nil, fmt.Errorf("unknown grant event %s", name)
	}
	return g, nil
}

func (s *Grants) applyRequest(num uint64, at time.Time, a recorder.Attrs) (*Grant, error) {
	if a["grant.index"] != strconv.FormatUint(num, 10) {
		return nil, fmt.Errorf("grant.index %q is not the leaf's number %d", a["grant.index"], num)
	}
	if s.m["G-"+a["grant.index"]] != nil {
		return nil, fmt.Errorf("grant G-%s was requested already", a["grant.index"])
	}
	asked, err1 := time.ParseDuration(a["duration.asked"])
	dur, err2 := time.ParseDuration(a["duration"])
	pending, err3 := parseTimeAttr(a, "pending_until")
	needed, err4 := strconv.Atoi(a["approvals"])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	g := &Grant{
		ID: "G-" + a["grant.index"], State: GrantPending,
		Identity: a["identity"], Provider: a["provider"], Issuer: a["issuer"], Subject: a["subject"], Sponsor: a["sponsor"], Email: a["email"],
		Target: a["target"], Login: a["login"], Command: a["command"], Reason: a["reason"], Ticket: a["ticket"], Role: a["role"],
		AskedDuration: GrantDuration(asked), Duration: GrantDuration(dur), ApprovalsNeeded: needed, Approvers: recorder.SplitList(a["approvers"]),
		Approvals: []GrantApproval{}, RequestedAt: at, PendingUntil: pending, PolicyHash: a["policy.hash"], ClientAddress: a["client.address"],
	}
	if g.Identity == "" || needed < 1 || dur <= 0 {
		return nil, fmt.Errorf("grant %s: no identity, no approvals or no duration", g.ID)
	}
	s.m[g.ID] = g
	return g, nil
}

func parseTimeAttr(a recorder.Attrs, k string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, a[k])
	if err != nil {
		return time.Time{}, fmt.Errorf("bad %s %q", k, a[k])
	}
	return t, nil
}

// checkGrantAsk refuses a malformed request before policy sees it.
func checkGrantAsk(ask *GrantAsk) error {
	switch {
	case ask.Target == "":
		return grantErrorf(ErrGrantInvalid, "a grant request needs a target")
	case len(ask.Target) > maxGrantTarget || strings.ContainsFunc(ask.Target, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' || r == ',' }):
		return grantErrorf(ErrGrantInvalid, "invalid target %q", truncate(ask.Target, 70))
	case ask.Login == "":
		return grantErrorf(ErrGrantInvalid, "a grant request needs a login")
	}
	if err := policy.CheckLogins([]string{ask.Login}); err != nil {
		return grantErrorf(ErrGrantInvalid, "%v", err)
	}
	if ask.Duration < MinGrantDuration {
		return grantErrorf(ErrGrantInvalid, "a grant lasts at least %v: ask for a duration such as \"30m\"", MinGrantDuration)
	}
	if strings.TrimSpace(ask.Reason) == "" {
		return grantErrorf(ErrGrantInvalid, "a grant request needs a reason: say what the access is for")
	}
	if err := checkGrantText("reason", ask.Reason, MaxGrantReason); err != nil {
		return err
	}
	if err := checkGrantText("command", ask.Command, maxGrantCommand); err != nil {
		return err
	}
	if err := policy.CheckTicket(ask.Ticket); err != nil {
		return grantErrorf(ErrGrantInvalid, "%v", err)
	}
	return nil
}

// checkGrantText refuses text that is too long, not UTF-8, or holds
// control characters (which could drive an approver's terminal).
func checkGrantText(what, s string, n int) error {
	switch {
	case len(s) > n:
		return grantErrorf(ErrGrantInvalid, "the %s is %d bytes, at most %d", what, len(s), n)
	case !utf8.ValidString(s):
		return grantErrorf(ErrGrantInvalid, "the %s is not UTF-8", what)
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }):
		return grantErrorf(ErrGrantInvalid, "the %s holds control characters or line breaks", what)
	}
	return nil
}
