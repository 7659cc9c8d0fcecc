package certauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Limits on what a certificate may be.
const (
	// DefaultBackdate is how far valid_after is set before the moment of
	// issuance, for clocks that lag; never more than MaxBackdate.
	DefaultBackdate = 30 * time.Second
	MaxBackdate     = 60 * time.Second
	// DefaultMaxTTL is the hard cap on any certificate's lifetime,
	// whatever policy says, unless configured otherwise; MaxMaxTTL is the
	// most it may be configured to.
	DefaultMaxTTL = time.Hour
	MaxMaxTTL     = 24 * time.Hour
	// MinTTL is the shortest lifetime a client may ask for.
	MinTTL = 30 * time.Second
)

// TokenVerifier turns a bearer token into an identity (a *oidc.Verifier).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*policy.Identity, error)
}

// CertPolicy decides what certificate an identity may have (a
// *policy.Policy).
type CertPolicy interface {
	Certificate(policy.CertRequest) policy.CertDecision
}

// IssuerOptions configure [NewIssuer].
type IssuerOptions struct {
	// CA signs the certificates: the user CA.
	CA *Authority
	// IndexBase is the journal's recorder.Options IndexBase (a cluster
	// member's ID << 48, else zero): a certificate's serial is its
	// issuance leaf's index plus IndexBase (recorder.NumberOf).
	IndexBase uint64
	// OtherCAs are the bastion's other authorities, whose keys are never
	// certified either.
	OtherCAs []*Authority
	Verifier TokenVerifier
	Policy   CertPolicy
	Journal  recorder.EventJournal
	// Registry holds revocations; NewIssuer loads nothing into it.
	Registry *Registry
	// MinRSABits is the smallest RSA key certified (DefaultMinRSABits).
	MinRSABits int
	// MaxTTL caps every certificate (DefaultMaxTTL).
	MaxTTL time.Duration
	// Backdate sets valid_after this much before now (DefaultBackdate,
	// at most MaxBackdate).
	Backdate time.Duration
	// Grants returns the identity's just-in-time grants in force at now
	// (a *grants.Grants' Active), which policy may issue under: a certificate
	// issued under a grant expires no later than it. If nil, there are
	// none.
	Grants func(identity string, now time.Time) []policy.Grant
	// TextMasker returns the masker for text a request supplies (its
	// ticket) and errors that quote it, before they are journaled or
	// logged; as [grants.GrantsOptions] TextMasker.
	TextMasker func() *mask.Masker
	Now        func() time.Time
	Logger     hclog.Logger
}

// Issuer exchanges verified OIDC tokens for OpenSSH user certificates.
// Every issuance and every refusal is a journal event; a certificate is only
// returned after its issuance event is committed.
type Issuer struct {
	ca       *Authority
	caKeys   []ssh.PublicKey
	verifier TokenVerifier
	policy   CertPolicy
	journal  recorder.EventJournal
	base     uint64 // IssuerOptions.IndexBase
	reg      *Registry
	grants   func(string, time.Time) []policy.Grant
	minRSA   int
	maxTTL   time.Duration
	backdate time.Duration
	now      func() time.Time
	log      hclog.Logger
	text     func() *mask.Masker

	policyMu sync.RWMutex // guards policy

	// refusals bounds the refusal events journaled per second, whatever
	// the number of clients; suppressed counts those left out since the
	// last one journaled.
	refusals   *rate.Limiter
	suppressed atomic.Int64
}

// Refusals journaled at most, per second and in a burst: enough for every
// honest mistake, too few for a flood of garbage to crowd out recording.
const (
	refusalRate  = 50
	refusalBurst = 500
)

// NewIssuer checks opts and journals a ca.started event naming the CA keys
// in force, so that every certificate serial (a leaf index) is above it.
func NewIssuer(ctx context.Context, opts IssuerOptions) (*Issuer, error) {
	if opts.CA == nil || opts.CA.Signer == nil || opts.Verifier == nil || opts.Policy == nil || opts.Journal == nil || opts.Registry == nil {
		return nil, errors.New("certauth: issuer needs a CA, a verifier, a policy, a journal and a registry")
	}
	is := &Issuer{
		ca: opts.CA, verifier: opts.Verifier, policy: opts.Policy, journal: opts.Journal, reg: opts.Registry, grants: opts.Grants,
		minRSA: opts.MinRSABits, maxTTL: opts.MaxTTL, backdate: opts.Backdate, now: opts.Now, log: opts.Logger, text: opts.TextMasker,
		refusals: rate.NewLimiter(refusalRate, refusalBurst), base: opts.IndexBase,
	}
	for _, a := range append([]*Authority{opts.CA}, opts.OtherCAs...) {
		for _, k := range a.Trusted {
			is.caKeys = append(is.caKeys, k.Key)
		}
	}
	if is.minRSA <= 0 {
		is.minRSA = DefaultMinRSABits
	}
	if is.maxTTL <= 0 {
		is.maxTTL = DefaultMaxTTL
	}
	if is.backdate == 0 {
		is.backdate = DefaultBackdate
	}
	if is.backdate < 0 || is.backdate > MaxBackdate {
		return nil, fmt.Errorf("certauth: backdate %v is outside 0..%v", is.backdate, MaxBackdate)
	}
	if is.now == nil {
		is.now = time.Now
	}
	if is.log == nil {
		is.log = hclog.NewNullLogger()
	}
	var trusted []string
	for _, k := range opts.CA.Trusted {
		trusted = append(trusted, ssh.FingerprintSHA256(k.Key))
	}
	if _, err := is.journal.AppendEvent(ctx, events.CAStarted, recorder.Attrs{
		"ca.role":    string(opts.CA.Role),
		"ca.sha256":  ssh.FingerprintSHA256(opts.CA.Signer.PublicKey()),
		"ca.trusted": strings.Join(trusted, ","),
		"max_ttl":    is.maxTTL.String(),
	}); err != nil {
		return nil, fmt.Errorf("certauth: journal the CA start: %w", err)
	}
	return is, nil
}

// SetPolicy replaces the policy for requests that start after it returns.
func (is *Issuer) SetPolicy(p CertPolicy) {
	is.policyMu.Lock()
	is.policy = p
	is.policyMu.Unlock()
}

// IssueRequest is one certificate request as the API received it.
type IssueRequest struct {
	Token         string
	PublicKey     string
	Logins        []string
	TTL           time.Duration
	Ticket        string
	ClientAddress netip.Addr
}

// Issued is a granted request.
type Issued struct {
	Cert     *ssh.Certificate
	Record   CertRecord
	Identity *policy.Identity
	Decision policy.CertDecision
}

// A Refusal is a request the issuer turned down, and why. Status is the
// HTTP status that fits it.
type Refusal struct {
	Status int
	Reason string
	Msg    string
	// Public, when set, is what the client is told instead of Msg, which
	// the journal and the log keep.
	Public string
	Err    error
	quiet  bool // logged, not journaled (repeated rate-limit refusals)
}

func (r *Refusal) Error() string { return r.Msg }
func (r *Refusal) Unwrap() error { return r.Err }

// Issue verifies req's token and key, asks policy, journals the issuance
// and returns the signed certificate. Any failure is a *Refusal, journaled
// with its reason (unless the journal itself failed, in which case nothing
// is issued).
func (is *Issuer) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	return is.issueLimited(ctx, req, nil)
}

// issueLimited is Issue with a rate limit per identity, checked once the
// token is verified: limit reports whether the identity may go on, and if
// not whether this refusal is worth a journal event.
func (is *Issuer) issueLimited(ctx context.Context, req IssueRequest, limit func(identity string) (ok, journal bool)) (*Issued, error) {
	refused := recorder.Attrs{}
	if req.ClientAddress.IsValid() {
		refused["client.address"] = req.ClientAddress.String()
	}
	out, err := is.issue(ctx, req, refused, limit)
	if err == nil {
		return out, nil
	}
	var r *Refusal
	if !errors.As(err, &r) {
		r = &Refusal{Status: http.StatusInternalServerError, Reason: "internal", Msg: "certificate could not be issued: " + err.Error(), Err: err,
			Public: "the certificate could not be issued: an internal error, which the bastion's log describes"}
	}
	return nil, is.journalRefusal(ctx, r, refused)
}

// refuse journals a request refused before it reached the issuer (a
// malformed request, a rate limit) and returns the refusal, or the journal's
// failure.
func (is *Issuer) refuse(ctx context.Context, r *Refusal, addr netip.Addr) error {
	a := recorder.Attrs{}
	if addr.IsValid() {
		a["client.address"] = addr.String()
	}
	return is.journalRefusal(ctx, r, a)
}

func (is *Issuer) journalRefusal(ctx context.Context, r *Refusal, attrs recorder.Attrs) error {
	if r.Reason == events.ReasonJournalUnavailable {
		return r
	}
	// An error may quote what the client sent (a malformed ticket).
	m := mask.Configured(is.text)
	msg, _ := m.Text(r.Msg)
	if r.quiet || !is.refusals.Allow() {
		// Past the journal's budget for refusals: logged and counted;
		// the next refusal journaled says how many were left out.
		if !r.quiet {
			is.suppressed.Add(1)
		}
		is.log.Warn("certificate refused", "reason", r.Reason, "error", msg, "client", attrs["client.address"], "identity", attrs["identity"])
		return r
	}
	if n := is.suppressed.Swap(0); n > 0 {
		attrs["refusals_not_journaled"] = strconv.FormatInt(n, 10)
	}
	attrs["reason"] = r.Reason
	attrs["error"] = r.Msg
	m.Fields(attrs, "ticket", "error")
	attrs["error"] = truncate(attrs["error"], 1024) // after masking: a value across the cut is masked too
	if _, jerr := is.journal.AppendEvent(ctx, events.CertRefused, attrs); jerr != nil {
		is.log.Error("journal a refusal", "reason", r.Reason, "error", jerr)
		return &Refusal{Status: http.StatusServiceUnavailable, Reason: events.ReasonJournalUnavailable,
			Msg: "the journal cannot record this request, so nothing is issued", Err: errors.Join(r, jerr)}
	}
	is.log.Info("certificate refused", "reason", r.Reason, "error", msg, "client", attrs["client.address"], "identity", attrs["identity"])
	return r
}

func (is *Issuer) issue(ctx context.Context, req IssueRequest, refused recorder.Attrs, limit func(string) (bool, bool)) (*Issued, error) {
	now := is.now()
	if req.Token == "" {
		return nil, &Refusal{Status: http.StatusUnauthorized, Reason: events.ReasonTokenMissing, Msg: "no bearer token: send the OIDC token as \"Authorization: Bearer TOKEN\""}
	}
	id, err := is.verifyToken(ctx, req.Token, refused)
	if err != nil {
		return nil, err
	}
	id.WriteAttrs(refused)
	if limit != nil {
		if ok, journal := limit(id.String()); !ok {
			return nil, &Refusal{Status: http.StatusTooManyRequests, Reason: events.ReasonRateLimited,
				Msg: "too many certificate requests for " + id.String() + ": retry later", quiet: !journal}
		}
	}
	if err := policy.CheckTicket(req.Ticket); err != nil {
		return nil, &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed, Msg: err.Error()}
	}
	if req.Ticket != "" {
		refused["ticket"] = req.Ticket
		if _, hits := mask.Configured(is.text).Text(req.Ticket); len(hits) > 0 {
			// The ticket goes into the certificate's key ID, which
			// targets log: it must hold nothing masking would hide.
			return nil, &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed,
				Msg: fmt.Sprintf("the ticket holds a value that masking hides (%s): a ticket names a change, such as OPS-42", strings.Join(mask.Summary("ticket", hits), ", "))}
		}
	}
	key, err := ParsePublicKey(req.PublicKey, is.minRSA)
	if err != nil {
		var ke *KeyError
		errors.As(err, &ke)
		return nil, &Refusal{Status: http.StatusBadRequest, Reason: ke.Reason, Msg: ke.Msg}
	}
	refused["key.type"] = key.Type()
	refused["key.sha256"] = ssh.FingerprintSHA256(key)
	if is.isCAKey(key) {
		return nil, &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonKeyIsCA, Msg: "the key is a CA key of this bastion: certify a key of your own"}
	}
	if req.TTL != 0 && req.TTL < MinTTL {
		return nil, &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed, Msg: fmt.Sprintf("a certificate lives at least %v: ask for a longer ttl, or none for the default", MinTTL)}
	}
	if err := policy.CheckLogins(req.Logins); err != nil {
		return nil, &Refusal{Status: http.StatusBadRequest, Reason: events.ReasonRequestMalformed, Msg: err.Error()}
	}

	// Hold off revocations from the revocation check until the issuance
	// is committed and registered, so that none slips between them.
	unlock := is.reg.issuing()
	defer unlock()
	if why := is.reg.identityRefused(id.String(), id.IssuedAt, now); why != "" {
		return nil, &Refusal{Status: http.StatusForbidden, Reason: events.ReasonIdentityRevoked, Msg: why}
	}

	is.policyMu.RLock()
	pol := is.policy
	is.policyMu.RUnlock()
	var grants []policy.Grant
	if is.grants != nil {
		grants = is.grants(id.String(), now)
	}
	d := pol.Certificate(policy.CertRequest{Identity: id, Time: now, Logins: req.Logins, TTL: req.TTL, ClientAddress: req.ClientAddress, Grants: grants})
	if d.Rule != "" {
		refused["rule"] = d.Rule
	}
	if !d.Allow {
		return nil, &Refusal{Status: http.StatusForbidden, Reason: events.ReasonDenied, Msg: "policy refuses a certificate: " + d.Reason}
	}
	if len(d.Principals) == 0 {
		return nil, &Refusal{Status: http.StatusForbidden, Reason: events.ReasonDenied, Msg: "policy grants no login"}
	}
	ttl := min(d.TTL, is.maxTTL)
	validBefore := now.Add(ttl).Truncate(time.Second)
	if !d.NotAfter.IsZero() && d.NotAfter.Before(validBefore) {
		validBefore = d.NotAfter.Truncate(time.Second)
	}
	validAfter := now.Add(-is.backdate).Truncate(time.Second)
	if !validBefore.After(now) {
		return nil, &Refusal{Status: http.StatusForbidden, Reason: events.ReasonDenied, Msg: "the grant this certificate would be issued under has ended"}
	}

	attrs := recorder.Attrs{}
	for k, v := range refused {
		if k != "token.sha256" {
			attrs[k] = v
		}
	}
	if d.Sponsor != "" {
		attrs["sponsor"] = d.Sponsor
	}
	attrs["claims.sha256"] = claimsDigest(req.Token)
	attrs["principals"] = strings.Join(d.Principals, ",")
	attrs["valid_after"] = validAfter.UTC().Format(time.RFC3339)
	attrs["valid_before"] = validBefore.UTC().Format(time.RFC3339)
	attrs["extensions"] = strings.Join(d.Extensions, ",")
	if len(d.SourceAddresses) > 0 {
		attrs["source_address"] = strings.Join(d.SourceAddresses, ",")
	}
	if d.Grant != "" {
		attrs["grant"] = d.Grant
	}
	attrs["ca.sha256"] = ssh.FingerprintSHA256(is.ca.Signer.PublicKey())
	// Not cancelled with the caller: a queued issuance is committed anyway,
	// and must then be registered (and so revocable by identity).
	idx, err := is.journal.AppendIndexedEvent(context.WithoutCancel(ctx), events.CertIssued, attrs, recorder.NumberedAttr(events.CertIssued))
	if err != nil {
		is.log.Error("journal an issuance", "identity", id.String(), "error", err)
		return nil, &Refusal{Status: http.StatusServiceUnavailable, Reason: events.ReasonJournalUnavailable,
			Msg: "the journal cannot record the issuance, so nothing is issued", Err: err}
	}
	serial := is.base + uint64(idx)
	rec := CertRecord{
		Serial: serial, Identity: id.String(), Provider: id.Provider, Issuer: id.Issuer, Subject: id.Subject,
		Sponsor: d.Sponsor, Ticket: req.Ticket, Grant: d.Grant, KeyType: key.Type(), KeyFingerprint: attrs["key.sha256"],
		Principals: d.Principals, ValidAfter: validAfter, ValidBefore: validBefore, Extensions: d.Extensions,
		SourceAddresses: d.SourceAddresses, Rule: d.Rule, ClientAddress: attrs["client.address"], IssuedAt: now,
		Email: id.Email, Groups: slices.Clone(id.Groups), Claims: id.Claims,
	}
	rec.KeyID = KeyID(&rec)
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           rec.KeyID,
		ValidPrincipals: d.Principals,
		ValidAfter:      uint64(validAfter.Unix()),
		ValidBefore:     uint64(validBefore.Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{}},
	}
	for _, e := range d.Extensions {
		cert.Permissions.Extensions[e] = ""
	}
	if len(d.SourceAddresses) > 0 {
		cert.Permissions.CriticalOptions = map[string]string{"source-address": strings.Join(d.SourceAddresses, ",")}
	}
	if err := is.ca.Sign(cert); err != nil {
		return nil, fmt.Errorf("sign certificate %d: %w", serial, err)
	}
	is.reg.add(&rec)
	is.log.Info("certificate issued", "serial", serial, "identity", rec.Identity, "principals", strings.Join(d.Principals, ","),
		"valid_before", validBefore.UTC().Format(time.RFC3339), "rule", d.Rule, "client", rec.ClientAddress)
	return &Issued{Cert: cert, Record: rec, Identity: id, Decision: d}, nil
}

// verifyToken verifies a bearer token and returns its identity, or a
// *Refusal. It notes in refused what a refusal's journal event says of the
// token (its digest, its provider).
func (is *Issuer) verifyToken(ctx context.Context, token string, refused recorder.Attrs) (*policy.Identity, error) {
	refused["token.sha256"] = tokenDigest(token)
	id, err := is.verifier.Verify(ctx, token)
	if err != nil {
		var te *oidc.TokenError
		if errors.As(err, &te) {
			if te.Provider != "" {
				refused["provider"] = te.Provider
			}
			if te.Reason == events.ReasonProviderUnavailable || te.Reason == events.ReasonProviderMisconfigured {
				// The server's problem, not the token's; its details
				// (internal URLs, errors) are for the operators.
				return nil, &Refusal{Status: http.StatusServiceUnavailable, Reason: te.Reason, Msg: te.Error(), Err: err,
					Public: fmt.Sprintf("identity provider %q cannot verify tokens right now; the bastion's log says why", te.Provider)}
			}
			return nil, &Refusal{Status: http.StatusUnauthorized, Reason: te.Reason, Msg: te.Error(), Err: err}
		}
		return nil, &Refusal{Status: http.StatusUnauthorized, Reason: events.ReasonTokenMalformed, Msg: err.Error(), Err: err}
	}
	return id, nil
}

// isCAKey reports whether key is a key of one of the bastion's CAs.
func (is *Issuer) isCAKey(key ssh.PublicKey) bool {
	m := key.Marshal()
	for _, k := range is.caKeys {
		if bytes.Equal(k.Marshal(), m) {
			return true
		}
	}
	return false
}

// KeyID is a certificate's key ID, as sshd logs it: the identity, the
// serial, and whom and what the holder works for, e.g.
// "agent-1@ci serial=42 for=alice ticket=OPS-7". Values are reduced to
// characters that cannot break a log line.
func KeyID(r *CertRecord) string {
	var b strings.Builder
	b.WriteString(keyIDValue(r.Identity))
	b.WriteString(" serial=" + strconv.FormatUint(r.Serial, 10))
	if r.Sponsor != "" {
		b.WriteString(" for=" + keyIDValue(r.Sponsor))
	}
	if r.Ticket != "" {
		b.WriteString(" ticket=" + keyIDValue(r.Ticket))
	}
	if r.Grant != "" {
		b.WriteString(" grant=" + keyIDValue(r.Grant))
	}
	return b.String()
}

func keyIDValue(s string) string {
	s = truncate(s, 200)
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune("._:/@+-#", r):
			return r
		}
		return '_'
	}, s)
}

// tokenDigest names a token in the journal without keeping it: the SHA-256
// of the whole compact token.
func tokenDigest(raw string) string {
	s := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(s[:])
}

// claimsDigest is the SHA-256 of the token's payload exactly as signed (the
// decoded second part), so that whoever keeps the token can match it.
func claimsDigest(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	s := sha256.Sum256(payload)
	return hex.EncodeToString(s[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
