package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/go-hclog"

	"github.com/bastionhq/bastion/recorder/events"
)

// Limits on talking to identity providers.
const (
	// oidcHTTPTimeout bounds one discovery or key set request.
	oidcHTTPTimeout = 15 * time.Second
	// oidcMaxResponse caps a discovery document or key set.
	oidcMaxResponse = 1 << 20
	// oidcBackoffMin and oidcBackoffMax bound the wait before a failed
	// discovery is tried again; it doubles with each failure in a row.
	oidcBackoffMin = time.Second
	oidcBackoffMax = 30 * time.Second
	// oidcKeySetInterval is the least time between two requests for a
	// provider's key set. go-oidc refetches the key set whenever a token's
	// key is not in its cache; without this floor every token with a
	// made-up "kid" (or a bad signature) would cost a request to the
	// provider. A provider that starts signing with a new key is seen at
	// most this long after the previous fetch.
	oidcKeySetInterval = 5 * time.Second
)

// oidcProvider is one configured identity provider and what the bastion
// learned from it.
type oidcProvider struct {
	cfg    ProviderConfig
	client *http.Client // cfg.HTTPClient (or a default) over keys
	keys   *oidcKeyWatch
	now    func() time.Time
	log    hclog.Logger

	// ready is the go-oidc verifier, set once discovery has succeeded and
	// never changed after: the hot path reads it without a lock.
	ready atomic.Pointer[gooidc.IDTokenVerifier]

	mu sync.Mutex // guards attempt and failures
	// attempt is the discovery in flight, or the last one, which failed.
	attempt *oidcDiscovery
	// failures counts discoveries failed in a row, for the backoff.
	failures int
}

// oidcDiscovery is one attempt at discovery. Its goroutine sets err and
// retryAt (or the provider's ready verifier) and then closes done.
type oidcDiscovery struct {
	done    chan struct{}
	err     *TokenError
	retryAt time.Time
}

func (d *oidcDiscovery) finished() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func newOIDCProvider(cfg ProviderConfig, now func() time.Time, log hclog.Logger) *oidcProvider {
	var client http.Client
	if cfg.HTTPClient != nil {
		client = *cfg.HTTPClient
	}
	if client.Timeout == 0 {
		client.Timeout = oidcHTTPTimeout
	}
	next := client.Transport
	if next == nil {
		next = oidcDefaultTransport
	}
	keys := &oidcKeyWatch{next: next, now: now, log: log}
	client.Transport = keys
	if client.CheckRedirect == nil {
		// Follow redirects only where the issuer itself may be: https,
		// or http on a loopback address.
		client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if req.URL.Scheme != "https" && (req.URL.Scheme != "http" || !oidcLoopbackHost(req.URL.Hostname())) {
				return fmt.Errorf("refusing a redirect to %s: an identity provider is reached over https", req.URL.Redacted())
			}
			return nil
		}
	}
	return &oidcProvider{cfg: cfg, client: &client, keys: keys, now: now, log: log}
}

// oidcDefaultTransport is http.DefaultTransport with a bound on the wait
// for response headers.
var oidcDefaultTransport = func() http.RoundTripper {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t = t.Clone()
	t.ResponseHeaderTimeout = oidcHTTPTimeout
	return t
}()

// verifier returns the provider's go-oidc verifier, discovering the provider
// first if no earlier attempt succeeded. Concurrent callers share one
// attempt; during the backoff after a failure they get its error at once.
// Discovery runs in its own goroutine, bounded by oidcHTTPTimeout, so that a
// caller that gives up (ctx) does not fail the attempt for the others.
func (p *oidcProvider) verifier(ctx context.Context) (*gooidc.IDTokenVerifier, *TokenError) {
	if idv := p.ready.Load(); idv != nil {
		return idv, nil
	}
	p.mu.Lock()
	if idv := p.ready.Load(); idv != nil {
		p.mu.Unlock()
		return idv, nil
	}
	d := p.attempt
	if d == nil || d.finished() && !p.now().Before(d.retryAt) {
		d = &oidcDiscovery{done: make(chan struct{})}
		p.attempt = d
		go p.discover(d)
	}
	p.mu.Unlock()

	select {
	case <-d.done:
		if idv := p.ready.Load(); idv != nil {
			return idv, nil
		}
		return nil, d.err
	case <-ctx.Done():
		return nil, oidcRefuse(events.ReasonProviderUnavailable, p.cfg.Name, "gave up waiting for the discovery document of identity provider %q: %w", p.cfg.Name, ctx.Err())
	}
}

func (p *oidcProvider) discover(d *oidcDiscovery) {
	defer close(d.done)
	ctx, cancel := context.WithTimeout(gooidc.ClientContext(context.Background(), p.client), oidcHTTPTimeout)
	defer cancel()
	idv, terr := p.discoverOnce(ctx)

	p.mu.Lock()
	defer p.mu.Unlock()
	if terr == nil {
		p.failures = 0
		p.ready.Store(idv)
		p.log.Info("identity provider discovered", "issuer", p.cfg.Issuer)
		return
	}
	p.failures++
	wait := oidcBackoffMax
	if p.failures < 6 {
		wait = min(oidcBackoffMin<<(p.failures-1), oidcBackoffMax)
	}
	d.retryAt = p.now().Add(wait)
	d.err = &TokenError{Reason: terr.Reason, Provider: terr.Provider, Err: &oidcCause{
		msg:   fmt.Sprintf("%s (next attempt after %s)", terr.Error(), d.retryAt.UTC().Format(time.RFC3339)),
		cause: terr.Err,
	}}
	p.log.Warn("identity provider discovery failed", "issuer", p.cfg.Issuer, "failures", p.failures, "retry_in", wait, "error", terr.Error())
}

func (p *oidcProvider) discoverOnce(ctx context.Context) (*gooidc.IDTokenVerifier, *TokenError) {
	name := p.cfg.Name
	prov, err := gooidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		var mismatch *gooidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return nil, &TokenError{Reason: events.ReasonProviderMisconfigured, Provider: name, Err: &oidcCause{
				msg: fmt.Sprintf("identity provider %q calls itself %s in its discovery document, not %q as configured: the bastion's configuration or the provider is wrong",
					name, oidcQuote(mismatch.Discovered), p.cfg.Issuer),
				cause: err,
			}}
		}
		return nil, &TokenError{Reason: events.ReasonProviderUnavailable, Provider: name, Err: &oidcCause{
			msg:   oidcClip(fmt.Sprintf("cannot fetch the discovery document of identity provider %q: %v", name, err)),
			cause: err,
		}}
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := prov.Claims(&meta); err != nil || meta.JWKSURL == "" {
		return nil, oidcRefuse(events.ReasonProviderUnavailable, name, "the discovery document of identity provider %q has no jwks_uri", name)
	}
	u, err := url.Parse(meta.JWKSURL)
	if err != nil || !(u.Scheme == "https" || u.Scheme == "http" && oidcLoopbackHost(u.Hostname())) || u.Host == "" {
		return nil, oidcRefuse(events.ReasonProviderUnavailable, name, "the discovery document of identity provider %q has a jwks_uri %s that is not an https URL", name, oidcQuote(meta.JWKSURL))
	}
	p.keys.watch(u)

	// The key set's context only carries the HTTP client: go-oidc fetches
	// keys in the background with it, long after discovery is done.
	keySet := &oidcKeySet{remote: gooidc.NewRemoteKeySet(gooidc.ClientContext(context.Background(), p.client), meta.JWKSURL)}
	return gooidc.NewVerifier(p.cfg.Issuer, keySet, &gooidc.Config{
		SupportedSigningAlgs: p.cfg.Algorithms,
		// go-oidc takes one client ID; a provider may have several
		// audiences, which Verify checks.
		SkipClientIDCheck: true,
		// go-oidc compares "exp" with no leeway and "nbf" with a fixed
		// five minutes; Verify checks both (and "iat") with the
		// configured clock skew, so that a token has one verdict.
		SkipExpiryCheck: true,
		Now:             p.now,
	}), nil
}

// oidcKeySet is go-oidc's RemoteKeySet, reporting the outcome of the
// signature check to Verify through the context (go-oidc flattens the
// error into text).
type oidcKeySet struct {
	remote *gooidc.RemoteKeySet
}

type oidcSigOutcomeKey struct{}

// oidcSigOutcome is what oidcKeySet saw: whether go-oidc got as far as the
// signature and, if so, the key set's error.
type oidcSigOutcome struct {
	checked bool
	err     error
}

func (k *oidcKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if out, ok := ctx.Value(oidcSigOutcomeKey{}).(*oidcSigOutcome); ok {
		out.checked, out.err = true, err
	}
	return payload, err
}

// oidcKeyWatch is the HTTP transport under one provider's requests. It caps
// response sizes, remembers the key IDs of the key set it last fetched (so
// that Verify can tell a key the provider does not publish from a bad
// signature, which go-oidc does not), and answers requests for the key set
// from memory for oidcKeySetInterval after each fetch, failed or not.
type oidcKeyWatch struct {
	next http.RoundTripper
	now  func() time.Time
	log  hclog.Logger

	mu      sync.Mutex // guards the fields below
	url     string     // the key set's URL, once discovered
	fetched time.Time  // when the key set was last requested
	body    []byte     // the last key set fetched
	kids    map[string]bool
	err     error // the last request's error, if it failed
}

func (w *oidcKeyWatch) watch(u *url.URL) {
	w.mu.Lock()
	w.url = u.String()
	w.mu.Unlock()
}

// lists reports whether the last key set fetched has a key with ID kid.
func (w *oidcKeyWatch) lists(kid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kids[kid]
}

func (w *oidcKeyWatch) fetchedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fetched
}

func (w *oidcKeyWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	// A redirect's request carries the response that caused it: the key
	// set request is the first of the chain.
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	w.mu.Lock()
	if req.Method != http.MethodGet || w.url == "" || first.URL.String() != w.url {
		w.mu.Unlock()
		resp, err := w.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		resp.Body = &oidcCappedBody{ReadCloser: resp.Body, left: oidcMaxResponse}
		return resp, nil
	}
	if req == first && !w.fetched.IsZero() && w.now().Sub(w.fetched) < oidcKeySetInterval {
		body, err := w.body, w.err
		w.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return oidcJSONResponse(req, body), nil
	}
	w.mu.Unlock()

	resp, err := w.next.RoundTrip(req)
	if err == nil && resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "" {
		return resp, nil // the client follows it, and the next hop comes back here
	}
	body, kids, err := oidcReadKeySet(resp, err)

	w.mu.Lock()
	defer w.mu.Unlock()
	w.fetched, w.err = w.now(), err
	if err != nil {
		w.log.Warn("cannot fetch the key set", "url", w.url, "error", err)
		return nil, err
	}
	w.body, w.kids = body, kids
	w.log.Debug("fetched the key set", "url", w.url, "keys", len(kids))
	return oidcJSONResponse(req, body), nil
}

// oidcReadKeySet reads a key set response and the key IDs in it.
func oidcReadKeySet(resp *http.Response, err error) ([]byte, map[string]bool, error) {
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("key set request answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oidcMaxResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read the key set: %w", err)
	}
	if len(body) > oidcMaxResponse {
		return nil, nil, fmt.Errorf("key set is larger than %d bytes", oidcMaxResponse)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("key set is not a JSON Web Key Set: %w", err)
	}
	kids := make(map[string]bool, len(set.Keys))
	for _, k := range set.Keys {
		kids[k.Kid] = true
	}
	return body, kids, nil
}

func oidcJSONResponse(req *http.Request, body []byte) *http.Response {
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// oidcCappedBody fails a read past its limit instead of reading on.
type oidcCappedBody struct {
	io.ReadCloser
	left int64
}

func (b *oidcCappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: fine if the body ends here.
		var one [1]byte
		if n, err := b.ReadCloser.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, fmt.Errorf("response is larger than %d bytes", oidcMaxResponse)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
