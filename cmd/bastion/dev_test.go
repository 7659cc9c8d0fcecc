package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/bastionhq/bastion/certauth/oidc"
)

// serveDevIssuer does what "bastion serve --dev" does for dev token: it
// serves the development issuer of home on loopback until the test ends
// and publishes its URL. It returns a verifier for the issuer's tokens,
// found through discovery like the server's.
func serveDevIssuer(t *testing.T, home, audience string) (issuerURL string, v *gooidc.IDTokenVerifier) {
	t.Helper()
	d, err := oidc.OpenDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	issuerURL, serve, err := d.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if err := d.Publish(issuerURL); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	provider, err := gooidc.NewProvider(dctx, issuerURL)
	if err != nil {
		t.Fatal(err)
	}
	return issuerURL, provider.Verifier(&gooidc.Config{ClientID: audience, SupportedSigningAlgs: []string{gooidc.ES256}})
}

func TestDevToken(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	issuerURL, v := serveDevIssuer(t, home, oidc.DevAudience)

	code, stdout, stderr := runArgs("--home", home, "dev", "token", "--sub", "deploy-bot",
		"--sponsor", "alice",
		"--claim", `groups=["ops","dba"]`,
		"--claim", "level=9007199254740993",
		"--claim", "admin=true",
		"--claim", `ticket="4242"`,
		"--claim", "repository=bank/payments",
		"--claim", "note=[not json",
		"--claim", "ctx={\"env\": \"prod\"}",
		"--claim", "empty=",
		"--ttl", "30m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "bastion: warning: DEVELOPMENT ONLY") {
		t.Errorf("no development warning on stderr: %q", stderr)
	}
	token := strings.TrimSuffix(stdout, "\n")
	if strings.ContainsAny(token, " \n") || strings.Count(token, ".") != 2 {
		t.Fatalf("stdout is not one compact JWT: %q", stdout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idt, err := v.Verify(ctx, token)
	if err != nil {
		t.Fatalf("the running issuer refused the token: %v", err)
	}
	if idt.Subject != "alice" || idt.Issuer != issuerURL { // the sponsor; the actor is in act
		t.Errorf("sub %q iss %q", idt.Subject, idt.Issuer)
	}
	if got := idt.Expiry.Sub(idt.IssuedAt); got != 30*time.Minute {
		t.Errorf("lifetime %v, want 30m", got)
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"act":        `{"sub":"deploy-bot"}`,
		"groups":     `["ops","dba"]`,
		"level":      `9007199254740993`,
		"admin":      `true`,
		"ticket":     `"4242"`,
		"repository": `"bank/payments"`,
		"note":       `"[not json"`,
		"ctx":        `{"env":"prod"}`,
		"empty":      `""`,
		"aud":        `"bastion"`,
	}
	for k, w := range want {
		if string(claims[k]) != w {
			t.Errorf("claim %s = %s, want %s", k, claims[k], w)
		}
	}
}

func TestDevTokenJSON(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	issuerURL, v := serveDevIssuer(t, home, "payments")

	before := time.Now().Truncate(time.Second)
	code, stdout, stderr := runArgs("--home", home, "dev", "token", "--sub", "alice", "--aud", "payments", "--aud", "bastion", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out struct {
		Token     string    `json:"token"`
		Issuer    string    `json:"issuer"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	if out.Issuer != issuerURL {
		t.Errorf("issuer %q, want %q", out.Issuer, issuerURL)
	}
	if d := out.ExpiresAt.Sub(before); d < oidc.DevDefaultTTL || d > oidc.DevDefaultTTL+time.Minute {
		t.Errorf("expires_at %v is %v after the start, want about %v", out.ExpiresAt, d, oidc.DevDefaultTTL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idt, err := v.Verify(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if !idt.Expiry.Equal(out.ExpiresAt) || strings.Join(idt.Audience, ",") != "payments,bastion" {
		t.Errorf("exp %v aud %q", idt.Expiry, idt.Audience)
	}
}

func TestDevTokenErrors(t *testing.T) {
	t.Parallel()
	published := t.TempDir()
	serveDevIssuer(t, published, oidc.DevAudience)
	empty := filepath.Join(t.TempDir(), "home")

	tests := []struct {
		name   string
		home   string
		args   []string
		code   int
		stderr []string
	}{
		{"not published", empty, []string{"--sub", "alice"}, 1, []string{
			"bastion: error: no development issuer has been published in " + empty + "\n",
			`bastion: hint: start "bastion serve --dev" with this home first`,
		}},
		{"no sub", published, nil, 2, []string{"needs --sub NAME", `hint: run "bastion help dev token" for usage`}},
		{"argument", published, []string{"--sub", "a", "b"}, 2, []string{"takes no arguments"}},
		{"ttl too long", published, []string{"--sub", "a", "--ttl", "25h"}, 2, []string{"--ttl 25h0m0s: want a duration above 0 and up to 24h0m0s"}},
		{"ttl zero", published, []string{"--sub", "a", "--ttl", "0"}, 2, []string{"--ttl 0s"}},
		{"empty aud", published, []string{"--sub", "a", "--aud", ""}, 2, []string{"empty audience"}},
		{"claim without value", published, []string{"--sub", "a", "--claim", "groups"}, 2, []string{`--claim "groups": want NAME=VALUE`}},
		{"claim without name", published, []string{"--sub", "a", "--claim", "=x"}, 2, []string{"want NAME=VALUE"}},
		{"claim twice", published, []string{"--sub", "a", "--claim", "x=1", "--claim", "x=2"}, 2, []string{"--claim x given twice"}},
		{"reserved claim", published, []string{"--sub", "a", "--claim", "exp=1"}, 2, []string{
			`reserved claim "exp"`, "hint: set sub, aud and exp with --sub, --aud and --ttl",
		}},
		{"two acts", published, []string{"--sub", "a", "--sponsor", "b", "--claim", `act={"sub":"c"}`}, 2, []string{"both set the act claim"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runArgs(append([]string{"--home", tt.home, "dev", "token"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q, want %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "warning") {
				t.Errorf("warning printed without a token: %q", stderr)
			}
		})
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("dev token without an issuer created the home: %v", err)
	}
}
