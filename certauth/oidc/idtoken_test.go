package oidc

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder/events"
)

// VerifyIDToken takes an ID token for the web client, with the sign-in's
// nonce, from the provider the sign-in was started with, and maps it as
// Verify maps a bearer token; anything else is refused.
func TestVerifyIDToken(t *testing.T) {
	t.Parallel()
	f := startDevFlow(t, "")
	v, err := NewVerifier([]ProviderConfig{{Name: "dev", Issuer: f.d.Issuer(), Audiences: []string{DevAudience}}}, VerifierOptions{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mint := func(aud, nonce string) string {
		t.Helper()
		claims := map[string]any{"email": "alice@bank.example"}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		tok, err := f.d.Mint("alice", []string{aud}, claims, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	id, err := v.VerifyIDToken(ctx, "dev", mint("console", "n1"), "console", "n1")
	if err != nil || id.Subject != "alice" || id.Provider != "dev" || id.Email != "alice@bank.example" {
		t.Fatalf("a good ID token: %v, %+v", err, id)
	}
	for _, c := range []struct {
		name, provider, raw, client, nonce, reason, msg string
	}{
		{"for another client", "dev", mint("other", "n1"), "console", "n1", events.ReasonWrongAudience, "audience"},
		{"a bearer token for the API", "dev", mint(DevAudience, "n1"), "console", "n1", events.ReasonWrongAudience, "audience"},
		{"another nonce", "dev", mint("console", "n2"), "console", "n1", events.ReasonTokenMalformed, "nonce"},
		{"no nonce", "dev", mint("console", ""), "console", "n1", events.ReasonTokenMalformed, "nonce"},
		{"no nonce expected", "dev", mint("console", "n1"), "console", "", events.ReasonTokenMalformed, "nonce"},
		{"another provider", "corp", mint("console", "n1"), "console", "n1", events.ReasonWrongIssuer, "not \"corp\""},
	} {
		_, err := v.VerifyIDToken(ctx, c.provider, c.raw, c.client, c.nonce)
		var te *TokenError
		if !errors.As(err, &te) || te.Reason != c.reason || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %s mentioning %q", c.name, err, c.reason, c.msg)
		}
	}
	// Expired, as Verify refuses it.
	tok := mint("console", "n1")
	f.clock.Add(2 * DevDefaultTTL)
	var te *TokenError
	if _, err := v.VerifyIDToken(ctx, "dev", tok, "console", "n1"); !errors.As(err, &te) || te.Reason != events.ReasonTokenExpired {
		t.Errorf("expired: %v", err)
	}
}
