package oidctest

import (
	"crypto/rsa"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// StartMock starts mockoidc on a loopback port until the test ends: real
// discovery and JWKS, and a key pair (m.Keypair) to sign any claims with.
// key is its signing key; nil takes mockoidc's built-in one, which every
// instance shares. Requests are served one at a time: mockoidc's session
// map is not safe for concurrent use.
func StartMock(t testing.TB, key *rsa.PrivateKey) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.NewServer(key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			next.ServeHTTP(w, r)
		})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}
