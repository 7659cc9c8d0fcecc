package oidc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/go-hclog"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder/events"
)

// Defaults of [ProviderConfig] and [VerifierOptions].
const (
	DefaultMaxTokenAge  = time.Hour
	DefaultMaxTokenSize = 16 << 10
	DefaultClockSkew    = 60 * time.Second
	DefaultEmailClaim   = "email"
	DefaultGroupsClaim  = "groups"
)

// oidcDefaultAlgs is the allow-list of a provider that names none: every
// public-key algorithm go-oidc verifies. HMAC and "none" are never allowed.
var oidcDefaultAlgs = []string{
	gooidc.RS256, gooidc.RS384, gooidc.RS512,
	gooidc.PS256, gooidc.PS384, gooidc.PS512,
	gooidc.ES256, gooidc.ES384, gooidc.ES512,
	gooidc.EdDSA,
}

// ProviderConfig configures one identity provider.
type ProviderConfig struct {
	// Name is how configuration, policy and the journal refer to the
	// provider ("corp", "github-actions"): [a-z0-9_-]+, unique.
	Name string
	// Issuer is the provider's issuer URL, exactly as in its tokens'
	// "iss" and its discovery document. It must be https, except http on
	// a loopback host (127.0.0.1, ::1, localhost) for development.
	Issuer string
	// Audiences lists what the bastion is called in this provider's
	// tokens; a token's "aud" must contain at least one. Required.
	Audiences []string
	// Algorithms is the allow-list of JWS algorithms. Empty means every
	// public-key algorithm (RS*, PS*, ES*, EdDSA); "none" and HS* are
	// refused as configuration errors.
	Algorithms []string
	// MaxTokenAge refuses tokens issued ("iat") longer ago than this, even
	// if they have not expired. Zero means DefaultMaxTokenAge.
	MaxTokenAge time.Duration
	// EmailClaim and GroupsClaim name the claims copied into
	// Identity.Email and Identity.Groups; empty means DefaultEmailClaim and
	// DefaultGroupsClaim. A name is looked up as a top-level claim first
	// and, if there is none and the name has dots, as a path into nested
	// objects ("realm_access.roles").
	EmailClaim  string
	GroupsClaim string
	// SponsorClaim, if set, names a string claim that says which human or
	// team an agent acts for.
	SponsorClaim string
	// Delegation reads an RFC 8693 "act" claim as delegation: the actor
	// ("act.sub") is the identity and the token's "sub", on whose behalf
	// it acts, is its sponsor (SponsorClaim is then not used). Only for a
	// provider whose tokens carry "act" in that sense, such as a token
	// exchange service; otherwise "act" is an ordinary claim.
	Delegation bool
	// HTTPClient fetches discovery and the key set. Nil means a client
	// with timeouts; a client without a Timeout gets one.
	HTTPClient *http.Client
}

// VerifierOptions configure [NewVerifier].
type VerifierOptions struct {
	// Now is the clock for every time check. If nil, time.Now is used.
	Now func() time.Time
	// MaxTokenSize refuses longer tokens before any parsing. Zero means
	// DefaultMaxTokenSize.
	MaxTokenSize int
	// ClockSkew is the leeway for "exp", "nbf", "iat" and the maximum
	// age. Zero means DefaultClockSkew.
	ClockSkew time.Duration
	// Logger receives refusals (debug) and provider trouble (warn). Nil
	// means no logging.
	Logger hclog.Logger
}

// A TokenError is why a token was refused. Error is a sentence for the user
// that never contains the token; Reason is one of the token codes of
// package events ([events.ReasonTokenMalformed] and those after it).
type TokenError struct {
	Reason string
	// Provider is the configured name of the provider the token claimed
	// to come from, if it got that far.
	Provider string
	// Err is the sentence, wrapping the cause (a network or library
	// error) where there is one.
	Err error
}

func (e *TokenError) Error() string {
	if e.Err == nil {
		return "token refused: " + e.Reason
	}
	return e.Err.Error()
}

func (e *TokenError) Unwrap() error { return e.Err }

// oidcCause is an error whose text is a sentence of ours and whose cause is
// kept for errors.Is and errors.As but not repeated in the text.
type oidcCause struct {
	msg   string
	cause error
}

func (e *oidcCause) Error() string { return e.msg }
func (e *oidcCause) Unwrap() error { return e.cause }

// oidcRefuse builds a TokenError whose sentence is format and args
// (which may use %w).
func oidcRefuse(reason, provider, format string, args ...any) *TokenError {
	return &TokenError{Reason: reason, Provider: provider, Err: fmt.Errorf(format, args...)}
}

// Verifier checks OIDC tokens against the configured providers and turns
// them into identities. It is safe for concurrent use.
//
// A provider's discovery document is fetched at the first token that names
// it, not at construction; a failed discovery is retried after a backoff
// that starts at one second and grows to thirty. Providers are independent:
// one that is slow or down delays only the tokens that name it.
type Verifier struct {
	providers []*oidcProvider          // in configuration order
	byIssuer  map[string]*oidcProvider // by ProviderConfig.Issuer
	now       func() time.Time
	maxSize   int
	skew      time.Duration
	log       hclog.Logger
}

// NewVerifier checks the provider configurations and returns a verifier for
// them. It makes no network requests.
func NewVerifier(providers []ProviderConfig, opts VerifierOptions) (*Verifier, error) {
	v := &Verifier{
		byIssuer: make(map[string]*oidcProvider),
		now:      opts.Now,
		maxSize:  opts.MaxTokenSize,
		skew:     opts.ClockSkew,
		log:      opts.Logger,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = hclog.NewNullLogger()
	}
	var errs []error
	switch {
	case v.maxSize < 0:
		errs = append(errs, fmt.Errorf("oidc: maximum token size %d is negative", v.maxSize))
	case v.maxSize == 0:
		v.maxSize = DefaultMaxTokenSize
	}
	switch {
	case v.skew < 0:
		errs = append(errs, fmt.Errorf("oidc: clock skew %v is negative", v.skew))
	case v.skew == 0:
		v.skew = DefaultClockSkew
	}
	if len(providers) == 0 {
		errs = append(errs, errors.New("oidc: no identity provider is configured"))
	}
	names := make(map[string]bool)
	for i, pc := range providers {
		cfg, err := pc.checked()
		if err != nil {
			label := fmt.Sprintf("#%d", i+1)
			if pc.Name != "" {
				label = fmt.Sprintf("%q", pc.Name)
			}
			errs = append(errs, fmt.Errorf("oidc: identity provider %s: %w", label, err))
			continue
		}
		if names[cfg.Name] {
			errs = append(errs, fmt.Errorf("oidc: identity provider name %q is used twice", cfg.Name))
			continue
		}
		if other, ok := v.byIssuer[cfg.Issuer]; ok {
			errs = append(errs, fmt.Errorf("oidc: identity providers %q and %q have the same issuer %q: a token's issuer must name one provider", other.cfg.Name, cfg.Name, cfg.Issuer))
			continue
		}
		names[cfg.Name] = true
		p := newOIDCProvider(cfg, v.now, v.log.Named(cfg.Name))
		v.providers = append(v.providers, p)
		v.byIssuer[cfg.Issuer] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// checked returns c with defaults filled in, or what is wrong with it.
func (c ProviderConfig) checked() (ProviderConfig, error) {
	if c.Name == "" {
		return c, errors.New("no name")
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return c, fmt.Errorf("name %q may only use a-z, 0-9, _ and -", c.Name)
		}
	}
	if err := checkOIDCIssuer(c.Issuer); err != nil {
		return c, err
	}
	if len(c.Audiences) == 0 {
		return c, errors.New("no audience: name at least one audience the provider's tokens for this bastion carry")
	}
	if slices.Contains(c.Audiences, "") {
		return c, errors.New("an audience is empty")
	}
	c.Audiences = slices.Clone(c.Audiences)
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(oidcDefaultAlgs)
	} else {
		var algs []string
		for _, a := range c.Algorithms {
			switch {
			case strings.EqualFold(a, "none"):
				return c, errors.New(`signing algorithm "none" means unsigned tokens and is never allowed`)
			case strings.HasPrefix(strings.ToUpper(a), "HS"):
				return c, fmt.Errorf("signing algorithm %q is a shared-secret (HMAC) algorithm; only public-key algorithms are allowed", a)
			case !slices.Contains(oidcDefaultAlgs, a):
				return c, fmt.Errorf("unknown signing algorithm %q (known: %s)", a, strings.Join(oidcDefaultAlgs, ", "))
			}
			if !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
		c.Algorithms = algs
	}
	switch {
	case c.MaxTokenAge < 0:
		return c, fmt.Errorf("maximum token age %v is negative", c.MaxTokenAge)
	case c.MaxTokenAge == 0:
		c.MaxTokenAge = DefaultMaxTokenAge
	}
	if c.EmailClaim == "" {
		c.EmailClaim = DefaultEmailClaim
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	return c, nil
}

// checkOIDCIssuer accepts an absolute https URL without query, fragment or
// user information, or such an http URL on a loopback host.
func checkOIDCIssuer(s string) error {
	if s == "" {
		return errors.New("no issuer URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("issuer %q is not a URL: %w", s, err)
	}
	if u.Host == "" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("issuer %q must be a plain https URL, without query, fragment or user name", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !oidcLoopbackHost(u.Hostname()) {
			return fmt.Errorf("issuer %q must use https (plain http is only for loopback hosts)", s)
		}
	default:
		return fmt.Errorf("issuer %q must use https", s)
	}
	return nil
}

func oidcLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// configs returns the provider configurations with defaults filled in
// (HTTPClient as given), in configuration order.
func (v *Verifier) configs() []ProviderConfig {
	out := make([]ProviderConfig, len(v.providers))
	for i, p := range v.providers {
		c := p.cfg
		c.Audiences = slices.Clone(c.Audiences)
		c.Algorithms = slices.Clone(c.Algorithms)
		out[i] = c
	}
	return out
}

// Verify checks raw, a compact JWS, and returns the identity it vouches for.
// Errors are *TokenError.
//
// The order of checks: size; structure (three base64url parts, JSON
// header and payload); the issuer picks the provider; the header's
// algorithm against the provider's allow-list; then, through go-oidc, the
// signature with the provider's key set (fetched at first use and refetched
// when a token names a key it lacks) and the issuer; then our checks of
// "sub", "aud", "exp", "nbf", "iat" and the token's age, with the
// configured clock skew.
func (v *Verifier) Verify(ctx context.Context, raw string) (*policy.Identity, error) {
	id, terr := v.verify(ctx, raw, nil)
	if terr != nil {
		v.log.Debug("token refused", "reason", terr.Reason, "provider", terr.Provider, "error", terr.Error())
		return nil, terr
	}
	return id, nil
}

// VerifyIDToken checks raw as an ID token that the provider named
// provider issued to the web client clientID by the authorization-code
// flow, and returns the identity it vouches for, mapped as [Verifier.Verify]
// maps a bearer token's: the same checks, except that the audience must
// include clientID (not the provider's configured audiences), and the
// "nonce" claim must equal nonce. Errors are *TokenError.
func (v *Verifier) VerifyIDToken(ctx context.Context, provider, raw, clientID, nonce string) (*policy.Identity, error) {
	if clientID == "" || nonce == "" {
		return nil, oidcRefuse(events.ReasonTokenMalformed, provider, "an ID token is checked against a client ID and a nonce, and one is missing")
	}
	id, terr := v.verify(ctx, raw, []string{clientID})
	switch {
	case terr != nil:
	case id.Provider != provider:
		terr = oidcRefuse(events.ReasonWrongIssuer, id.Provider, "ID token is from identity provider %q, not %q, which the sign-in was started with", id.Provider, provider)
	default:
		if got, _ := id.Claims["nonce"].(string); subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
			terr = oidcRefuse(events.ReasonTokenMalformed, provider, "ID token's nonce is not the sign-in's: the sign-in was not started here, or was replayed")
		}
	}
	if terr != nil {
		v.log.Debug("ID token refused", "reason", terr.Reason, "provider", terr.Provider, "error", terr.Error())
		return nil, terr
	}
	return id, nil
}

// verify checks raw; audiences, if not nil, replace the provider's
// configured audiences.
func (v *Verifier) verify(ctx context.Context, raw string, audiences []string) (*policy.Identity, *TokenError) {
	if len(raw) > v.maxSize {
		return nil, oidcRefuse(events.ReasonTokenTooLarge, "", "token is %d bytes, more than the %d allowed: ask the identity provider for a token with fewer claims", len(raw), v.maxSize)
	}
	jws, terr := parseOIDCJWS(raw)
	if terr != nil {
		return nil, terr
	}
	iss, terr := jws.issuer()
	if terr != nil {
		return nil, terr
	}
	p := v.byIssuer[iss]
	if p == nil {
		return nil, oidcRefuse(events.ReasonIssuerUnknown, "", "token's issuer %s is not a configured identity provider (configured: %s)", oidcQuote(iss), v.issuerList())
	}
	if !slices.Contains(p.cfg.Algorithms, jws.alg) {
		return nil, oidcRefuse(events.ReasonAlgNotAllowed, p.cfg.Name, "token is signed with algorithm %s, which identity provider %q is not allowed to use (allowed: %s)", oidcQuote(jws.alg), p.cfg.Name, strings.Join(p.cfg.Algorithms, ", "))
	}
	idv, terr := p.verifier(ctx)
	if terr != nil {
		return nil, terr
	}

	out := new(oidcSigOutcome)
	tok, err := idv.Verify(context.WithValue(ctx, oidcSigOutcomeKey{}, out), raw)
	if err != nil {
		return nil, p.refusal(err, out, jws, v.now(), v.skew)
	}
	// The claims we read are the ones we decoded from the payload part;
	// make sure they are the bytes whose signature go-oidc verified.
	same := oidcSamePayload{want: bytes.Trim(jws.payload, " \t\r\n")}
	if err := tok.Claims(&same); err != nil || !same.same {
		return nil, oidcRefuse(events.ReasonTokenMalformed, p.cfg.Name, "token's payload does not match the payload whose signature was verified")
	}
	return p.identity(jws.claims, v.now(), v.skew, audiences)
}

func (v *Verifier) issuerList() string {
	var iss []string
	for _, p := range v.providers {
		iss = append(iss, p.cfg.Issuer)
	}
	return strings.Join(iss, ", ")
}

// oidcSamePayload compares the JSON it is decoded from with want.
type oidcSamePayload struct {
	want []byte
	same bool
}

func (s *oidcSamePayload) UnmarshalJSON(b []byte) error {
	s.same = bytes.Equal(b, s.want)
	return nil
}

// refusal says why go-oidc refused a token that passed our own structural
// and algorithm checks.
func (p *oidcProvider) refusal(err error, out *oidcSigOutcome, jws *oidcJWS, now time.Time, skew time.Duration) *TokenError {
	name := p.cfg.Name
	switch {
	case !out.checked:
		// go-jose's parser refused what ours accepted (a "crit" header it
		// does not support, for example).
		return &TokenError{Reason: events.ReasonTokenMalformed, Provider: name, Err: &oidcCause{
			msg: "token is not a JWS the bastion can verify: " + oidcClip(err.Error()), cause: err}}
	case out.err != nil:
		// go-oidc's RemoteKeySet wraps the error of a failed fetch
		// ("fetching keys %w") and returns a bare error when no key
		// verifies the signature.
		if errors.Unwrap(out.err) != nil {
			msg := fmt.Sprintf("cannot fetch the signing keys of identity provider %q: ", name)
			var ue *url.Error
			if errors.As(out.err, &ue) {
				msg += fmt.Sprintf("%s %q: %v", ue.Op, ue.URL, ue.Err)
			} else {
				msg += out.err.Error()
			}
			return &TokenError{Reason: events.ReasonProviderUnavailable, Provider: name, Err: &oidcCause{msg: oidcClip(msg), cause: out.err}}
		}
		if jws.kid != "" && !p.keys.lists(jws.kid) {
			return oidcRefuse(events.ReasonUnknownKey, name, "token is signed with key %s, which identity provider %q does not publish (its key set was fetched at %s): get a new token",
				oidcQuote(jws.kid), name, p.keys.fetchedAt().UTC().Format(time.RFC3339))
		}
		return oidcRefuse(events.ReasonBadSignature, name, "token's signature does not verify with the keys of identity provider %q", name)
	default:
		// The signature verified, and go-oidc refused the claims: its
		// decoding of registered claims of the wrong type, or its issuer
		// check (moot, as "iss" chose the provider, unless the payload
		// plays on encoding/json's case-insensitive field matching). Our
		// own checks say more, if they see the problem.
		if _, terr := p.identity(jws.claims, now, skew, nil); terr != nil {
			return terr
		}
		return &TokenError{Reason: events.ReasonTokenMalformed, Provider: name, Err: &oidcCause{
			msg: "token's claims are malformed: " + oidcClip(err.Error()), cause: err}}
	}
}

// oidcClip puts an error text from a library, which may quote what a
// provider or token sent, on one line of a length fit for a message.
func oidcClip(s string) string {
	const max = 300
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

// identity checks the claims of a token whose signature verified and
// builds the identity.
func (p *oidcProvider) identity(claims map[string]any, now time.Time, skew time.Duration, audiences []string) (*policy.Identity, *TokenError) {
	if audiences == nil {
		audiences = p.cfg.Audiences
	}
	name := p.cfg.Name
	sub, terr := oidcRequiredString(claims, "sub", name)
	if terr != nil {
		return nil, terr
	}
	exp, terr := oidcTimeClaim(claims, "exp", name, true)
	if terr != nil {
		return nil, terr
	}
	iat, terr := oidcTimeClaim(claims, "iat", name, true)
	if terr != nil {
		return nil, terr
	}
	nbf, terr := oidcTimeClaim(claims, "nbf", name, false)
	if terr != nil {
		return nil, terr
	}
	if terr := p.checkAudience(claims["aud"], audiences); terr != nil {
		return nil, terr
	}

	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case now.After(exp.Add(skew)):
		return nil, oidcRefuse(events.ReasonTokenExpired, name, "token expired at %s (now %s): get a new token from %q", ts(exp), ts(now), name)
	case !nbf.IsZero() && nbf.After(now.Add(skew)):
		return nil, oidcRefuse(events.ReasonTokenNotYetValid, name, "token is not valid before %s (now %s, allowing %v of clock skew): check the clocks of this bastion and of %q", ts(nbf), ts(now), skew, name)
	case iat.After(now.Add(skew)):
		return nil, oidcRefuse(events.ReasonTokenIssuedInFuture, name, "token was issued at %s, in the future (now %s, allowing %v of clock skew): check the clocks of this bastion and of %q", ts(iat), ts(now), skew, name)
	case now.Sub(iat) > p.cfg.MaxTokenAge+skew:
		return nil, oidcRefuse(events.ReasonTokenTooOld, name, "token was issued at %s, more than %v ago (now %s): get a fresh token from %q", ts(iat), p.cfg.MaxTokenAge, ts(now), name)
	}

	id := &policy.Identity{
		Provider: name,
		Issuer:   p.cfg.Issuer,
		Subject:  sub,
		Claims:   claims,
		IssuedAt: iat,
		Expiry:   exp,
	}
	id.Email, _ = oidcLookup(claims, p.cfg.EmailClaim).(string)
	switch g := oidcLookup(claims, p.cfg.GroupsClaim).(type) {
	case string:
		id.Groups = []string{g}
	case []any:
		for _, e := range g {
			if s, ok := e.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	}
	// RFC 8693 delegation: "act" names the acting party, and "sub" the
	// party on whose behalf it acts. The actor is who connects, so it is
	// the identity; the subject is its sponsor.
	if act, ok := claims["act"]; ok && p.cfg.Delegation {
		m, _ := act.(map[string]any)
		actor, _ := m["sub"].(string)
		if actor == "" {
			return nil, oidcRefuse(events.ReasonMissingClaim, name, "token's \"act\" claim has no actor \"sub\" (RFC 8693): it does not say who acts on behalf of %s", oidcQuote(sub))
		}
		if aiss, ok := m["iss"]; ok && aiss != p.cfg.Issuer {
			return nil, oidcRefuse(events.ReasonWrongIssuer, name, "token's actor belongs to another issuer (act.iss %v): only actors of %q are accepted", aiss, name)
		}
		id.Subject, id.Sponsor = actor, sub
		return id, nil
	}
	if p.cfg.SponsorClaim != "" {
		if s, _ := oidcLookup(claims, p.cfg.SponsorClaim).(string); s != "" {
			id.Sponsor = s
		}
	}
	return id, nil
}

func (p *oidcProvider) checkAudience(v any, audiences []string) *TokenError {
	name := p.cfg.Name
	var aud []string
	switch v := v.(type) {
	case nil:
		return oidcRefuse(events.ReasonWrongAudience, name, "token has no audience (\"aud\"); it must name one of %s", oidcQuoteList(audiences))
	case string:
		aud = []string{v}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return oidcRefuse(events.ReasonTokenMalformed, name, "token's \"aud\" claim lists a %s, not only strings", oidcJSONType(e))
			}
			aud = append(aud, s)
		}
	default:
		return oidcRefuse(events.ReasonTokenMalformed, name, "token's \"aud\" claim is a %s, not a string or a list of strings", oidcJSONType(v))
	}
	for _, a := range aud {
		if slices.Contains(audiences, a) {
			return nil
		}
	}
	return oidcRefuse(events.ReasonWrongAudience, name, "token's audience %s does not include any of %s: get a token from %q meant for this bastion", oidcQuoteList(aud), oidcQuoteList(audiences), name)
}

// oidcRequiredString returns claim name, a non-empty string.
func oidcRequiredString(claims map[string]any, name, provider string) (string, *TokenError) {
	switch v := claims[name].(type) {
	case nil:
		return "", oidcRefuse(events.ReasonMissingClaim, provider, "token has no %q claim", name)
	case string:
		if v == "" {
			return "", oidcRefuse(events.ReasonMissingClaim, provider, "token's %q claim is empty", name)
		}
		return v, nil
	default:
		return "", oidcRefuse(events.ReasonTokenMalformed, provider, "token's %q claim is a %s, not a string", name, oidcJSONType(v))
	}
}

// oidcMaxNumericDate is 9999-12-31T23:59:59Z: later dates are nonsense and
// would overflow time arithmetic.
const oidcMaxNumericDate = 253402300799

// oidcTimeClaim returns claim name, a NumericDate (seconds since the epoch,
// possibly fractional), or the zero time if it is absent and not required.
func oidcTimeClaim(claims map[string]any, name, provider string, required bool) (time.Time, *TokenError) {
	switch v := claims[name].(type) {
	case nil:
		if required {
			return time.Time{}, oidcRefuse(events.ReasonMissingClaim, provider, "token has no %q claim", name)
		}
		return time.Time{}, nil
	case float64:
		if !(v >= 0 && v <= oidcMaxNumericDate) { // also false for NaN
			return time.Time{}, oidcRefuse(events.ReasonTokenMalformed, provider, "token's %q claim %v is not a time between 1970 and 9999", name, v)
		}
		sec := int64(v)
		return time.Unix(sec, int64((v-float64(sec))*1e9)).UTC(), nil
	default:
		return time.Time{}, oidcRefuse(events.ReasonTokenMalformed, provider, "token's %q claim is a %s, not a number of seconds", name, oidcJSONType(v))
	}
}

// oidcLookup finds claim name: a top-level claim of that name or, failing
// that, a dotted path into nested objects.
func oidcLookup(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok || !strings.Contains(name, ".") {
		return v
	}
	var v any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

func oidcJSONType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// oidcQuote quotes a value taken from a token for an error message: escaped,
// and cut short so a hostile token cannot fill the logs.
func oidcQuote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q…", strings.ToValidUTF8(s[:max], ""))
	}
	return fmt.Sprintf("%q", s)
}

func oidcQuoteList(ss []string) string {
	const max = 8
	var q []string
	for i, s := range ss {
		if i == max {
			q = append(q, fmt.Sprintf("… (%d more)", len(ss)-max))
			break
		}
		q = append(q, oidcQuote(s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}
