package oidc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/recorder/events"
)

// oidcReasons are every Reason a TokenError may carry.
var oidcReasons = []string{
	events.ReasonTokenMalformed, events.ReasonTokenTooLarge, events.ReasonIssuerUnknown, events.ReasonAlgNotAllowed,
	events.ReasonUnknownKey, events.ReasonBadSignature, events.ReasonWrongIssuer, events.ReasonWrongAudience,
	events.ReasonTokenExpired, events.ReasonTokenNotYetValid, events.ReasonTokenIssuedInFuture, events.ReasonTokenTooOld,
	events.ReasonMissingClaim, events.ReasonProviderUnavailable,
}

// FuzzVerify feeds Verify arbitrary strings, seeded with valid tokens and
// the bad ones of the matrix. Verify must not panic, must answer every
// refusal with a *TokenError of a known reason that does not quote the
// input, and must accept nothing but the validly signed seeds: with
// strict base64url and a deterministic signature (RS256), no other string
// can carry a valid signature.
func FuzzVerify(f *testing.F) {
	m := oidctest.StartMock(f, nil)
	clock := oidctest.NewClock()
	v := newTestVerifier(f, clock, ProviderConfig{Name: "corp", Issuer: m.Issuer(), Audiences: []string{"bastion"}, SponsorClaim: "sponsor"})
	iss := m.Issuer()
	kid := mockKid(f, m)
	sign := func(edits map[string]any) string {
		return oidctest.Sign(f, m, oidctest.Claims(iss, oidctest.Start, edits))
	}

	valid := []string{
		sign(nil),
		sign(map[string]any{"act": map[string]any{"sub": "bob"}, "groups": "ops", "aud": []string{"x", "bastion"}}),
		sign(map[string]any{"sponsor": "team", "nbf": oidctest.Start.Unix(), "iat": float64(oidctest.Start.Unix()) - 0.25}),
	}
	for _, tok := range valid {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			f.Fatalf("seed does not verify: %v", err)
		}
		f.Add(tok)
	}
	header := mustJSON(f, map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid})
	payload := mustJSON(f, oidctest.Claims(iss, oidctest.Start, nil))
	parts := strings.Split(valid[0], ".")
	for _, s := range []string{
		sign(map[string]any{"exp": oidctest.Start.Add(-time.Hour).Unix()}),
		sign(map[string]any{"sub": nil}),
		sign(map[string]any{"aud": "x"}),
		sign(map[string]any{"iat": oidctest.Start.Add(-3 * time.Hour).Unix()}),
		oidctest.Sign(f, m, jwt.MapClaims{"iss": "https://evil.example.com"}),
		rawToken(`{"alg":"none"}`, payload, nil),
		hs256Raw(`{"alg":"HS256","kid":"`+kid+`"}`, payload, []byte("secret")),
		rs256Raw(f, oidcTestRSAKey(), header, payload),
		rs256Raw(f, oidcTestRSAKey(), `{"alg":"RS256","kid":"other"}`, payload),
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		rawToken(header, `{"iss":`+mustJSON(f, iss)+`}`, []byte("sig")),
		"", ".", "..", "a.b.c", "e30.e30.", "e30.e30.e30",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, s string) {
		id, err := v.Verify(context.Background(), s)
		if err == nil {
			if !slices.Contains(valid, s) {
				t.Fatalf("accepted a token that is not one of the validly signed seeds: %q → %+v", s, id)
			}
			if id == nil || id.Subject == "" || id.Provider != "corp" {
				t.Fatalf("accepted with identity %+v", id)
			}
			return
		}
		if id != nil {
			t.Fatalf("identity %+v returned with error %v", id, err)
		}
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("error %v (%T) is not a *TokenError", err, err)
		}
		if !slices.Contains(oidcReasons, te.Reason) {
			t.Fatalf("unknown reason %q", te.Reason)
		}
		if te.Reason == events.ReasonProviderUnavailable {
			t.Fatalf("provider unavailable: %v", err)
		}
		if msg := te.Error(); msg == "" || len(s) >= 24 && strings.Contains(msg, s) {
			t.Fatalf("message %q is empty or quotes the token", msg)
		}
	})
}
