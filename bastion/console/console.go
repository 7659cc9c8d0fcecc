// Package console is bastion's web console, served by "bastion serve" on
// the API listener under /ui: a person signs in with the configured
// OpenID provider by the authorization-code flow with PKCE, gets a
// console session held in memory, and sees the pages the policy lets
// operators, auditors and approvers see. Everyone else is refused every
// page.
//
// What exists so far: the sign-in, the session and its guard, sign-out,
// the live sessions page, following a session's recorded output,
// killing a session, the recorded sessions' search, details, replay
// and downloads, the grants inbox and the evidence page (see
// docs/console.md).
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/storage"
)

// Limits of the console's state: what signed-in people and strangers can
// make it hold.
const (
	// DefaultMaxSessions bounds the console sessions held; beyond it a
	// new sign-in is refused.
	DefaultMaxSessions = 1024
	// MaxSessionsPerIdentity bounds the console sessions one person
	// holds (browsers, tabs signed in apart); beyond it their new sign-in
	// ends their own session idle the longest.
	MaxSessionsPerIdentity = 8
	// DefaultIdleTimeout ends a console session not used for this long.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultMaxAge ends a console session this long after its sign-in,
	// however busy.
	DefaultMaxAge = 12 * time.Hour
	// MaxPendingLogins bounds the sign-ins started and not completed;
	// beyond it /ui/login refuses new ones until some expire.
	MaxPendingLogins = 256
	// MaxPendingPerAddress bounds the sign-ins under way from one client
	// address, so that one stranger cannot take all of them.
	MaxPendingPerAddress = 16
	// LoginTTL is how long a started sign-in may take.
	LoginTTL = 10 * time.Minute
	// DefaultRatePerAddress and DefaultBurstPerAddress bound the requests
	// from one client address: enough for pages, their files and their
	// live updates; a stranger's flood is answered 429 at once.
	DefaultRatePerAddress  = 10
	DefaultBurstPerAddress = 60
)

// Cookie names. The session cookie is confined to /ui; the sign-in's
// cookie to /ui/callback.
const (
	SessionCookie = "bastion_console"
	LoginCookie   = "bastion_console_login"
)

// Path is where the console is mounted.
const Path = "/ui"

// Options configure [New].
type Options struct {
	// Provider is the configured name of the identity provider people
	// sign in with; Issuer its issuer URL.
	Provider, Issuer string
	// ClientID, ClientSecret ("" for a public client) and RedirectURL are
	// the web client's registration with the provider. RedirectURL is
	// the console's /ui/callback.
	ClientID, ClientSecret, RedirectURL string
	// HTTPClient talks to the provider (discovery, token endpoint); nil
	// means a client with a timeout.
	HTTPClient *http.Client
	// VerifyIDToken checks an ID token for the web client and nonce and
	// maps it to an identity as the API maps bearer tokens.
	VerifyIDToken func(ctx context.Context, provider, raw, clientID, nonce string) (*policy.Identity, error)
	// Policy returns the policy in force: it says who may use the
	// console, at every request.
	Policy func() *policy.Policy
	// Live lists the live SSH sessions.
	Live func() []front.LiveSession
	// Journal appends an event; a sign-in it cannot journal is refused.
	Journal func(ctx context.Context, name string, attrs recorder.Attrs) error
	// Store is the store of this instance's journal in force, for
	// reading: each read takes a snapshot of its own and verifies what it
	// shows with Verifier, the journal's public key, as the CLI's readers
	// do.
	Store    func() storage.Store
	Verifier note.Verifier
	// MemberLog, in a cluster, gives the log of the member that records
	// a live session this member's journal does not hold (its store and
	// key), so that it can be followed here; nil outside a cluster.
	MemberLog func(ctx context.Context, sessionID string) (MemberLog, bool)
	// RecordRead journals a read of the journal (journal.accessed) or an
	// examiner's report (evidence.generated) made through the console by
	// who from the client address client, as the API's POST /v1/reads
	// does with via "console"; nothing is shown when it fails. It refuses
	// anyone who is not one of the policy's auditors or operators.
	RecordRead func(ctx context.Context, who *policy.Identity, client netip.Addr, req certauth.ReadRequest) (*certauth.ReadResponse, error)
	// Kill ends a live session as "bastion sessions kill" does, naming
	// the person; it refuses, and journals the refusal, when they are not
	// one of the policy's operators. An unknown session is an error
	// wrapping front.ErrNoLiveSession.
	Kill func(ctx context.Context, k KillRequest) (front.LiveSession, error)
	// Grants is the store of just-in-time grants, through which the
	// grants page decides as the API does; nil when the bastion keeps
	// none (the page says so).
	Grants *grants.Grants
	// RevokeGrant revokes a grant for an operator signed in to the
	// console, as "bastion grants revoke --operator" does through the
	// admin socket (any grant; the leaf names the person, with
	// operator.verified = console). Nil with Grants nil.
	RevokeGrant func(ctx context.Context, r GrantRevokeRequest) (grants.Grant, error)
	// Witnesses returns the witnesses' state as the server tracks it;
	// nil when none are configured.
	Witnesses func() WitnessState
	// Evidence returns what an examiner's report of this instance's
	// journal is built with, as "bastion evidence" builds one on the
	// bastion's host (the journal, its key, the verification command and
	// its output, the witnesses); the evidence page sets the period and
	// the filters.
	Evidence func() (evidence.Options, error)
	// IdentityRefused says why an identity proved by an ID token issued
	// at iat is refused now (blocked, or revoked since), or "": the
	// console asks at every request, and ends the console session of a
	// person refused. Nil refuses nobody.
	IdentityRefused func(identity string, iat, now time.Time) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RatePerAddress and BurstPerAddress bound the requests of /ui from
	// one client address (an IPv6 /64): zero means DefaultRatePerAddress
	// and DefaultBurstPerAddress, a negative rate no bound.
	RatePerAddress  float64
	BurstPerAddress int
	// MaxSessions, IdleTimeout and MaxAge bound the sessions; zero
	// means the defaults.
	MaxSessions         int
	IdleTimeout, MaxAge time.Duration
	Logger              hclog.Logger
}

// Console is the web console's handler.
type Console struct {
	o Options

	provMu sync.Mutex
	oauth  *oauth2.Config // discovered at the first sign-in

	mu       sync.Mutex
	costs    costs              // the bounds of the costly reads, and what they hold
	refusals refusalBudget      // how many refused sign-ins are journaled
	mux      *http.ServeMux     // the pages behind the guard
	patterns []Route            // what mux serves, in the order registered
	byAddr   *certauth.Limiters // requests by client address

	sessions map[string]*session // by the cookie's value
	pending  map[string]*login   // by state

	follow  *follows // the output streams open
	reports reports  // the examiner's reports made through the console
}

// session is a console session.
type session struct {
	id       *policy.Identity
	who      string // id.String()
	ref      string // a public reference, for the journal and logs
	csrf     string
	created  time.Time
	lastSeen time.Time
	report   *madeReport // the last report made in it (guarded by Console.reports.mu)
}

// login is a sign-in started and not completed.
type login struct {
	verifier, nonce string
	addr            string // the client address that started it (an IPv6 /64)
	expires         time.Time
}

// New returns the console.
func New(o Options) (*Console, error) {
	switch {
	case o.Provider == "" || o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "":
		return nil, errors.New("console: the provider, its issuer, the web client ID and the redirect URL are required")
	case o.VerifyIDToken == nil || o.Policy == nil || o.Live == nil || o.Journal == nil ||
		o.Store == nil || o.Verifier == nil || o.RecordRead == nil || o.Kill == nil:
		return nil, errors.New("console: VerifyIDToken, Policy, Live, Journal, Store, Verifier, RecordRead and Kill are required")
	case o.Grants != nil && o.RevokeGrant == nil:
		return nil, errors.New("console: RevokeGrant is required with Grants")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.MaxSessions = positiveOr(o.MaxSessions, DefaultMaxSessions)
	o.IdleTimeout = positiveOr(o.IdleTimeout, DefaultIdleTimeout)
	o.MaxAge = positiveOr(o.MaxAge, DefaultMaxAge)
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	c := &Console{o: o, mux: http.NewServeMux(), byAddr: certauth.NewLimiters(o.RatePerAddress, o.BurstPerAddress, DefaultRatePerAddress, DefaultBurstPerAddress),
		sessions: map[string]*session{}, pending: map[string]*login{}, follow: newFollows()}
	c.routes()
	return c, nil
}

// random returns 32 random bytes in unpadded base64url.
func random() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// consoleCSP is the Content-Security-Policy of the console's pages:
// scripts and styles from the console's own files only (no inline ones),
// no plugins, no framing, forms to the console only. cspScripts is its
// script-src, which a page may widen (see playerCSP).
const (
	cspScripts = "script-src 'self'"
	consoleCSP = "default-src 'self'; " + cspScripts + "; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

// securityHeaders are set on every response of the console.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// ServeHTTP serves /ui and everything under it.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	if !c.byAddr.Allow(certauth.AddrKey(clientIP(r)), c.o.Now()) {
		w.Header().Set("Retry-After", "1")
		c.page(w, http.StatusTooManyRequests, "Too many requests", pageData{Problem: "Too many requests from your address; wait a moment and try again."})
		return
	}
	switch r.URL.Path {
	case Path + "/login":
		c.methods(w, r, c.login, http.MethodGet)
		return
	case Path + "/callback":
		c.methods(w, r, c.callback, http.MethodGet)
		return
	}
	if strings.HasPrefix(r.URL.Path, Path+"/static/") {
		c.methods(w, r, serveStatic, http.MethodGet)
		return
	}
	s := c.session(r)
	if s == nil {
		if r.Method == http.MethodGet && (r.URL.Path == Path || r.URL.Path == Path+"/") {
			http.Redirect(w, r, Path+"/login", http.StatusSeeOther)
			return
		}
		c.page(w, http.StatusForbidden, "Not signed in", pageData{Problem: "Sign in first.", SignIn: true})
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); r.Method == http.MethodGet || r.Method == http.MethodHead {
		// A read is the signed-in person's own, journaled as theirs: a
		// page of another site (even a sibling of the same registered
		// domain, which a SameSite=Strict cookie does not tell apart) may
		// not make their browser ask for one. Typed or bookmarked
		// addresses say "none"; a link from elsewhere gets a page that
		// links on, from this site.
		if site != "" && site != "same-origin" && site != "none" {
			d := pageData{Problem: "This page was asked for by another site (Sec-Fetch-Site: " + site + "); the console answers only its own pages."}
			if r.Header.Get("Sec-Fetch-Mode") == "navigate" && strings.HasPrefix(r.URL.Path, Path+"/") {
				d.Next = r.URL.RequestURI()
			}
			c.page(w, http.StatusForbidden, "Refused", d)
			return
		}
	} else {
		// Every state-changing request: same origin, and the session's
		// anti-forgery token.
		if why := c.checkCSRF(r, s); why != "" {
			c.page(w, http.StatusForbidden, "Refused", pageData{Problem: why, Who: s.who, CSRF: s.csrf})
			return
		}
	}
	if r.URL.Path == Path+"/logout" {
		c.methods(w, r, func(w http.ResponseWriter, r *http.Request) { c.logout(w, r, s) }, http.MethodPost)
		return
	}
	if why := c.refused(s, c.o.Now()); why != "" {
		c.end(s)
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: Path, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
		c.o.Logger.Warn("console session ended: identity refused", "identity", s.who, "session", s.ref, "why", why)
		c.page(w, http.StatusForbidden, "Signed out", pageData{Problem: "Your identity is refused here (" + why + "); you are signed out.", SignIn: true})
		return
	}
	v := &viewer{session: s, roles: Roles(c.o.Policy(), s.id)}
	if len(v.roles) == 0 {
		c.page(w, http.StatusForbidden, "Not for you", v.signed(pageData{
			Problem: "The console is for the operators, auditors and approvers the policy names; you are none of them.",
		}))
		return
	}
	c.touch(s)
	c.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
}

// A MemberLog is another cluster member's log, for reading a session it
// records: its store, its key, its member ID and its name (origin).
type MemberLog struct {
	Store    storage.Store
	Verifier note.Verifier
	Member   uint16
	Name     string
}

// A viewer is the signed-in person a request of the console is for, and
// the console roles the policy in force gives them.
type viewer struct {
	*session
	roles []string
}

// has says whether v holds one of roles.
func (v *viewer) has(roles ...string) bool {
	for _, r := range roles {
		if slices.Contains(v.roles, r) {
			return true
		}
	}
	return false
}

type viewerKey struct{}

// Console roles, as [Roles] returns them.
const (
	RoleOperator = "operator"
	RoleAuditor  = "auditor"
	RoleApprover = "approver"
)

// handle serves pattern (a [http.ServeMux] pattern under /ui) to the
// viewers who hold one of roles; anyone else signed in is refused (403)
// with nothing of the page's data.
func (c *Console) handle(pattern string, roles []string, h func(http.ResponseWriter, *http.Request, *viewer)) {
	c.patterns = append(c.patterns, Route{Pattern: pattern, Roles: slices.Clone(roles)})
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		v, _ := r.Context().Value(viewerKey{}).(*viewer)
		if v == nil {
			c.page(w, http.StatusForbidden, "Not signed in", pageData{Problem: "Sign in first.", SignIn: true})
			return
		}
		if !v.has(roles...) {
			c.page(w, http.StatusForbidden, "Not for you", v.signed(pageData{
				Problem: "This page is for the " + strings.Join(roles, "s, the ") + "s the policy names; you are not one of them.",
			}))
			return
		}
		h(w, r, v)
	})
}

// A Route is a page or an action of the console behind its guard: its
// [http.ServeMux] pattern ("GET /ui/sessions/{id}") and the console roles
// that may use it.
type Route struct {
	Pattern string
	Roles   []string
}

// Routes lists every page and action behind the guard, with the roles
// that may use it: what a test of the guard walks.
func (c *Console) Routes() []Route { return slices.Clone(c.patterns) }

// routes registers the console's pages, each with the roles that may
// use it.
func (c *Console) routes() {
	everyone := []string{RoleOperator, RoleAuditor, RoleApprover}
	c.handle("GET "+Path+"/{$}", everyone, c.live)
	c.handle("GET "+Path+"/live.json", everyone, c.liveJSON)
	c.handle("GET "+Path+"/sessions/{id}/live", followers, c.followPage)
	c.handle("GET "+Path+"/sessions/{id}/live/stream", followers, c.followStream)
	// Everyone with a role reaches the kill, so that a refusal is
	// journaled as the admin socket's are (Options.Kill refuses).
	c.handle("POST "+Path+"/sessions/{id}/kill", everyone, c.kill)
	c.sessionRoutes()
	c.grantRoutes(everyone)
	c.evidenceRoutes()
	c.mux.HandleFunc(Path+"/", func(w http.ResponseWriter, r *http.Request) {
		v, _ := r.Context().Value(viewerKey{}).(*viewer)
		d := pageData{Problem: "There is no such page."}
		if v != nil {
			d = v.signed(d)
		}
		c.page(w, http.StatusNotFound, "Not found", d)
	})
}

func (c *Console) methods(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, allowed ...string) {
	for _, m := range allowed {
		if r.Method == m || m == http.MethodGet && r.Method == http.MethodHead {
			h(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	c.page(w, http.StatusMethodNotAllowed, "Method not allowed", pageData{Problem: "This page does not take " + r.Method + "."})
}

// Roles returns the console roles the policy gives id: "operator",
// "auditor", "approver", in that order; none means no page.
func Roles(p *policy.Policy, id *policy.Identity) []string {
	var out []string
	if p.Operator(id) {
		out = append(out, RoleOperator)
	}
	if p.Auditor(id) {
		out = append(out, RoleAuditor)
	}
	if p.Approver(id) {
		out = append(out, RoleApprover)
	}
	return out
}

// checkCSRF returns why a state-changing request is refused, or "".
func (c *Console) checkCSRF(r *http.Request, s *session) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return "a request from another site (Sec-Fetch-Site: " + site + ") cannot change anything here"
	}
	// With Referrer-Policy: no-referrer a browser sends "Origin: null"
	// even from the console's own pages: then Sec-Fetch-Site must say
	// same-origin.
	switch origin := r.Header.Get("Origin"); {
	case origin == "null" && r.Header.Get("Sec-Fetch-Site") != "same-origin":
		return "a request from an unknown origin cannot change anything here"
	case origin != "" && origin != "null" && origin != "https://"+r.Host:
		return "a request from another origin cannot change anything here"
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	token := r.Header.Get("X-CSRF-Token")
	if token == "" {
		if err := r.ParseForm(); err == nil {
			token = r.PostForm.Get("csrf")
		}
	}
	if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) != 1 {
		return "the anti-forgery token is missing or wrong: reload the page and try again"
	}
	return ""
}

// session returns the request's live console session, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[ck.Value]
	if !ok {
		return nil
	}
	if c.expiredLocked(s, now) {
		c.forgetLocked(ck.Value)
		return nil
	}
	return s
}

// touch notes a use of s that passed the guard: only such a request keeps
// a console session from going idle (a refused one, such as another
// site's, does not).
func (c *Console) touch(s *session) {
	now := c.o.Now()
	c.mu.Lock()
	s.lastSeen = now
	c.mu.Unlock()
}

func (c *Console) expiredLocked(s *session, now time.Time) bool {
	return !now.Before(s.lastSeen.Add(c.o.IdleTimeout)) || !now.Before(s.created.Add(c.o.MaxAge))
}

// oauthConfig discovers the provider at first use.
func (c *Console) oauthConfig(ctx context.Context) (*oauth2.Config, error) {
	c.provMu.Lock()
	defer c.provMu.Unlock()
	if c.oauth != nil {
		return c.oauth, nil
	}
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, c.o.HTTPClient), c.o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover identity provider %q: %w", c.o.Provider, err)
	}
	c.oauth = &oauth2.Config{
		ClientID: c.o.ClientID, ClientSecret: c.o.ClientSecret, RedirectURL: c.o.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{gooidc.ScopeOpenID, "profile", "email"},
	}
	return c.oauth, nil
}

// login starts a sign-in: the state, nonce and PKCE verifier stay here,
// and the browser gets the state in a cookie that binds the callback to
// it.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	cfg, err := c.oauthConfig(r.Context())
	if err != nil {
		c.o.Logger.Error("console sign-in", "error", err)
		c.page(w, http.StatusBadGateway, "Sign-in unavailable", pageData{Problem: "The identity provider cannot be reached; try again later."})
		return
	}
	state, l := random(), &login{verifier: oauth2.GenerateVerifier(), nonce: random(), addr: certauth.AddrKey(clientIP(r))}
	now := c.o.Now()
	l.expires = now.Add(LoginTTL)
	c.mu.Lock()
	for k, p := range c.pending {
		if !now.Before(p.expires) {
			delete(c.pending, k)
		}
	}
	full, mine := len(c.pending) >= MaxPendingLogins, 0
	for _, p := range c.pending {
		if p.addr == l.addr {
			mine++
		}
	}
	full = full || mine >= MaxPendingPerAddress
	if !full {
		c.pending[state] = l
	}
	c.mu.Unlock()
	if full {
		c.page(w, http.StatusServiceUnavailable, "Sign-in unavailable", pageData{Problem: "Too many sign-ins are under way; try again in a few minutes."})
		return
	}
	// SameSite=Lax: the provider sends the browser back to /ui/callback
	// from its own site, a top-level navigation that a Strict cookie
	// would not follow.
	http.SetCookie(w, &http.Cookie{
		Name: LoginCookie, Value: state, Path: Path + "/callback", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(LoginTTL / time.Second),
	})
	http.Redirect(w, r, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(l.verifier), gooidc.Nonce(l.nonce)), http.StatusSeeOther)
}

// callback completes a sign-in.
func (c *Console) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	ck, cerr := r.Cookie(LoginCookie)
	http.SetCookie(w, &http.Cookie{Name: LoginCookie, Path: Path + "/callback", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	c.mu.Lock()
	l, ok := c.pending[state]
	if ok && cerr == nil && subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) == 1 {
		delete(c.pending, state)
	} else {
		ok = false
	}
	c.mu.Unlock()
	now := c.o.Now()
	switch {
	case !ok || state == "":
		c.page(w, http.StatusBadRequest, "Sign-in refused", pageData{Problem: "This sign-in was not started in this browser, or has expired, or was used already.", SignIn: true})
		return
	case !now.Before(l.expires):
		c.page(w, http.StatusBadRequest, "Sign-in refused", pageData{Problem: "This sign-in took too long.", SignIn: true})
		return
	case q.Get("error") != "":
		c.page(w, http.StatusForbidden, "Sign-in refused", pageData{Problem: "The identity provider refused the sign-in: " + q.Get("error") + ": " + q.Get("error_description"), SignIn: true})
		return
	}
	cfg, err := c.oauthConfig(r.Context())
	if err != nil {
		c.page(w, http.StatusBadGateway, "Sign-in unavailable", pageData{Problem: "The identity provider cannot be reached; try again later."})
		return
	}
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, c.o.HTTPClient)
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(l.verifier))
	if err != nil {
		c.o.Logger.Info("console sign-in: code exchange failed", "error", err)
		c.page(w, http.StatusForbidden, "Sign-in refused", pageData{Problem: "The identity provider did not redeem the sign-in's code.", SignIn: true})
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		c.page(w, http.StatusForbidden, "Sign-in refused", pageData{Problem: "The identity provider sent no ID token.", SignIn: true})
		return
	}
	id, err := c.o.VerifyIDToken(r.Context(), c.o.Provider, raw, c.o.ClientID, l.nonce)
	if err != nil {
		c.page(w, http.StatusForbidden, "Sign-in refused", pageData{Problem: "The ID token was refused: " + err.Error(), SignIn: true})
		return
	}
	s := &session{id: id, who: id.String(), ref: random()[:16], csrf: random(), created: now, lastSeen: now}
	roles := Roles(c.o.Policy(), id)
	rolesText := strings.Join(roles, ",")
	who := recorder.Attrs{"identity": s.who, "provider": id.Provider, "subject": id.Subject, "client": clientAddr(r)}
	// refuse journals a refused sign-in (no console session is made,
	// no cookie given) and answers it.
	refuse := func(code int, reason, problem string) {
		attrs := maps.Clone(who)
		attrs["reason"] = reason
		attrs["error"] = problem
		if n, ok := c.refusals.take(); !ok {
			// Over the budget: logged, and counted in the next leaf.
			c.o.Logger.Warn("console sign-in refused (not journaled: over the budget)", "identity", s.who, "reason", reason)
		} else {
			if n > 0 {
				attrs["refusals_not_journaled"] = strconv.FormatInt(n, 10)
			}
			if err := c.o.Journal(r.Context(), events.ConsoleRefused, attrs); err != nil {
				c.o.Logger.Error("console sign-in: journal a refusal", "error", err)
			}
		}
		c.o.Logger.Warn("console sign-in refused", "identity", s.who, "reason", reason)
		c.page(w, code, "Sign-in refused", pageData{Problem: problem, SignIn: reason != events.ReasonNotConsoleRole})
	}
	if why := c.refused(s, now); why != "" {
		refuse(http.StatusForbidden, events.ReasonIdentityRevoked, "Your identity is refused here: "+why+".")
		return
	}
	if len(roles) == 0 {
		// Nothing is held for a person the console has no page for: a
		// sign-in costs them a leaf, never someone else's session.
		refuse(http.StatusForbidden, events.ReasonNotConsoleRole, "The console is for the operators, auditors and approvers the policy names; "+s.who+" is none of them.")
		return
	}
	// The session is held before its sign-in is journaled (so that the
	// bounds hold however many sign-ins finish at once), and given to
	// the browser only after.
	key := random()
	if !c.hold(key, s, now) {
		refuse(http.StatusServiceUnavailable, events.ReasonConsoleFull, fmt.Sprintf("The console holds %d sessions, the most it may: try again when some have ended.", c.o.MaxSessions))
		return
	}
	attrs := maps.Clone(who)
	attrs["console.roles"], attrs["console.session"] = rolesText, s.ref
	if err := c.o.Journal(r.Context(), events.ConsoleSignedIn, attrs); err != nil {
		c.end(s)
		c.o.Logger.Error("console sign-in: journal", "error", err)
		c.page(w, http.StatusServiceUnavailable, "Sign-in unavailable", pageData{Problem: "The sign-in could not be journaled, so it is refused; try again later."})
		return
	}
	c.o.Logger.Info("console sign-in", "identity", s.who, "roles", rolesText, "session", s.ref)
	// SameSite=Strict: no other site's page can make the browser send
	// it. This answer is the end of a navigation that came from the
	// provider's site, so the browser would not send a Strict cookie on a
	// redirect from here: the page moves on to /ui/ by itself instead, a
	// navigation from this site.
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: key, Path: Path, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	c.page(w, http.StatusOK, "Signed in", pageData{Who: s.who, CSRF: s.csrf, Continue: true})
}

// RefusalsPerSecond and RefusalBurst bound the refused sign-ins
// journaled (console.refused): beyond them a refusal is logged, and the
// next leaf counts those not journaled.
const (
	RefusalsPerSecond = 1
	RefusalBurst      = 30
)

// refusalBudget is the budget of refused sign-ins journaled.
type refusalBudget struct {
	mu      sync.Mutex
	lim     *rate.Limiter
	dropped int64 // refusals not journaled since the last one that was
}

// take says whether a refusal may be journaled now and, if so, how many
// were not since the last that was.
func (b *refusalBudget) take() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim == nil {
		b.lim = rate.NewLimiter(RefusalsPerSecond, RefusalBurst)
	}
	if !b.lim.Allow() {
		b.dropped++
		return 0, false
	}
	n := b.dropped
	b.dropped = 0
	return n, true
}

// hold keeps s under key, within the bounds: a person holds at most
// MaxSessionsPerIdentity console sessions (a new sign-in ends their own
// idle the longest), and the console at most MaxSessions (beyond it a
// new sign-in is refused: nobody's session is ended for someone else's).
func (c *Console) hold(key string, s *session, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var mine []string
	for k, o := range c.sessions {
		switch {
		case c.expiredLocked(o, now):
			c.forgetLocked(k)
		case o.who == s.who:
			mine = append(mine, k)
		}
	}
	slices.SortFunc(mine, func(a, b string) int { return c.sessions[a].lastSeen.Compare(c.sessions[b].lastSeen) })
	for len(mine) >= MaxSessionsPerIdentity {
		c.forgetLocked(mine[0])
		mine = mine[1:]
	}
	if len(c.sessions) >= c.o.MaxSessions {
		return false
	}
	c.sessions[key] = s
	return true
}

// refused says why the person of console session s is refused at now
// (their identity blocked, or revoked since the sign-in's token was
// issued), or "".
func (c *Console) refused(s *session, now time.Time) string {
	if c.o.IdentityRefused == nil {
		return ""
	}
	return c.o.IdentityRefused(s.who, s.id.IssuedAt, now)
}

// forgetLocked forgets the console session held under key, and what it
// holds (its report); c.mu must be held.
func (c *Console) forgetLocked(key string) {
	s := c.sessions[key]
	delete(c.sessions, key)
	if s == nil {
		return
	}
	c.reports.mu.Lock()
	if i := slices.Index(c.reports.held, s.report); s.report != nil && i >= 0 {
		c.reports.heldBytes -= int64(len(s.report.Zip))
		c.reports.held = slices.Delete(c.reports.held, i, i+1)
	}
	s.report = nil
	c.reports.mu.Unlock()
}

// end forgets the console session s.
func (c *Console) end(s *session) {
	c.mu.Lock()
	for k, o := range c.sessions {
		if o == s {
			c.forgetLocked(k)
		}
	}
	c.mu.Unlock()
}

// logout ends s.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.end(s)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: Path, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	if err := c.o.Journal(r.Context(), events.ConsoleSignedOut, recorder.Attrs{
		"identity": s.who, "provider": s.id.Provider, "subject": s.id.Subject, "console.session": s.ref, "client": clientAddr(r),
	}); err != nil {
		// The session is ended all the same: ending one is always safe.
		c.o.Logger.Error("console sign-out: journal", "error", err)
	}
	c.page(w, http.StatusOK, "Signed out", pageData{Problem: "You are signed out.", SignIn: true})
}

// clientIP is the request's client address, or the zero Addr.
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientAddr is clientIP as the journal's "client" attribute writes it:
// the request's remote address as it is when it is not an IP address and
// port.
func clientAddr(r *http.Request) string {
	if a := clientIP(r); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// Provider is the configured name of the identity provider people sign
// in with.
func (c *Console) Provider() string { return c.o.Provider }

// Sessions returns how many console sessions are held (expired ones
// included until they are next looked at).
func (c *Console) Sessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}
