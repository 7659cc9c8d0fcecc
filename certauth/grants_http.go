package certauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"time"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// GrantStatus is the HTTP status and code for a grant action's error,
// as the API answers it (and the web console).
func GrantStatus(err error) (int, string) {
	reason := grants.ReasonOf(err)
	switch reason {
	case events.ReasonJournalUnavailable:
		return http.StatusServiceUnavailable, reason
	case events.ReasonRequestMalformed:
		return http.StatusBadRequest, reason
	case events.ReasonGrantNotFound:
		return http.StatusNotFound, reason
	case events.ReasonDenied, events.ReasonOwnGrant, events.ReasonNotApprover, events.ReasonSponsorConflict:
		return http.StatusForbidden, reason
	case events.ReasonGrantState, events.ReasonAlreadyApproved:
		return http.StatusConflict, reason
	}
	return http.StatusInternalServerError, reason
}

// grantRoutes adds the grant endpoints to a's mux.
func (a *API) grantRoutes() {
	a.mux.HandleFunc("POST /v1/grants", a.postGrant)
	a.mux.HandleFunc("GET /v1/grants", a.listGrants)
	a.mux.HandleFunc("GET /v1/grants/{id}", a.getGrant)
	for _, action := range []string{"approve", "deny", "revoke"} {
		a.mux.HandleFunc("POST /v1/grants/{id}/"+action, func(w http.ResponseWriter, r *http.Request) { a.decideGrant(w, r, action) })
	}
	for path, allow := range map[string]string{
		"/v1/grants": "GET, HEAD, POST", "/v1/grants/{id}": "GET, HEAD",
		"/v1/grants/{id}/approve": "POST", "/v1/grants/{id}/deny": "POST", "/v1/grants/{id}/revoke": "POST",
	} {
		a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+": use "+allow)
		})
	}
}

// grantCaller authenticates a grant action's caller: the address's rate
// limit, the bearer token, the identity's revocation and its rate limit.
// On a refusal it journals it (within budget), answers, and returns nil.
func (a *API) grantCaller(w http.ResponseWriter, r *http.Request, action, id string) (*policy.Identity, netip.Addr) {
	addr := clientAddr(r)
	if a.grants == nil {
		writeError(w, http.StatusNotFound, events.ReasonGrantsNotEnabled, "this bastion keeps no just-in-time grants")
		return nil, addr
	}
	attrs := recorder.Attrs{"action": action}
	if id != "" {
		attrs["grant"] = id // masked, then cut, by JournalRefusal
	}
	if addr.IsValid() {
		attrs["client.address"] = addr.String()
	}
	now := a.now()
	if !a.byAddr.Allow(AddrKey(addr), now) {
		a.grantLimited(w, r, attrs, "address "+AddrKey(addr), a.byAddr.FirstRefusal(AddrKey(addr), now))
		return nil, addr
	}
	token, err := bearer(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bastion"`)
		a.grantRefusal(w, r, attrs, &Refusal{Status: http.StatusUnauthorized, Reason: events.ReasonTokenMissing, Msg: err.Error()})
		return nil, addr
	}
	who, err := a.issuer.verifyToken(r.Context(), token, attrs)
	if err != nil {
		var rf *Refusal
		errors.As(err, &rf)
		if rf.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bastion", error="invalid_token"`)
		}
		a.grantRefusal(w, r, attrs, rf)
		return nil, addr
	}
	delete(attrs, "token.sha256")
	who.WriteAttrs(attrs)
	if why := a.issuer.reg.identityRefused(who.String(), who.IssuedAt, now); why != "" {
		a.grantRefusal(w, r, attrs, &Refusal{Status: http.StatusForbidden, Reason: events.ReasonIdentityRevoked, Msg: why})
		return nil, addr
	}
	if !a.byIdent.Allow(who.String(), now) {
		a.grantLimited(w, r, attrs, who.String(), a.byIdent.FirstRefusal(who.String(), now))
		return nil, addr
	}
	return who, addr
}

// grantLimited answers a rate-limited grant action; only the first
// refusal of a limiter key in a minute is journaled.
func (a *API) grantLimited(w http.ResponseWriter, r *http.Request, attrs recorder.Attrs, who string, journal bool) {
	rf := &Refusal{Status: http.StatusTooManyRequests, Reason: events.ReasonRateLimited, Msg: "too many requests from " + who + ": retry later"}
	w.Header().Set("Retry-After", "1")
	if !journal {
		a.log.Warn("grant action rate-limited", "who", who)
		writeError(w, rf.Status, rf.Reason, rf.Msg)
		return
	}
	a.grantRefusal(w, r, attrs, rf)
}

// grantRefusal journals a refusal made before the store saw the action,
// and answers it (or 503 if the journal failed).
func (a *API) grantRefusal(w http.ResponseWriter, r *http.Request, attrs recorder.Attrs, rf *Refusal) {
	attrs["reason"] = rf.Reason
	attrs["error"] = rf.Msg // masked, then cut, by JournalRefusal
	attrs["at"] = a.now().UTC().Format(time.RFC3339Nano)
	if err := a.grants.JournalRefusal(r.Context(), attrs, rf); errors.Is(err, grants.ErrGrantJournal) {
		writeError(w, http.StatusServiceUnavailable, events.ReasonJournalUnavailable, err.Error())
		return
	}
	msg := rf.Msg
	if rf.Public != "" {
		msg = rf.Public
	}
	writeError(w, rf.Status, rf.Reason, msg)
}

// writeGrantError answers an error of the store (already journaled).
func (a *API) writeGrantError(w http.ResponseWriter, err error) {
	status, reason := GrantStatus(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		a.log.Error("grant action failed", "error", err)
		msg = "internal error: the bastion's log says why"
	}
	writeError(w, status, reason, msg)
}

func (a *API) postGrant(w http.ResponseWriter, r *http.Request) {
	who, addr := a.grantCaller(w, r, "request", "")
	if who == nil {
		return
	}
	var body GrantRequest
	if err := decodeBody(r, &body, `{"target": "db-1", "login": "deploy", "duration": "30m", "reason": "…"}`); err != nil {
		a.grantRefusal(w, r, grantCallerAttrs("request", "", who, addr), &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed, Msg: err.Error()})
		return
	}
	d, err := time.ParseDuration(body.Duration)
	if err != nil || d <= 0 {
		msg := fmt.Sprintf("duration %q is not a positive duration such as \"30m\"", truncate(body.Duration, 40))
		a.grantRefusal(w, r, grantCallerAttrs("request", "", who, addr), &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed, Msg: msg})
		return
	}
	g, err := a.grants.Request(r.Context(), grants.GrantAsk{
		Identity: who, Target: body.Target, Login: body.Login, Command: body.Command, Duration: d,
		Reason: body.Reason, Ticket: body.Ticket, ClientAddress: addr,
	})
	if err != nil {
		a.writeGrantError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/grants/"+g.ID)
	writeJSON(w, http.StatusCreated, &g)
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request) {
	who, addr := a.grantCaller(w, r, "list", "")
	if who == nil {
		return
	}
	f := grants.GrantFilter{VisibleTo: who}
	q := r.URL.Query()
	for k := range q {
		if k != "state" {
			a.grantRefusal(w, r, grantCallerAttrs("list", "", who, addr), &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed,
				Msg: fmt.Sprintf("unknown query parameter %q: GET /v1/grants takes state", truncate(k, 40))})
			return
		}
	}
	if st := q.Get("state"); st != "" {
		f.State = grants.GrantState(st)
		if !validGrantState(f.State) {
			a.grantRefusal(w, r, grantCallerAttrs("list", "", who, addr), &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed,
				Msg: fmt.Sprintf("unknown state %q: use pending, active, denied, expired, ended or revoked", truncate(st, 40))})
			return
		}
	}
	gs := a.grants.List(f)
	if gs == nil {
		gs = []grants.Grant{}
	}
	writeJSON(w, http.StatusOK, &GrantList{Grants: gs})
}

func (a *API) getGrant(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	who, addr := a.grantCaller(w, r, "show", id)
	if who == nil {
		return
	}
	g, err := a.grants.Show(r.Context(), id, who, addr)
	if err != nil {
		a.writeGrantError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &g)
}

func (a *API) decideGrant(w http.ResponseWriter, r *http.Request, action string) {
	id := r.PathValue("id")
	who, addr := a.grantCaller(w, r, action, id)
	if who == nil {
		return
	}
	var body GrantDecisionRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &body, `{"comment": "…"}`); err != nil {
			a.grantRefusal(w, r, grantCallerAttrs(action, id, who, addr), &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed, Msg: err.Error()})
			return
		}
	}
	d := grants.GrantDecision{ID: id, By: who, Comment: body.Comment, ClientAddress: addr}
	var g grants.Grant
	var err error
	switch action {
	case "approve":
		g, err = a.grants.Approve(r.Context(), d)
	case "deny":
		g, err = a.grants.Deny(r.Context(), d)
	case "revoke":
		g, err = a.grants.Revoke(r.Context(), d)
	}
	if err != nil {
		a.writeGrantError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &g)
}

func grantCallerAttrs(action, id string, who *policy.Identity, addr netip.Addr) recorder.Attrs {
	a := recorder.Attrs{"action": action}
	if id != "" {
		a["grant"] = id // masked, then cut, by JournalRefusal
	}
	who.WriteAttrs(a)
	if addr.IsValid() {
		a["client.address"] = addr.String()
	}
	return a
}

func validGrantState(s grants.GrantState) bool {
	for _, v := range grants.GrantStates {
		if v == s {
			return true
		}
	}
	return false
}

// decodeBody decodes one JSON object of at most maxRequestBody bytes into
// v, refusing unknown fields; example shows what is wanted.
func decodeBody(r *http.Request, v any, example string) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return fmt.Errorf("content type %q: send application/json", truncate(ct, 60))
		}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty request body: send " + example)
		}
		return fmt.Errorf("request body is not what was expected (%s): %v", example, err)
	}
	if dec.More() {
		return errors.New("request body holds more than one JSON value")
	}
	if dec.InputOffset() > maxRequestBody {
		return fmt.Errorf("request body is over %d bytes", maxRequestBody)
	}
	return nil
}
