package certauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder/events"
)

// maxRequestBody bounds a certificate request's JSON body.
const maxRequestBody = 64 << 10

// APIOptions configure [NewAPI].
type APIOptions struct {
	Issuer *Issuer
	// CA returns the answer to GET /v1/ca (it may change on rotation).
	CA func() *CAResponse
	// KRL returns the current KRL of revoked certificates, for
	// GET /v1/krl; nil serves none.
	KRL func() ([]byte, error)
	// Grants, if set, serves the just-in-time grant endpoints
	// (/v1/grants); without it they answer 404 grants_not_enabled.
	Grants *grants.Grants
	// Reads, if set, serves POST /v1/reads: it journals a reader's read
	// in the instance's log (see [ReadRequest]); without it the endpoint
	// answers 404 reads_not_enabled.
	Reads RecordReadFunc
	// RatePerIdentity and RatePerAddress are the sustained certificate
	// and grant requests per second allowed to one identity and one
	// client address (the two kinds share the limits); the bursts are
	// BurstPerIdentity and BurstPerAddress. Zero rates
	// take the defaults (1/s burst 10 per identity, 5/s burst 20 per
	// address); a negative rate disables that limit.
	RatePerIdentity  float64
	BurstPerIdentity int
	RatePerAddress   float64
	BurstPerAddress  int
	Logger           hclog.Logger
	Now              func() time.Time
}

// API is the HTTPS API's handler: POST /v1/certificates, GET /v1/ca,
// GET /v1/krl, the grant endpoints under /v1/grants, and POST /v1/reads.
type API struct {
	issuer  *Issuer
	ca      func() *CAResponse
	krl     func() ([]byte, error)
	grants  *grants.Grants
	reads   RecordReadFunc
	log     hclog.Logger
	now     func() time.Time
	byAddr  *Limiters
	byIdent *Limiters
	mux     *http.ServeMux
}

// NewAPI returns the API handler.
func NewAPI(opts APIOptions) *API {
	a := &API{issuer: opts.Issuer, ca: opts.CA, krl: opts.KRL, grants: opts.Grants, reads: opts.Reads, log: opts.Logger, now: opts.Now}
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.byAddr = NewLimiters(opts.RatePerAddress, opts.BurstPerAddress, 5, 20)
	a.byIdent = NewLimiters(opts.RatePerIdentity, opts.BurstPerIdentity, 1, 10)
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("POST /v1/certificates", a.certificates)
	a.mux.HandleFunc("GET /v1/ca", a.getCA)
	a.mux.HandleFunc("GET /v1/krl", a.getKRL)
	a.grantRoutes()
	a.mux.HandleFunc("POST /v1/reads", a.postRead)
	for path, allow := range map[string]string{"/v1/certificates": "POST", "/v1/reads": "POST", "/v1/ca": "GET, HEAD", "/v1/krl": "GET, HEAD"} {
		a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+path+": use "+allow)
		})
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: the API has POST /v1/certificates, GET /v1/ca, GET /v1/krl, /v1/grants and POST /v1/reads")
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	a.mux.ServeHTTP(w, r)
}

func (a *API) getCA(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.ca())
}

// getKRL serves the OpenSSH KRL of revoked certificates, for servers that
// fetch it (for example every minute, with curl --pinnedpubkey) into their
// RevokedKeys file.
func (a *API) getKRL(w http.ResponseWriter, r *http.Request) {
	if a.krl == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server keeps no KRL")
		return
	}
	data, err := a.krl()
	if err != nil {
		a.log.Error("read the KRL", "error", err)
		writeError(w, http.StatusInternalServerError, "internal", "the KRL cannot be read; the bastion's log says why")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="revoked.krl"`)
	w.Write(data)
}

func (a *API) certificates(w http.ResponseWriter, r *http.Request) {
	addr := clientAddr(r)
	now := a.now()
	if !a.byAddr.Allow(AddrKey(addr), now) {
		a.limited(w, r, addr, "address "+AddrKey(addr))
		return
	}
	req := IssueRequest{ClientAddress: addr}
	token, tokenErr := bearer(r)
	req.Token = token
	body, bodyErr := decodeRequest(r)
	if tokenErr == nil && bodyErr == nil {
		req.PublicKey, req.Logins, req.Ticket = body.PublicKey, body.Logins, body.Ticket
		if body.TTL != "" {
			ttl, err := time.ParseDuration(body.TTL)
			if err != nil || ttl <= 0 {
				bodyErr = fmt.Errorf("ttl %q is not a positive duration such as \"5m\"", body.TTL)
			}
			req.TTL = ttl
		}
	}
	if tokenErr != nil || bodyErr != nil {
		// Refused before any token check: journal it like any refusal.
		msg := errors.Join(tokenErr, bodyErr).Error()
		reason := events.ReasonRequestMalformed
		status := http.StatusBadRequest
		if tokenErr != nil {
			reason, status = events.ReasonTokenMissing, http.StatusUnauthorized
		}
		if err := a.issuer.refuse(r.Context(), &Refusal{Status: status, Reason: reason, Msg: msg}, addr); isJournalFailure(err) {
			writeError(w, http.StatusServiceUnavailable, events.ReasonJournalUnavailable, err.Error())
			return
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bastion"`)
		}
		writeError(w, status, reason, msg)
		return
	}
	out, err := a.issuer.issueLimited(r.Context(), req, func(identity string) (bool, bool) {
		now := a.now()
		if a.byIdent.Allow(identity, now) {
			return true, false
		}
		return false, a.byIdent.FirstRefusal(identity, now)
	})
	if err != nil {
		var rf *Refusal
		if !errors.As(err, &rf) {
			rf = &Refusal{Status: http.StatusInternalServerError, Reason: "internal", Msg: err.Error(), Public: "internal error"}
		}
		if rf.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bastion", error="invalid_token"`)
		}
		if rf.Reason == events.ReasonRateLimited {
			w.Header().Set("Retry-After", "1")
		}
		msg := rf.Msg
		if rf.Public != "" {
			msg = rf.Public
		}
		writeError(w, rf.Status, rf.Reason, msg)
		return
	}
	ca := a.ca()
	resp := &CertificateResponse{
		Certificate:     strings.TrimSpace(string(ssh.MarshalAuthorizedKey(out.Cert))),
		Serial:          out.Record.Serial,
		KeyID:           out.Record.KeyID,
		Identity:        out.Record.Identity,
		Principals:      out.Record.Principals,
		ValidAfter:      out.Record.ValidAfter.UTC(),
		ValidBefore:     out.Record.ValidBefore.UTC(),
		Extensions:      nonNil(out.Record.Extensions),
		SourceAddresses: out.Record.SourceAddresses,
		Rule:            out.Record.Rule,
		KnownHosts:      ca.KnownHosts,
		SSHAddress:      ca.SSHAddress,
	}
	writeJSON(w, http.StatusOK, resp)
}

// limited answers a rate-limited request. The first refusal of a limiter
// in each minute is journaled; the rest only logged, so a flood cannot fill
// the journal.
func (a *API) limited(w http.ResponseWriter, r *http.Request, addr netip.Addr, who string) {
	msg := "too many certificate requests from " + who + ": retry later"
	if a.byAddr.FirstRefusal(who, a.now()) {
		if err := a.issuer.refuse(r.Context(), &Refusal{Status: http.StatusTooManyRequests, Reason: events.ReasonRateLimited, Msg: msg}, addr); isJournalFailure(err) {
			writeError(w, http.StatusServiceUnavailable, events.ReasonJournalUnavailable, err.Error())
			return
		}
	} else {
		a.log.Warn("certificate request rate-limited", "who", who)
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, events.ReasonRateLimited, msg)
}

func isJournalFailure(err error) bool {
	var rf *Refusal
	return errors.As(err, &rf) && rf.Reason == events.ReasonJournalUnavailable
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func bearer(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", errors.New("no bearer token: send the OIDC token as \"Authorization: Bearer TOKEN\"")
	}
	if len(h) > 1 {
		return "", errors.New("more than one Authorization header")
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", errors.New("the Authorization header is not \"Bearer TOKEN\"")
	}
	return strings.TrimSpace(tok), nil
}

func decodeRequest(r *http.Request) (*CertificateRequest, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, fmt.Errorf("content type %q: send application/json", ct)
		}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody+1))
	dec.DisallowUnknownFields()
	var body CertificateRequest
	if err := dec.Decode(&body); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty request body: send {\"public_key\": \"ssh-ed25519 AAAA…\"}")
		}
		return nil, fmt.Errorf("request body is not a certificate request: %v", err)
	}
	if dec.More() {
		return nil, errors.New("request body holds more than one JSON value")
	}
	if dec.InputOffset() > maxRequestBody {
		return nil, fmt.Errorf("request body is over %d bytes", maxRequestBody)
	}
	return &body, nil
}

// AddrKey is the rate-limiting key of a client address: the address, or
// for IPv6 its /64, which one client usually holds whole.
func AddrKey(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// clientAddr is the request's peer address. Forwarded headers are never
// trusted: the API is meant to be reached directly.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, reason, msg string) {
	writeJSON(w, status, &ErrorResponse{Error: msg, Reason: reason})
}

// maxLimiters bounds the keys limiters remember. When that many are busy,
// new keys share one bucket: a flood of addresses slows itself down rather
// than growing the map.
const maxLimiters = 1 << 16

// Limiters is a token bucket per key (a client address, an identity),
// forgetting idle keys; its memory is bounded by maxLimiters keys.
type Limiters struct {
	limit rate.Limit
	burst int
	off   bool

	mu      sync.Mutex
	m       map[string]*limiterEntry
	swept   time.Time
	refused map[string]time.Time // key → last journaled refusal
}

type limiterEntry struct {
	l    *rate.Limiter
	seen time.Time
}

// NewLimiters allows perSec requests a second per key with bursts of
// burst: defRate and defBurst when zero; a negative perSec allows all.
func NewLimiters(perSec float64, burst int, defRate float64, defBurst int) *Limiters {
	if perSec == 0 {
		perSec = defRate
	}
	if burst <= 0 {
		burst = defBurst
	}
	return &Limiters{limit: rate.Limit(perSec), burst: burst, off: perSec < 0, m: map[string]*limiterEntry{}, refused: map[string]time.Time{}}
}

// Allow takes a token of key's bucket at now, if it has one.
func (ls *Limiters) Allow(key string, now time.Time) bool {
	if ls.off {
		return true
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if now.Sub(ls.swept) > time.Minute {
		ls.sweep(now, 10*time.Minute)
	}
	e := ls.m[key]
	if e == nil && len(ls.m) >= maxLimiters {
		ls.sweep(now, time.Minute)
		if len(ls.m) >= maxLimiters {
			key = "(overflow)"
			e = ls.m[key]
		}
	}
	if e == nil {
		e = &limiterEntry{l: rate.NewLimiter(ls.limit, ls.burst)}
		ls.m[key] = e
	}
	e.seen = now
	return e.l.AllowN(now, 1)
}

// sweep forgets keys idle for longer than idle; ls.mu must be held.
func (ls *Limiters) sweep(now time.Time, idle time.Duration) {
	for k, e := range ls.m {
		if now.Sub(e.seen) > idle {
			delete(ls.m, k)
		}
	}
	for k, t := range ls.refused {
		if now.Sub(t) > time.Minute {
			delete(ls.refused, k)
		}
	}
	ls.swept = now
}

// FirstRefusal reports whether key has had no journaled refusal in the
// last minute, and notes one now.
func (ls *Limiters) FirstRefusal(key string, now time.Time) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if t, ok := ls.refused[key]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if _, ok := ls.refused[key]; !ok && len(ls.refused) >= maxLimiters {
		// As many keys as the table holds were refused within the
		// minute: a flood of addresses, whose refusals are only logged
		// (the journal's own refusal budget bounds it anyway).
		ls.sweep(now, 10*time.Minute)
		if len(ls.refused) >= maxLimiters {
			return false
		}
	}
	ls.refused[key] = now
	return true
}
