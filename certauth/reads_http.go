package certauth

import (
	"context"
	"errors"
	"net/http"
	"net/netip"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// ReadRequest is the body of POST /v1/reads: a reader of the journal asks
// the instance to journal its read in the instance's own log before it
// shows anything of it, as readers of a local journal do through serve's
// access socket. It is how reads of a journal in a database (one that
// several instances share, with no access socket beside it) are recorded.
// The caller authenticates with "Authorization: Bearer <OIDC token>"; the
// instance records the identity the token proves, and refuses an identity
// that is not one of its policy's auditors or operators.
type ReadRequest struct {
	// Event is what is journaled: "journal.accessed" (a read, the
	// default when empty) or "evidence.generated" (an examiner's report
	// whose files are written; the answer then holds the signed note).
	Event string `json:"event,omitempty"`
	// Action is what the reader does, for journal.accessed: play,
	// export, evidence, show, search, verify or list.
	Action string `json:"action,omitempty"`
	// Attrs say what is read (session, format, logs, period.from,
	// period.to, targets, identities, sample, seed) or, for a report,
	// what it covers and its files' digests (sha256.html, sha256.json,
	// out). Any other key is refused; values are cut to a bound.
	Attrs map[string]string `json:"attrs,omitempty"`
	// User is who the reader's machine says it is: recorded as
	// says.user, never trusted (the token says who it is).
	User string `json:"user,omitempty"`
}

// ReadResponse is the answer to POST /v1/reads.
type ReadResponse struct {
	// Log is the origin of the log the read was journaled in (the
	// instance's own), Leaf the index of its leaf there.
	Log  string `json:"log"`
	Leaf int64  `json:"leaf"`
	// Identity is the reader as the token proves it; Roles its roles in
	// the instance's policy (auditor, operator), comma-separated.
	Identity string `json:"identity"`
	Roles    string `json:"roles"`
	// Note is the signed note over a report's leaf and digests (for
	// evidence.generated only).
	Note string `json:"note,omitempty"`
}

// RecordReadFunc journals a read by who, from addr, in the instance's
// log, or refuses it with a [*Refusal] (not a reader, a bad request). Any
// other error means the read could not be journaled (503).
type RecordReadFunc func(ctx context.Context, who *policy.Identity, addr netip.Addr, req *ReadRequest) (*ReadResponse, error)

// postRead serves POST /v1/reads: the caller is authenticated as for a
// grant action (rate limits, bearer token, revocation); the journaling and
// the decision on who may read are the server's (APIOptions.Reads).
func (a *API) postRead(w http.ResponseWriter, r *http.Request) {
	if a.reads == nil {
		writeError(w, http.StatusNotFound, events.ReasonReadsNotEnabled, "this bastion records no reads through its API")
		return
	}
	addr := clientAddr(r)
	now := a.now()
	if !a.byAddr.Allow(AddrKey(addr), now) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, events.ReasonRateLimited, "too many requests from address "+AddrKey(addr)+": retry later")
		return
	}
	token, err := bearer(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bastion"`)
		writeError(w, http.StatusUnauthorized, events.ReasonTokenMissing, err.Error())
		return
	}
	who, err := a.issuer.verifyToken(r.Context(), token, recorder.Attrs{})
	if err != nil {
		var rf *Refusal
		if !errors.As(err, &rf) {
			rf = &Refusal{Status: http.StatusUnauthorized, Reason: events.ReasonTokenMalformed, Msg: err.Error()}
		}
		if rf.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bastion", error="invalid_token"`)
		}
		a.log.Warn("read refused: the token does not verify", "reason", rf.Reason, "address", addr, "error", rf.Msg)
		writeError(w, rf.Status, rf.Reason, rf.Msg)
		return
	}
	if why := a.issuer.reg.identityRefused(who.String(), who.IssuedAt, now); why != "" {
		a.log.Warn("read refused", "identity", who.String(), "reason", events.ReasonIdentityRevoked)
		writeError(w, http.StatusForbidden, events.ReasonIdentityRevoked, why)
		return
	}
	if !a.byIdent.Allow(who.String(), now) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, events.ReasonRateLimited, "too many requests from "+who.String()+": retry later")
		return
	}
	var req ReadRequest
	if err := decodeBody(r, &req, `{"action": "play", "attrs": {"session": "…"}}`); err != nil {
		writeError(w, http.StatusBadRequest, events.ReasonRequestMalformed, err.Error())
		return
	}
	out, err := a.reads(r.Context(), who, addr, &req)
	var rf *Refusal
	switch {
	case errors.As(err, &rf):
		a.log.Warn("read refused", "identity", who.String(), "reason", rf.Reason, "error", rf.Msg)
		writeError(w, rf.Status, rf.Reason, rf.Msg)
	case err != nil:
		a.log.Error("a read could not be journaled", "identity", who.String(), "error", err)
		// The cause (paths, the database) is the operator's, in the log.
		writeError(w, http.StatusServiceUnavailable, events.ReasonJournalUnavailable, "the read could not be journaled; the bastion's log says why")
	default:
		writeJSON(w, http.StatusOK, out)
	}
}
