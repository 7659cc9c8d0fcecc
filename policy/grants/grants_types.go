package grants

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder/events"
)

// grantEvents are the events a [Grants] store is rebuilt from.
var grantEvents = []string{events.GrantRequested, events.GrantApproved, events.GrantDenied, events.GrantActivated, events.GrantExpired, events.GrantEnded, events.GrantRevoked}

// GrantState is where a grant is in its life: pending until approved,
// denied or expired; active until it ends or is revoked.
type GrantState string

// Grant states.
const (
	GrantPending GrantState = "pending"
	GrantActive  GrantState = "active"
	GrantDenied  GrantState = "denied"
	GrantExpired GrantState = "expired"
	GrantEnded   GrantState = "ended"
	GrantRevoked GrantState = "revoked"
)

// GrantStates lists every state, in the order of a grant's life.
var GrantStates = []GrantState{GrantPending, GrantActive, GrantDenied, GrantExpired, GrantEnded, GrantRevoked}

// Why a grant ended, as [GrantsOptions.OnEnd] is told: sentences the front
// door can show the sessions it ends.
const (
	GrantEndedWhy   = "the grant ended"
	GrantRevokedWhy = "the grant was revoked"
)

// Limits on grant requests.
const (
	// DefaultPendingTTL is how long a request waits for its approvals.
	DefaultPendingTTL = time.Hour
	// MinGrantDuration is the shortest grant that may be asked for.
	MinGrantDuration = time.Second
	// MaxGrantReason and MaxGrantComment bound the free text of a
	// request and of a decision, in bytes.
	MaxGrantReason  = 1000
	MaxGrantComment = 1000
	maxGrantCommand = 4096
	maxGrantTarget  = 255
)

// Errors of grant actions, for callers to branch on; the error returned
// wraps one of them in a [*GrantError] whose message says what happened.
var (
	// ErrGrantInvalid: the request or decision is malformed.
	ErrGrantInvalid = errors.New("invalid grant request")
	// ErrGrantNotFound: no such grant, or not one the caller may see.
	ErrGrantNotFound = errors.New("no such grant")
	// ErrGrantNotAllowed: policy grants no such access.
	ErrGrantNotAllowed = errors.New("policy allows no such grant")
	// ErrOwnGrant: the requester tried to approve or deny their own grant.
	ErrOwnGrant = errors.New("a grant cannot be decided by its requester")
	// ErrNotApprover: policy does not let the caller decide this grant.
	ErrNotApprover = errors.New("not an approver of this grant")
	// ErrSponsorConflict: the role's approval excludes the requester's
	// sponsor, and the caller is on the requester's side (its sponsor,
	// another identity of the same sponsor, or one acting for the
	// requester).
	ErrSponsorConflict = errors.New("the approver is not independent of the requester's sponsor")
	// ErrGrantState: the grant is not in a state that allows the action
	// (already decided, expired, ended, revoked).
	ErrGrantState = errors.New("the grant is not in a state that allows this")
	// ErrAlreadyApproved: the approver has approved this grant already;
	// each approver counts once.
	ErrAlreadyApproved = errors.New("already approved by this approver")
	// ErrGrantJournal: the journal could not record the transition, so it
	// did not happen.
	ErrGrantJournal = errors.New("the journal cannot record grants")
)

// A GrantError is a refused grant action: Err is one of the ErrGrant…
// sentinels, Msg the sentence the caller reads.
type GrantError struct {
	Err error
	Msg string
	// Cause, if any, is the underlying failure (a journal error), for
	// the log.
	Cause error
}

func (e *GrantError) Error() string { return e.Msg }
func (e *GrantError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// ReasonOf is the code of a grant action's error, as the API answers it
// and the journal's grant.refused events record it: one of the grant and
// request codes of package events, or "internal" for an error that is not
// a refusal.
func ReasonOf(err error) string {
	switch {
	case errors.Is(err, ErrGrantJournal):
		return events.ReasonJournalUnavailable
	case errors.Is(err, ErrGrantInvalid):
		return events.ReasonRequestMalformed
	case errors.Is(err, ErrGrantNotFound):
		return events.ReasonGrantNotFound
	case errors.Is(err, ErrGrantNotAllowed):
		return events.ReasonDenied
	case errors.Is(err, ErrOwnGrant):
		return events.ReasonOwnGrant
	case errors.Is(err, ErrNotApprover):
		return events.ReasonNotApprover
	case errors.Is(err, ErrSponsorConflict):
		return events.ReasonSponsorConflict
	case errors.Is(err, ErrGrantState):
		return events.ReasonGrantState
	case errors.Is(err, ErrAlreadyApproved):
		return events.ReasonAlreadyApproved
	}
	return "internal"
}

func grantErrorf(sentinel error, format string, a ...any) *GrantError {
	return &GrantError{Err: sentinel, Msg: fmt.Sprintf(format, a...)}
}

// GrantPolicy is what grants ask of policy (a *policy.Policy): which
// grant-only role a request falls under, whether an identity may
// approve a grant of a role requested by someone (never by themselves),
// whether the role's approval excludes that approver as being on the
// requester's side ("" when not), and an identity's sponsor.
type GrantPolicy interface {
	GrantRequest(policy.GrantAsk) policy.GrantRule
	MayApprove(role, requester string, approver *policy.Identity) (bool, string)
	ApprovalConflict(role string, requester, approver *policy.Identity) string
	SponsorOf(*policy.Identity) string
}

// policyHash is what a policy may offer to name itself in the journal.
type policyHash interface{ Hash() string }

// GrantDuration is a duration that reads and writes as Go's duration text
// ("30m0s") in JSON.
type GrantDuration time.Duration

func (d GrantDuration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }
func (d *GrantDuration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = GrantDuration(v)
	return err
}

// Grant is a just-in-time grant as the journal records it: the request,
// its approvals, and how it ended. Its JSON form is the API's answer.
type Grant struct {
	// ID is "G-" and the index of the grant.requested leaf.
	ID       string     `json:"id"`
	State    GrantState `json:"state"`
	Identity string     `json:"identity"`
	Provider string     `json:"provider"`
	Issuer   string     `json:"issuer"`
	Subject  string     `json:"subject"`
	Sponsor  string     `json:"sponsor,omitempty"`
	Email    string     `json:"email,omitempty"`
	Target   string     `json:"target"`
	Login    string     `json:"login"`
	Command  string     `json:"command,omitempty"`
	Reason   string     `json:"reason"`
	Ticket   string     `json:"ticket,omitempty"`
	Role     string     `json:"role"`
	// AskedDuration is what the requester asked for; Duration is that,
	// capped by the role's maximum: how long the grant lasts once active.
	AskedDuration   GrantDuration   `json:"asked_duration"`
	Duration        GrantDuration   `json:"duration"`
	ApprovalsNeeded int             `json:"approvals_needed"`
	Approvers       []string        `json:"approvers"`
	Approvals       []GrantApproval `json:"approvals"`
	RequestedAt     time.Time       `json:"requested_at"`
	// PendingUntil is when the request expires if not decided.
	PendingUntil time.Time `json:"pending_until"`
	// Start and End bound the grant once active.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// ClosedAt is when it was denied, expired, ended or revoked; ClosedBy
	// who denied or revoked it, with Comment.
	ClosedAt      time.Time `json:"closed_at,omitzero"`
	ClosedBy      string    `json:"closed_by,omitempty"`
	Comment       string    `json:"comment,omitempty"`
	PolicyHash    string    `json:"policy_hash,omitempty"`
	ClientAddress string    `json:"client_address,omitempty"`
}

// GrantApproval is one approval of a grant.
type GrantApproval struct {
	By      string    `json:"by"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at"`
}

// requester is the identity that asked for g, as its request recorded
// it (without the token's claims).
func (g *Grant) requester() *policy.Identity {
	return &policy.Identity{Provider: g.Provider, Issuer: g.Issuer, Subject: g.Subject, Email: g.Email, Sponsor: g.Sponsor}
}

// Policy is the grant as decisions take it.
func (g *Grant) Policy() policy.Grant {
	return policy.Grant{ID: g.ID, Identity: g.Identity, Role: g.Role, Target: g.Target, Login: g.Login, Command: g.Command, Start: g.Start, End: g.End}
}

// approvedBy reports whether id has approved g.
func (g *Grant) approvedBy(id string) bool {
	return slices.ContainsFunc(g.Approvals, func(a GrantApproval) bool { return a.By == id })
}

// actedBy reports whether id approved, denied or revoked g.
func (g *Grant) actedBy(id string) bool {
	return g.approvedBy(id) || g.ClosedBy == id
}

func (g *Grant) clone() Grant {
	c := *g
	c.Approvers = slices.Clone(g.Approvers)
	c.Approvals = slices.Clone(g.Approvals)
	return c
}
