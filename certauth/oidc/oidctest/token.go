package oidctest

import (
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// Start is where a [Clock] starts: tokens are minted around it, at the
// same times in every run.
var Start = time.Date(2026, 11, 27, 7, 5, 0, 0, time.UTC)

// Clock is a settable clock for a verifier's (or a grant store's) Now. It
// is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at Start.
func NewClock() *Clock { return &Clock{t: Start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Claims are the claims of a valid token from iss at now (subject alice,
// audience "bastion", issued a minute before now, expiring nine minutes
// after, with an email and two groups), changed by edits: a nil value
// deletes the claim.
func Claims(iss string, now time.Time, edits map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss":    iss,
		"sub":    "alice",
		"aud":    "bastion",
		"iat":    now.Add(-time.Minute).Unix(),
		"exp":    now.Add(9 * time.Minute).Unix(),
		"email":  "alice@example.com",
		"groups": []string{"ops", "dev"},
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// Sign mints a token of claims with m's own signing path.
func Sign(t testing.TB, m *mockoidc.MockOIDC, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := m.Keypair.SignJWT(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
