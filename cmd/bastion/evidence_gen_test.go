package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"maps"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// testClock is a clock that moves only when told: the journal's, the
// issuer's, the token verifier's and the grants store's, so that a
// generated journal holds the same times on every run.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t, never back.
func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

// simBastion is a bastion's parts writing one journal on a testClock,
// the way serve wires them: the real issuer (tokens of a real OpenID
// provider on loopback, verified by discovery and JWKS), the real grants
// store and revocation registry under a real policy. Sessions and
// front-door events are written with the attributes the front door
// writes (bastion/front/session.go, policy.go).
type simBastion struct {
	t          testing.TB
	ctx        context.Context
	opts       simOptions
	home       string
	path       string
	clock      *testClock
	st         *storage.SQLite
	j          *recorder.Journal
	oidc       *mockoidc.MockOIDC
	v          *oidc.Verifier
	pol        atomic.Pointer[policy.Policy] // the grants store reads it on its timer goroutine
	reg        *certauth.Registry
	issuer     *certauth.Issuer
	grants     *grants.Grants // nil while closed
	grantsOpts grants.GrantsOptions
}

// simOptions configure newSimBastion.
type simOptions struct {
	// Origin is the journal's log origin (ca init --origin).
	Origin string
	Start  time.Time
	// Identities and Roles make the policy.
	Identities []policy.IdentityMatcher
	Roles      []policy.Role
	// Storage and Journal are passed to storage.OpenSQLite and
	// recorder.Open (Key, Now and Signed are set here).
	Storage storage.Options
	Journal recorder.Options
	// KeepSigned remembers the kept checkpoint in the home, as serve
	// does (a file written, synced and renamed, and its directory
	// synced, per kept checkpoint: costly when every session end keeps
	// one).
	KeepSigned bool
	// PendingTTL is the grants store's.
	PendingTTL time.Duration
	// FrameByFrame commits each frame of a session before the next is
	// appended, so that its segment leaves are the same on every run.
	FrameByFrame bool
	// QueueEnds queues a session's end leaf without waiting for its
	// commit, which the next commit carries (End with a done context:
	// the end is queued before End returns): a commit per session
	// instead of two. A failed commit fails the journal, and so the
	// next append.
	QueueEnds bool
	// TokenKey signs the OpenID provider's tokens; nil is mockoidc's
	// built-in 2048-bit key. (Signing is most of what a token costs.)
	TokenKey *rsa.PrivateKey
}

// newSimBastion makes a home with "bastion ca init", opens its journal
// and starts the issuer and the grants store on a clock at opts.Start.
func newSimBastion(t testing.TB, opts simOptions) *simBastion {
	t.Helper()
	ctx := context.Background()
	b := &simBastion{t: t, ctx: ctx, opts: opts, home: t.TempDir(), clock: &testClock{t: opts.Start}}
	b.path = filepath.Join(b.home, "journal.db")
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"--home", b.home, "ca", "init", "--origin", opts.Origin}, &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("ca init: %d %s", code, errb.String())
	}
	b.openJournal()
	t.Cleanup(func() { b.close() })

	var err error
	b.oidc = oidctest.StartMock(t, opts.TokenKey)
	b.v, err = oidc.NewVerifier([]oidc.ProviderConfig{{Name: "corp", Issuer: b.oidc.Issuer(), Audiences: []string{"bastion"}, SponsorClaim: "on_behalf_of"}},
		oidc.VerifierOptions{Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := policy.Build(opts.Identities, opts.Roles, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.pol.Store(pol)
	b.grantsOpts = grants.GrantsOptions{Journal: b.j, Policy: func() grants.GrantPolicy { return b.pol.Load() }, Now: b.clock.Now, PendingTTL: opts.PendingTTL}
	b.openGrants()
	b.reg = certauth.NewRegistry()
	b.startIssuer()
	return b
}

// startIssuer starts an issuer on the journal, as serve does at its
// start: it journals ca.started.
func (b *simBastion) startIssuer() {
	b.t.Helper()
	auth, err := certauth.LoadAuthorities(b.home, b.clock.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	b.issuer, err = certauth.NewIssuer(b.ctx, certauth.IssuerOptions{CA: auth.User, Verifier: b.v, Policy: b.pol.Load(), Journal: b.j, Registry: b.reg,
		Grants: func(id string, now time.Time) []policy.Grant {
			if b.grants == nil {
				return nil
			}
			return b.grants.Active(id, now)
		},
		Now: b.clock.Now})
	if err != nil {
		b.t.Fatal(err)
	}
}

// openGrants opens the grants store as serve does at its start: from the
// journal's grant events. Its timer goroutine journals at once what fell
// due while it was closed.
func (b *simBastion) openGrants() {
	b.t.Helper()
	log, err := b.j.ReadLog(b.ctx, grants.GrantEvents)
	if err != nil {
		b.t.Fatal(err)
	}
	if b.grants, err = grants.OpenGrants(b.ctx, log, b.grantsOpts); err != nil {
		b.t.Fatal(err)
	}
}

// closeGrants stops the grants store's timer goroutine.
func (b *simBastion) closeGrants() {
	if b.grants != nil {
		b.grants.Close()
		b.grants = nil
	}
}

// close stops the grants store and closes the journal; the home stays
// for the test to read.
func (b *simBastion) close() {
	b.closeGrants()
	if b.j != nil {
		if err := b.j.Close(); err != nil {
			b.t.Error(err)
		}
		b.j = nil
	}
	if b.st != nil {
		b.st.Close()
		b.st = nil
	}
}

// openJournal opens the home's journal for writing on the clock.
func (b *simBastion) openJournal() {
	b.t.Helper()
	key, err := certauth.LoadJournalKey(b.home)
	if err != nil {
		b.t.Fatal(err)
	}
	if b.st, err = storage.OpenSQLite(b.ctx, b.path, b.opts.Storage); err != nil {
		b.t.Fatal(err)
	}
	jopts := b.opts.Journal
	jopts.Key, jopts.Now = key, b.clock.Now
	if b.opts.KeepSigned {
		if jopts.Signed, err = certauth.NewSignedState(b.home, b.path); err != nil {
			b.t.Fatal(err)
		}
	}
	if b.j, err = recorder.Open(b.ctx, b.st, jopts); err != nil {
		b.t.Fatal(err)
	}
}

// restart closes the journal and opens it again, as a bastion that
// stopped does when it starts: a session left open is then ended as
// abandoned.
func (b *simBastion) restart() {
	b.t.Helper()
	b.closeGrants()
	if err := b.j.Close(); err != nil {
		b.t.Fatal(err)
	}
	b.st.Close()
	b.openJournal()
	// The issuer and the grants store journal through the new writer.
	b.grantsOpts.Journal = b.j
	b.startIssuer()
	b.openGrants()
}

// policy is the policy in force.
func (b *simBastion) policy() *policy.Policy { return b.pol.Load() }

// reload puts p in force, as a reload of serve does (the caller
// journals it).
func (b *simBastion) reload(p *policy.Policy) {
	b.pol.Store(p)
	b.issuer.SetPolicy(p)
}

func (b *simBastion) event(name string, a recorder.Attrs) int64 {
	b.t.Helper()
	idx, err := b.j.AppendEvent(b.ctx, name, a)
	if err != nil {
		b.t.Fatal(err)
	}
	return idx
}

// token is an ID token of the provider for sub, valid from a minute ago
// for ten minutes on the clock.
func (b *simBastion) token(sub string, extra map[string]any) string {
	b.t.Helper()
	now := b.clock.Now()
	c := jwt.MapClaims{"iss": b.oidc.Issuer(), "sub": sub, "aud": "bastion", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	tok, err := b.oidc.Keypair.SignJWT(c)
	if err != nil {
		b.t.Fatal(err)
	}
	return tok
}

func (b *simBastion) identity(tok string) *policy.Identity {
	b.t.Helper()
	id, err := b.v.Verify(b.ctx, tok)
	if err != nil {
		b.t.Fatal(err)
	}
	return id
}

// issue trades tok for a certificate through the issuer, for an ed25519
// key derived from seed (the same key on every run), of the policy's
// default lifetime.
func (b *simBastion) issue(tok, seed string, client netip.Addr, logins ...string) *certauth.Issued {
	b.t.Helper()
	return b.issueTTL(tok, seed, client, 0, logins...)
}

// issueTTL is issue asking for a lifetime of ttl (zero: the default).
func (b *simBastion) issueTTL(tok, seed string, client netip.Addr, ttl time.Duration, logins ...string) *certauth.Issued {
	b.t.Helper()
	sum := sha256.Sum256([]byte(seed))
	priv := ed25519.NewKeyFromSeed(sum[:])
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		b.t.Fatal(err)
	}
	is, err := b.issuer.Issue(b.ctx, certauth.IssueRequest{Token: tok, PublicKey: string(ssh.MarshalAuthorizedKey(pub)), Logins: logins, TTL: ttl, ClientAddress: client})
	if err != nil {
		b.t.Fatal(err)
	}
	return is
}

// simFrame is one frame of a session, written step after the previous
// one on the clock.
type simFrame struct {
	kind recorder.Kind
	data []byte
	step time.Duration
}

func attrFrame(t testing.TB, kind recorder.Kind, a recorder.Attrs, step time.Duration) simFrame {
	t.Helper()
	p, err := recorder.EncodeAttrs(a)
	if err != nil {
		t.Fatal(err)
	}
	return simFrame{kind: kind, data: p, step: step}
}

// session records a session as the front door does: its start leaf with
// cert's attributes, then frames, then (unless end is nil) its end leaf.
// The frames are pipelined, as the front door's are: how many segment
// leaves they make depends on when the writer takes them, unless
// FrameByFrame waits for each frame's commit (a segment each).
func (b *simBastion) session(cert *certauth.Issued, client string, attrs recorder.Attrs, frames []simFrame, end recorder.Attrs) *recorder.Session {
	b.t.Helper()
	if cert != nil {
		attrs["identity"] = cert.Record.Identity
		attrs["serial"] = strconv.FormatUint(cert.Record.Serial, 10)
		attrs["key-id"] = cert.Cert.KeyId
	}
	attrs["kind"], attrs["client"] = "ssh", client
	s, err := b.j.StartSession(b.ctx, recorder.SessionInfo{Attrs: attrs})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, f := range frames {
		b.clock.Advance(f.step)
		seq, err := s.Append(f.kind, 0, f.data)
		if err != nil {
			b.t.Fatal(err)
		}
		if b.opts.FrameByFrame {
			if err := s.Wait(b.ctx, seq); err != nil {
				b.t.Fatal(err)
			}
		}
	}
	if end != nil {
		ctx := b.ctx
		if b.opts.QueueEnds {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			cancel()
		}
		if err := s.End(ctx, end); err != nil && !(b.opts.QueueEnds && errors.Is(err, context.Canceled)) {
			b.t.Fatal(err)
		}
	}
	return s
}

// settleGrants lets the grants store journal what is due at the clock's
// time, as its timer would at that moment: it reopens the store, whose
// timer goroutine settles at once, and waits until done says it has.
// (Its timer runs on the real clock; the test clock never reaches a
// deadline while the store is open, so only this settles.)
func (b *simBastion) settleGrants(done func(*grants.Grants) bool) {
	b.t.Helper()
	b.closeGrants()
	b.openGrants()
	deadline := time.Now().Add(30 * time.Second)
	for !done(b.grants) {
		if time.Now().After(deadline) {
			b.t.Fatal("the grants store did not settle")
		}
		time.Sleep(time.Millisecond)
	}
}

// grantIn reports a settle that left grant id in state.
func grantIn(id string, state grants.GrantState) func(*grants.Grants) bool {
	return func(g *grants.Grants) bool {
		gr, ok := g.Get(id)
		return ok && gr.State == state
	}
}

// withPolicyRecord adds to a policy.loaded event's attrs what serve
// records of the policy (bastion.PolicyRecord): its text and roles.
func withPolicyRecord(t testing.TB, p *policy.Policy, attrs recorder.Attrs) recorder.Attrs {
	t.Helper()
	rec, err := bastion.PolicyRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(attrs, rec)
	return attrs
}
