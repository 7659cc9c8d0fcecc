package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bastionhq/bastion/certauth/oidc"
)

func init() {
	register(&command{
		name:    "dev token",
		summary: "mint a token from the development identity provider (development only)",
		usage:   devTokenUsage,
		run:     runDevToken,
	})
}

const devTokenUsage = `Usage:
    bastion dev token --sub NAME [--claim NAME=VALUE]... [--sponsor NAME]
                      [--aud AUDIENCE]... [--ttl DURATION] [--json]

FOR DEVELOPMENT AND DEMOS ONLY. Mints an OpenID Connect ID token from the
development identity provider that "bastion serve --dev" runs, and prints
it. The bastion checks it like any other token: discovery, the provider's
public key, signature, audience and expiry.

dev token needs no network: it signs with the provider's key in the home
directory (dev/issuer.key) for the issuer URL the running server published
there (dev/issuer.json), so give it the same --home as the server. Anyone
who can read that directory can mint any identity: never let a production
bastion trust the development provider.

Flags:
    --sub NAME           the subject, the identity the token names (required)
    --claim NAME=VALUE   an extra claim; repeat for more. A VALUE that is JSON
                         (an array, object, number, true, false or a quoted
                         string) is used as such, anything else as a string
    --sponsor NAME       the human the --sub identity acts for: makes an RFC
                         8693 delegation token, "sub": NAME with
                         "act": {"sub": the --sub identity}; bastion reads
                         the actor as the identity and NAME as its sponsor
    --aud AUDIENCE       an audience; repeat for more (default: bastion)
    --ttl DURATION       how long the token is valid, up to 24h (default 10m)
    --json               print {"token", "issuer", "expires_at"} instead of
                         the bare token

Examples:
    $ bastion dev token --sub alice
    $ bastion dev token --sub deploy-bot --sponsor alice --claim 'groups=["ops","dba"]'
    $ bastion dev token --sub ci --claim repository=bank/payments --ttl 5m
    $ bastion dev token --sub alice --json | jq -r .expires_at`

// devTokenJSON is what dev token --json prints.
type devTokenJSON struct {
	Token     string    `json:"token"`
	Issuer    string    `json:"issuer"`
	ExpiresAt time.Time `json:"expires_at"`
}

// devFlagList is a repeatable string flag: --claim and --aud.
type devFlagList []string

func (l *devFlagList) String() string     { return strings.Join(*l, ",") }
func (l *devFlagList) Set(v string) error { *l = append(*l, v); return nil }

func runDevToken(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	sub := fs.String("sub", "", "subject `NAME`")
	sponsor := fs.String("sponsor", "", "sponsor `NAME`")
	ttl := fs.Duration("ttl", oidc.DevDefaultTTL, "lifetime")
	asJSON := fs.Bool("json", false, "JSON output")
	var claimArgs, aud devFlagList
	fs.Var(&claimArgs, "claim", "extra claim `NAME=VALUE`")
	fs.Var(&aud, "aud", "`AUDIENCE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("dev token takes no arguments")
	case *sub == "":
		return usageErrorf("dev token needs --sub NAME")
	case *ttl <= 0 || *ttl > oidc.DevMaxTTL:
		return usageErrorf("--ttl %v: want a duration above 0 and up to %v", *ttl, oidc.DevMaxTTL)
	case slices.Contains(aud, ""):
		return usageErrorf("--aud: empty audience")
	}
	claims, err := parseDevClaims(claimArgs)
	if err != nil {
		return err
	}
	if *sponsor != "" {
		if _, ok := claims["act"]; ok {
			return usageErrorf("--sponsor and --claim act=... both set the act claim: give one")
		}
		// RFC 8693: "sub" is on whose behalf, "act.sub" who acts.
		claims["act"] = map[string]any{"sub": *sub}
		*sub = *sponsor
	}

	home, err := e.home()
	if err != nil {
		return err
	}
	d, err := oidc.LoadDevIssuer(home)
	if errors.Is(err, oidc.ErrNoDevIssuer) {
		return withHint(err,
			`start "bastion serve --dev" with this home first: dev token mints for the issuer URL it publishes in `+
				filepath.Join(home, oidc.DevDir, oidc.DevIssuerFile))
	}
	if err != nil {
		return err
	}
	token, err := d.Mint(*sub, aud, claims, *ttl)
	if errors.Is(err, oidc.ErrReservedClaim) {
		return withHint(&usageError{err}, "set sub, aud and exp with --sub, --aud and --ttl")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "bastion: warning: DEVELOPMENT ONLY: anyone who can read %s can mint such a token for any identity; never trust the development provider in production\n",
		filepath.Join(home, oidc.DevDir))
	if !*asJSON {
		fmt.Fprintln(e.stdout, token)
		return nil
	}
	exp, err := devTokenExpiry(token)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(devTokenJSON{Token: token, Issuer: d.Issuer(), ExpiresAt: exp})
}

// parseDevClaims turns --claim NAME=VALUE arguments into claims. A VALUE that
// is a JSON array, object, number, boolean or string is decoded (numbers
// exactly, as json.Number); anything else, null included, is the string
// as given.
func parseDevClaims(args []string) (map[string]any, error) {
	claims := make(map[string]any, len(args)+1)
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		switch {
		case !ok || name == "":
			return nil, usageErrorf("--claim %q: want NAME=VALUE", a)
		}
		if _, dup := claims[name]; dup {
			return nil, usageErrorf("--claim %s given twice", name)
		}
		claims[name] = devClaimValue(value)
	}
	return claims, nil
}

func devClaimValue(s string) any {
	if !json.Valid([]byte(s)) {
		return s
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || v == nil {
		return s
	}
	return v
}

// devTokenExpiry reads the exp of a token this process has just minted, so
// it needs no verification.
func devTokenExpiry(token string) (time.Time, error) {
	t, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return time.Time{}, err
	}
	var c jwt.Claims
	if err := t.UnsafeClaimsWithoutVerification(&c); err != nil {
		return time.Time{}, err
	}
	if c.Expiry == nil {
		return time.Time{}, errors.New("minted token has no exp")
	}
	return c.Expiry.Time().UTC(), nil
}
