// Package grants keeps just-in-time grants: time-bound access that policy
// allows only once approvers have approved a request. [Grants] is the store:
// a grant's request, approvals, denial, activation, expiry, end and
// revocation are each an event committed to the journal before it takes
// effect, and the store is rebuilt from those events when the bastion
// starts ([OpenGrants]), so the journal alone says who had what access,
// granted by whom, for how long.
//
// Decisions come from policy ([GrantPolicy], a *policy.Policy): which
// grant-only role a request falls under, who may approve it, and whether
// an approver is on the requester's side. Free text (reasons, tickets,
// comments) is masked before it is journaled, logged, answered or posted.
// The certificate authority issues certificates under the grants in force
// ([Grants.Active]) and its HTTPS API serves them; the front door ends the
// sessions of a grant that ends ([GrantsOptions] OnEnd); a webhook, if
// configured, is told of every request and decision ([WebhookMessage]).
package grants
