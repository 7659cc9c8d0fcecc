package grants

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/policy/webhook"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// GrantsOptions configure [OpenGrants].
type GrantsOptions struct {
	// Journal records every transition (a *recorder.Journal). Required.
	Journal recorder.EventJournal
	// Policy returns the policy in force (it may change on reload): each
	// request and decision is made under the policy in force at that
	// moment. Required.
	Policy func() GrantPolicy
	// PendingTTL is how long a request waits for its approvals before it
	// expires; zero means DefaultPendingTTL.
	PendingTTL time.Duration
	// WebhookURL, if set, receives a JSON POST for every request and
	// decision (see [Grants] Webhook). It must be https, or http to a
	// loopback address.
	WebhookURL string
	// OnEnd, if set, is called once a grant that was active has ended or
	// been revoked, after the journal has recorded it, with why
	// (GrantEndedWhy or GrantRevokedWhy): the front door ends the live
	// sessions under it. It is called without any lock held, from the
	// store's timer goroutine or from the caller of Revoke; it should not
	// block for long.
	OnEnd func(g Grant, why string)
	// TextMasker returns the masker for the free text of requests and
	// decisions (a reason, a ticket, a comment, an error that quotes
	// them): it is masked before it is journaled, logged, answered or
	// posted. Without a TextMasker, every built-in detector masks; a nil
	// masker returned masks nothing.
	TextMasker func() *mask.Masker
	Logger     hclog.Logger
	// Now is the clock. If nil, time.Now is used.
	Now func() time.Time
	// CatchUp, if set, is called, with no lock held, when a decision or
	// a show names a grant the store does not know: a member of a cluster
	// reads the other members' logs (the grant may have been requested
	// through another member a moment ago) before the store looks again.
	CatchUp func(id string)
	// IndexBase is the journal's recorder.Options IndexBase: a cluster
	// member's ID << 48, zero for a standalone bastion. A grant's number
	// is its request leaf's index plus IndexBase, so that the IDs of
	// grants requested on different members never collide.
	IndexBase uint64
}

// Grants is the store of just-in-time grants: their state, rebuilt from
// the journal by [OpenGrants] and kept in memory, and every transition,
// committed to the journal before it takes effect. If the journal cannot
// record a transition, it does not happen and the caller gets an error
// wrapping ErrGrantJournal.
//
// # Life of a grant
//
// A request is pending until the approvals its role needs are given (by
// distinct approvers the policy in force at each approval allows, never
// the requester), until an approver denies it, or until it expires
// (PendingTTL). It is active from the approval that completes the count
// until that moment plus its duration (the asked duration capped by the
// role's maximum), unless revoked sooner by its requester or by anyone who
// may approve it. How many approvals are needed is fixed when the request
// is made; who may give one is decided at each approval. One goroutine
// journals expiries and ends as they fall due and calls OnEnd; Close
// stops it.
//
// # Webhook
//
// With a WebhookURL, each request and decision is posted as JSON, with a
// Slack-compatible "text" and the fields "event" and "grant", from a
// bounded queue, with a few retries; delivery never delays or fails a
// grant action. Failures are logged and counted (webhookStats).
type Grants struct {
	journal    recorder.EventJournal
	policy     func() GrantPolicy
	pendingTTL time.Duration
	onEnd      func(Grant, string)
	log        hclog.Logger
	now        func() time.Time
	hook       *webhook.Webhook // nil without a URL
	textMasker func() *mask.Masker
	base       uint64 // GrantsOptions.IndexBase
	catchUp    func(id string)

	// tx serializes transitions: it is held from the check of a grant's
	// state to the application of the committed event, so that the
	// state checked is the state changed.
	tx sync.Mutex
	mu sync.Mutex        // guards grants; never held across a journal write
	m  map[string]*Grant // by ID, guarded by mu
	// orphans are this log's events about grants requested in another
	// cluster member's log, by grant ID, in leaf order: load found them
	// before that log was read, ApplyForeign applies them after the
	// request (guarded by mu).
	orphans map[string][]recorder.LogEvent

	wake   chan struct{} // pokes the timer goroutine
	cancel context.CancelFunc
	done   chan struct{}

	// refusals bounds the grant.refused events journaled per second;
	// suppressed counts those left out since the last one journaled.
	refusals   *rate.Limiter
	suppressed atomic.Int64
}

// OpenGrants rebuilds the grants from the grant events of log (the
// journal's log, read with [GrantEvents] selected before the journal takes
// new events) and starts the timer goroutine, which first journals the
// expiries and ends that fell due while the bastion was down.
func OpenGrants(ctx context.Context, log *recorder.Log, opts GrantsOptions) (*Grants, error) {
	if opts.Journal == nil || opts.Policy == nil {
		return nil, errors.New("grants: a store needs a journal and a policy")
	}
	if opts.PendingTTL < 0 {
		return nil, fmt.Errorf("grants: negative pending TTL %v", opts.PendingTTL)
	}
	s := &Grants{
		journal: opts.Journal, policy: opts.Policy, pendingTTL: opts.PendingTTL, onEnd: opts.OnEnd,
		log: opts.Logger, now: opts.Now, m: map[string]*Grant{}, orphans: map[string][]recorder.LogEvent{}, wake: make(chan struct{}, 1), done: make(chan struct{}),
		refusals: rate.NewLimiter(refusalRate, refusalBurst), textMasker: opts.TextMasker, base: opts.IndexBase,
		catchUp: opts.CatchUp,
	}
	if s.pendingTTL == 0 {
		s.pendingTTL = DefaultPendingTTL
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.load(log); err != nil {
		return nil, err
	}
	if opts.WebhookURL != "" {
		h, err := webhook.New(opts.WebhookURL, "bastion-grants-webhook", s.log.Named("webhook"))
		if err != nil {
			return nil, err
		}
		s.hook = h
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.run(runCtx)
	return s, nil
}

// Close stops the timer goroutine and the webhook's delivery (which gets a
// few seconds to send what is queued). It does not close the journal.
func (s *Grants) Close() error {
	s.cancel()
	<-s.done
	if s.hook != nil {
		s.hook.Close()
	}
	return nil
}

// GrantAsk is a request for a grant, as the API received it.
type GrantAsk struct {
	Identity *policy.Identity
	Target   string
	Login    string
	// Command, if set, limits the grant to that exec command.
	Command  string
	Duration time.Duration
	// Reason is required: what the access is for.
	Reason        string
	Ticket        string
	ClientAddress netip.Addr
}

// GrantDecision is an approval, denial or revocation of grant ID by By.
type GrantDecision struct {
	ID            string
	By            *policy.Identity
	Comment       string
	ClientAddress netip.Addr
	// Operator, for a revocation only, names an operator of the bastion
	// itself (the admin socket's peer: "uid 0, pid 4242") in place of an
	// identity: an operator may revoke any grant.
	Operator string
	// OperatorAttrs, with Operator, are journaled with the revocation
	// besides its own attributes (which they never replace): who the
	// operator is, as the server knows them.
	OperatorAttrs recorder.Attrs
	// Via, if set, are journaled with the decision besides its own
	// attributes (which they never replace): where it was made, such as
	// the web console's via and console.session.
	Via recorder.Attrs
}

// Request journals a new pending grant request, if policy has a
// grant-only role for it.
func (s *Grants) Request(ctx context.Context, ask GrantAsk) (Grant, error) {
	g, err := s.request(ctx, ask)
	if err != nil {
		return Grant{}, s.refused(ctx, "request", "", ask.Identity, ask.ClientAddress, err)
	}
	return g, nil
}

func (s *Grants) request(ctx context.Context, ask GrantAsk) (Grant, error) {
	if ask.Identity == nil {
		return Grant{}, grantErrorf(ErrGrantInvalid, "a grant request needs an identity")
	}
	if err := checkGrantAsk(&ask); err != nil {
		return Grant{}, err
	}
	if _, hits := s.masker().Text(ask.Command); len(hits) > 0 {
		// Kept masked, the command could never match the one run.
		return Grant{}, grantErrorf(ErrGrantInvalid, "the command holds a value that masking hides (%s): a grant cannot name it, as the journal never keeps it; ask for a command without it", strings.Join(mask.Summary("command", hits), ", "))
	}
	now := s.now()
	pol := s.policy()
	if pol == nil {
		return Grant{}, grantErrorf(ErrGrantNotAllowed, "no policy is in force, so no grant can be requested")
	}
	rule := pol.GrantRequest(policy.GrantAsk{Identity: ask.Identity, Target: ask.Target, Login: ask.Login, Command: ask.Command, Duration: ask.Duration, Time: now})
	if !rule.Allow {
		why := rule.Reason
		if why == "" {
			why = "no grant-only role covers it"
		}
		return Grant{}, grantErrorf(ErrGrantNotAllowed, "policy allows no grant of %s@%s to %s: %s", ask.Login, ask.Target, ask.Identity, why)
	}
	if rule.Duration <= 0 || rule.Approvals < 1 {
		return Grant{}, grantErrorf(ErrGrantNotAllowed, "policy's rule for role %s gives no duration or no approvals; fix the policy", rule.Role)
	}
	a := recorder.Attrs{}
	ask.Identity.WriteAttrs(a)
	a["at"] = timeAttr(now)
	a["target"] = ask.Target
	a["login"] = ask.Login
	if ask.Command != "" {
		a["command"] = ask.Command
	}
	a["duration.asked"] = ask.Duration.String()
	a["duration"] = min(rule.Duration, ask.Duration).String()
	a["reason"] = ask.Reason
	if ask.Ticket != "" {
		a["ticket"] = ask.Ticket
	}
	a["role"] = rule.Role
	if rule.Sponsor != "" {
		a["sponsor"] = rule.Sponsor
	}
	s.masker().Fields(a, "reason", "ticket")
	a["approvals"] = strconv.Itoa(rule.Approvals)
	a["approvers"] = strings.Join(rule.Approvers, ",")
	a["pending_until"] = timeAttr(now.Add(s.pendingTTL))
	if h := hashOf(pol); h != "" {
		a["policy.hash"] = h
	}
	if ask.ClientAddress.IsValid() {
		a["client.address"] = ask.ClientAddress.String()
	}
	s.tx.Lock()
	defer s.tx.Unlock()
	g, err := s.commit(ctx, events.GrantRequested, "", a)
	if err != nil {
		return Grant{}, err
	}
	s.log.Info("grant requested", "grant", g.ID, "identity", g.Identity, "target", g.Target, "login", g.Login, "role", g.Role, "duration", time.Duration(g.Duration))
	s.notify(events.GrantRequested, g, "", "")
	s.poke()
	return g, nil
}

// Approve records an approval by d.By. The approval that completes the
// count activates the grant.
func (s *Grants) Approve(ctx context.Context, d GrantDecision) (Grant, error) {
	g, ended, err := s.decide(ctx, "approve", d)
	if err != nil {
		return Grant{}, s.refused(ctx, "approve", d.ID, d.By, d.ClientAddress, err, d.OperatorAttrs, d.Via)
	}
	s.ended(ended)
	return g, nil
}

// Deny closes a pending request.
func (s *Grants) Deny(ctx context.Context, d GrantDecision) (Grant, error) {
	g, _, err := s.decide(ctx, "deny", d)
	if err != nil {
		return Grant{}, s.refused(ctx, "deny", d.ID, d.By, d.ClientAddress, err, d.OperatorAttrs, d.Via)
	}
	return g, nil
}

// Revoke ends an active grant, or withdraws a pending request, early: by
// its requester, or by anyone who may approve it. OnEnd is called for an
// active grant before Revoke returns.
func (s *Grants) Revoke(ctx context.Context, d GrantDecision) (Grant, error) {
	g, ended, err := s.decide(ctx, "revoke", d)
	if err != nil {
		return Grant{}, s.refused(ctx, "revoke", d.ID, d.By, d.ClientAddress, err, d.OperatorAttrs, d.Via)
	}
	s.ended(ended)
	return g, nil
}

// endedGrant is a grant that ended, for OnEnd.
type endedGrant struct {
	g   Grant
	why string
}

func (s *Grants) ended(es []endedGrant) {
	if s.onEnd == nil {
		return
	}
	for _, e := range es {
		s.onEnd(e.g, e.why)
	}
}

// decide checks and journals one decision; see the order of the checks in
// grantsCheck.
func (s *Grants) decide(ctx context.Context, action string, d GrantDecision) (Grant, []endedGrant, error) {
	operator := d.Operator != ""
	if operator && action != "revoke" {
		return Grant{}, nil, grantErrorf(ErrGrantInvalid, "an operator may only revoke grants; approvals and denials take an identity")
	}
	if d.By == nil && !operator {
		return Grant{}, nil, grantErrorf(ErrGrantInvalid, "a decision needs an identity")
	}
	if err := checkGrantText("comment", d.Comment, MaxGrantComment); err != nil {
		return Grant{}, nil, err
	}
	s.known(d.ID)
	s.tx.Lock()
	defer s.tx.Unlock()
	now := s.now()
	pol := s.policy()
	s.mu.Lock()
	cur := s.m[d.ID]
	var g Grant
	if cur != nil {
		g = cur.clone()
	}
	s.mu.Unlock()
	if cur == nil {
		return Grant{}, nil, grantErrorf(ErrGrantNotFound, "no grant %s is known to you", printableID(d.ID))
	}
	var by string
	own, may, why := false, false, ""
	if operator {
		by, may = "operator ("+d.Operator+")", true
	} else {
		by = d.By.String()
		own = by == g.Identity
		if pol != nil && !own {
			may, why = pol.MayApprove(g.Role, g.Identity, d.By)
		}
	}
	if !own && !may && !g.actedBy(by) {
		// Invisible to the caller: the same answer as for no grant.
		return Grant{}, nil, grantErrorf(ErrGrantNotFound, "no grant %s is known to you", g.ID)
	}
	if why == "" {
		why = "policy names other approvers for role " + g.Role
	}
	switch action {
	case "approve", "deny":
		if own {
			return Grant{}, nil, grantErrorf(ErrOwnGrant, "you requested grant %s, so you cannot %s it: another approver must (to withdraw it, revoke it)", g.ID, action)
		}
		if !may {
			return Grant{}, nil, grantErrorf(ErrNotApprover, "you may not %s grant %s under the policy in force: %s", action, g.ID, why)
		}
		if err := g.pending(now); err != nil {
			return Grant{}, nil, err
		}
		if action == "approve" && g.approvedBy(by) {
			return Grant{}, nil, grantErrorf(ErrAlreadyApproved, "you have approved grant %s already: each approver counts once, and it needs %d more", g.ID, g.ApprovalsNeeded-len(g.Approvals))
		}
		// Only approvals: a denial takes access away.
		if action == "approve" {
			if why := pol.ApprovalConflict(g.Role, g.requester(), d.By); why != "" {
				return Grant{}, nil, grantErrorf(ErrSponsorConflict, "you may not approve grant %s: %s; an approver independent of its sponsor must", g.ID, why)
			}
		}
	case "revoke":
		if !own && !may {
			return Grant{}, nil, grantErrorf(ErrNotApprover, "you may not revoke grant %s: only its requester and its approvers may; %s", g.ID, why)
		}
		if err := g.live(now); err != nil {
			return Grant{}, nil, err
		}
	}

	a := recorder.Attrs{"at": timeAttr(now), "by": by}
	if operator {
		a["by.kind"] = "operator"
		a.AddMissing(d.OperatorAttrs)
	} else {
		a["by.issuer"] = d.By.Issuer
		deciderAttrs(a, d.By, pol)
	}
	if d.Comment != "" {
		a["comment"] = d.Comment
		s.masker().Fields(a, "comment")
	}
	if h := hashOf(pol); h != "" {
		a["policy.hash"] = h
	}
	if d.ClientAddress.IsValid() {
		a["client.address"] = d.ClientAddress.String()
	}
	a.AddMissing(d.Via)
	var ended []endedGrant
	switch action {
	case "approve":
		a["approvals"] = strconv.Itoa(len(g.Approvals) + 1)
		var err error
		if g, err = s.commit(ctx, events.GrantApproved, g.ID, a); err != nil {
			return Grant{}, nil, err
		}
		s.log.Info("grant approved", "grant", g.ID, "by", by, "approvals", len(g.Approvals), "needed", g.ApprovalsNeeded)
		s.notify(events.GrantApproved, g, by, a["comment"])
		if len(g.Approvals) >= g.ApprovalsNeeded {
			// The approval is committed; if the activation cannot be,
			// the timer goroutine tries again.
			if g, err = s.activate(ctx, g, now); err != nil {
				s.poke()
				return Grant{}, nil, err
			}
		}
	case "deny":
		var err error
		if g, err = s.commit(ctx, events.GrantDenied, g.ID, a); err != nil {
			return Grant{}, nil, err
		}
		s.log.Info("grant denied", "grant", g.ID, "by", by)
		s.notify(events.GrantDenied, g, by, a["comment"])
	case "revoke":
		wasActive := g.State == GrantActive
		var err error
		if g, err = s.commit(ctx, events.GrantRevoked, g.ID, a); err != nil {
			return Grant{}, nil, err
		}
		s.log.Info("grant revoked", "grant", g.ID, "by", by, "was_active", wasActive)
		s.notify(events.GrantRevoked, g, by, a["comment"])
		if wasActive {
			ended = append(ended, endedGrant{g, GrantRevokedWhy})
		}
	}
	s.poke()
	return g, ended, nil
}

// deciderAttrs records who decided beyond "by": what a reader needs to
// check segregation of duties from the journal alone, the decider's
// sponsor as the policy in force finds it.
func deciderAttrs(a recorder.Attrs, by *policy.Identity, pol GrantPolicy) {
	sponsor := by.Sponsor
	if pol != nil {
		sponsor = pol.SponsorOf(by)
	}
	for k, v := range map[string]string{"by.provider": by.Provider, "by.subject": by.Subject, "by.email": by.Email, "by.sponsor": sponsor} {
		if v != "" {
			a[k] = v
		}
	}
}

// pending refuses a decision on a grant that is no longer pending (or
// whose request has run out, though the timer has not said so yet).
func (g *Grant) pending(now time.Time) error {
	switch {
	case g.State == GrantPending && !now.Before(g.PendingUntil):
		return grantErrorf(ErrGrantState, "grant %s expired at %s without a decision: request it again", g.ID, g.PendingUntil.UTC().Format(time.RFC3339))
	case g.State == GrantPending:
		return nil
	}
	return grantErrorf(ErrGrantState, "grant %s is %s, not pending: it can no longer be approved or denied", g.ID, g.State)
}

// live refuses to revoke a grant that has already stopped.
func (g *Grant) live(now time.Time) error {
	switch {
	case g.State == GrantPending && now.Before(g.PendingUntil):
		return nil
	case g.State == GrantActive && now.Before(g.End):
		return nil
	case g.State == GrantActive:
		return grantErrorf(ErrGrantState, "grant %s ended at %s: there is nothing to revoke", g.ID, g.End.UTC().Format(time.RFC3339))
	case g.State == GrantPending:
		return grantErrorf(ErrGrantState, "grant %s expired at %s without a decision: there is nothing to revoke", g.ID, g.PendingUntil.UTC().Format(time.RFC3339))
	}
	return grantErrorf(ErrGrantState, "grant %s is %s already: there is nothing to revoke", g.ID, g.State)
}

// activate journals g's activation: from the moment of the approval that
// completed the count, for its duration. s.tx must be held.
func (s *Grants) activate(ctx context.Context, g Grant, now time.Time) (Grant, error) {
	start := g.Approvals[len(g.Approvals)-1].At
	end := start.Add(time.Duration(g.Duration))
	g, err := s.commit(ctx, events.GrantActivated, g.ID, recorder.Attrs{"at": timeAttr(now), "start": timeAttr(start), "end": timeAttr(end)})
	if err != nil {
		return Grant{}, err
	}
	s.log.Info("grant active", "grant", g.ID, "identity", g.Identity, "target", g.Target, "login", g.Login, "end", g.End.UTC().Format(time.RFC3339))
	s.notify(events.GrantActivated, g, "", "")
	return g, nil
}

// commit journals one event about grant id ("" for a request, whose ID
// its leaf gives) and applies it; it returns the grant after. s.tx must
// be held. The journal write is not cancelled with ctx: once queued it is
// committed, and must then take effect here too.
func (s *Grants) commit(ctx context.Context, name, id string, a recorder.Attrs) (Grant, error) {
	var idx int64
	var err error
	if name == events.GrantRequested {
		attr := recorder.NumberedAttr(name)
		idx, err = s.journal.AppendIndexedEvent(context.WithoutCancel(ctx), name, a, attr)
		a[attr] = strconv.FormatUint(s.base+uint64(idx), 10)
	} else {
		a["grant"] = id
		idx, err = s.journal.AppendEvent(context.WithoutCancel(ctx), name, a)
	}
	if err != nil {
		s.log.Error("journal a grant event", "event", name, "grant", id, "error", err)
		return Grant{}, &GrantError{Err: ErrGrantJournal, Cause: err,
			Msg: fmt.Sprintf("the journal cannot record %s, so it did not happen; the bastion's log says why", name)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.apply(name, s.base+uint64(idx), a)
	if err != nil {
		// The event was built here; failing to apply it is a bug.
		return Grant{}, fmt.Errorf("grants: apply %s (leaf %d): %w", name, idx, err)
	}
	return g.clone(), nil
}

// refused journals a refused action (within the refusal budget) and
// returns err, or the journal's failure.
func (s *Grants) refused(ctx context.Context, action, id string, who *policy.Identity, addr netip.Addr, err error, extra ...recorder.Attrs) error {
	var ge *GrantError
	if !errors.As(err, &ge) || errors.Is(err, ErrGrantJournal) {
		return err
	}
	a := recorder.Attrs{"action": action, "reason": ReasonOf(err), "error": ge.Msg, "at": timeAttr(s.now())}
	// Who asked, as the decision names them (an operator's attributes,
	// where it was made), never in place of the refusal's own.
	for _, x := range extra {
		for k, v := range x {
			if _, ok := a[k]; !ok {
				a[k] = v
			}
		}
	}
	if id != "" {
		a["grant"] = id // masked, then cut, by JournalRefusal
	}
	if who != nil {
		who.WriteAttrs(a)
	}
	if addr.IsValid() {
		a["client.address"] = addr.String()
	}
	return s.JournalRefusal(ctx, a, err)
}

// JournalRefusal journals a refused grant action, err, described by a
// (action, reason, error, and the caller's identity and address where
// known), within the budget of refusals journaled per second; it returns
// err, or a [*GrantError] wrapping ErrGrantJournal if the journal failed.
// The API calls it for the refusals it makes before the store sees the
// action. What the caller sent (a grant ID from the URL) and the error,
// which may quote it, are masked first, and the error is cut to 1 KiB
// after that.
func (s *Grants) JournalRefusal(ctx context.Context, a recorder.Attrs, err error) error {
	s.masker().Fields(a, "error", "grant")
	a["error"] = truncate(a["error"], 1024)
	if id, ok := a["grant"]; ok {
		a["grant"] = truncate(id, 64)
	}
	if !s.refusals.Allow() {
		s.suppressed.Add(1)
		s.log.Warn("grant action refused", "action", a["action"], "reason", a["reason"], "error", a["error"], "identity", a["identity"])
		return err
	}
	if n := s.suppressed.Swap(0); n > 0 {
		a["refusals_not_journaled"] = strconv.FormatInt(n, 10)
	}
	if _, jerr := s.journal.AppendEvent(ctx, events.GrantRefused, a); jerr != nil {
		s.log.Error("journal a grant refusal", "reason", a["reason"], "error", jerr)
		return &GrantError{Err: ErrGrantJournal, Cause: errors.Join(err, jerr),
			Msg: "the journal cannot record this grant action, so nothing was done"}
	}
	s.log.Info("grant action refused", "action", a["action"], "reason", a["reason"], "error", a["error"], "identity", a["identity"])
	return err
}

// known calls CatchUp for an ID the store does not know.
func (s *Grants) known(id string) {
	if _, ok := s.Get(id); !ok && s.catchUp != nil {
		s.catchUp(id)
	}
}

// Get returns grant id.
func (s *Grants) Get(id string) (Grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.m[id]
	if g == nil {
		return Grant{}, false
	}
	return g.clone(), true
}

// Show returns grant id for who, or, if there is no such grant or who may
// not see it ([Grants.Visible]), journals the refusal and returns an error
// wrapping ErrGrantNotFound: the same answer for both.
func (s *Grants) Show(ctx context.Context, id string, who *policy.Identity, addr netip.Addr) (Grant, error) {
	s.known(id)
	g, ok := s.Get(id)
	if !ok || !s.Visible(&g, who) {
		return Grant{}, s.refused(ctx, "show", id, who, addr, grantErrorf(ErrGrantNotFound, "no grant %s is known to you", printableID(id)))
	}
	return g, nil
}

// Visible reports whether who may see g: its requester, anyone who
// decided on it, and anyone the policy in force lets approve it.
func (s *Grants) Visible(g *Grant, who *policy.Identity) bool {
	id := who.String()
	if id == g.Identity || g.actedBy(id) {
		return true
	}
	pol := s.policy()
	if pol == nil {
		return false
	}
	ok, _ := pol.MayApprove(g.Role, g.Identity, who)
	return ok
}

// GrantFilter selects grants for [Grants.List]; zero fields select all.
type GrantFilter struct {
	State    GrantState
	Identity string
	// VisibleTo keeps the grants that identity may see.
	VisibleTo *policy.Identity
}

// List returns the grants f selects, oldest first.
func (s *Grants) List(f GrantFilter) []Grant {
	s.mu.Lock()
	var out []Grant
	for _, g := range s.m {
		if (f.State == "" || g.State == f.State) && (f.Identity == "" || g.Identity == f.Identity) {
			out = append(out, g.clone())
		}
	}
	s.mu.Unlock()
	if f.VisibleTo != nil {
		out = slices.DeleteFunc(out, func(g Grant) bool { return !s.Visible(&g, f.VisibleTo) })
	}
	slices.SortFunc(out, func(a, b Grant) int { return compareGrantIDs(a.ID, b.ID) })
	return out
}

// Active returns identity's grants in force at now, for decisions. A grant
// past its end is left out even before the timer has journaled its end.
func (s *Grants) Active(identity string, now time.Time) []policy.Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policy.Grant
	for _, g := range s.m {
		if g.Identity == identity && g.State == GrantActive && !now.Before(g.Start) && now.Before(g.End) {
			out = append(out, g.Policy())
		}
	}
	slices.SortFunc(out, func(a, b policy.Grant) int { return compareGrantIDs(a.ID, b.ID) })
	return out
}

// webhookStats says how the webhook's deliveries went: delivered, failed
// after every retry, and dropped because the queue was full.
func (s *Grants) webhookStats() (delivered, failed, dropped int64) {
	if s.hook == nil {
		return 0, 0, 0
	}
	return s.hook.Stats()
}

// notify queues event's message for the webhook, if there is one; it never
// blocks.
func (s *Grants) notify(event string, g Grant, by, comment string) {
	if s.hook != nil {
		m := &WebhookMessage{Text: webhookText(event, &g, by, comment), Event: event, Grant: g, By: by, Comment: comment}
		s.hook.Post(event, g.ID, m)
	}
}

func timeAttr(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func hashOf(p GrantPolicy) string {
	if h, ok := p.(policyHash); ok {
		return h.Hash()
	}
	return ""
}

// GrantNumber is the number grant ID id ("G-N") names (its request
// leaf's index, plus the member's ID << 48 in a cluster: see
// recorder.SplitNumber), and whether it names one.
func GrantNumber(id string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "G-"), 10, 64)
	return n, err == nil && strings.HasPrefix(id, "G-")
}

// compareGrantIDs orders IDs by their numbers, IDs that name none first.
func compareGrantIDs(a, b string) int {
	na, oka := GrantNumber(a)
	nb, okb := GrantNumber(b)
	switch {
	case oka != okb:
		if oka {
			return 1
		}
		return -1
	case na < nb:
		return -1
	case na > nb:
		return 1
	}
	return strings.Compare(a, b)
}

// printableID is an ID from a caller, safe to put in a message.
func printableID(id string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, truncate(id, 64))
}

// masker is the masker of free text: the configured one, or every
// built-in detector.
func (s *Grants) masker() *mask.Masker { return mask.Configured(s.textMasker) }

// Refused grant actions journaled at most, per second and in a burst (the
// certificate authority's budget for its refusals): enough for every
// honest mistake, too few for a flood of garbage to crowd out recording.
const (
	refusalRate  = 50
	refusalBurst = 500
)

// truncate cuts s to n bytes and marks the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
