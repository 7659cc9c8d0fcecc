package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// statusCert writes a key's certificate, signed by a CA of its own, to
// dir/id_ed25519-cert.pub, and returns the key's path.
func statusCert(t *testing.T, dir, keyID string, principals []string, validBefore time.Time) string {
	t.Helper()
	user := loginSigner(t)
	cert := &ssh.Certificate{
		Key: user.PublicKey(), Serial: 42, CertType: ssh.UserCert, KeyId: keyID, ValidPrincipals: principals,
		ValidAfter: uint64(validBefore.Add(-time.Hour).Unix()), ValidBefore: uint64(validBefore.Unix()),
	}
	if err := cert.SignCert(rand.Reader, loginSigner(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestStatusOffline: the certificate part works with no profile and no
// server: who, logins, expiry; an expired or missing certificate and the
// missing profile are reasons, exit 1.
func TestStatusOffline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	u := clientUser{home: filepath.Join(dir, "home")}
	profile := filepath.Join(u.home, ".config", "bastion", "profile.json")

	valid := statusCert(t, filepath.Join(dir, "valid"), "agent-1@ci serial=42 for=alice ticket=CHG-7 grant=G-9", []string{"deploy", "ops"}, time.Now().Add(10*time.Minute))
	expired := statusCert(t, filepath.Join(dir, "expired"), "agent-1@ci serial=41", []string{"deploy"}, time.Now().Add(-3*time.Minute))

	code, out, errOut := u.run(ctx, "status", "--key", valid)
	for _, want := range []string{
		"identity:     agent-1@ci (for alice, ticket CHG-7, grant G-9)\n", "logins:       deploy, ops\n",
		"expires:      ", ", in 9m", "certificate:  " + valid + "-cert.pub (serial 42)\n",
		"server:       unknown: no client profile names one\n", "profile:      none at " + profile + "\n", "answers:      not asked: no server known\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code != exitFailure || errOut != "bastion: error: not ready: there is no client profile at "+profile+"\n"+
		"bastion: hint: log in once with the server's address: bastion login --server URL [--ca-fingerprint SHA256:...] [--token-file FILE | --token-env VAR]\n" {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}

	code, out, _ = u.run(ctx, "status", "--key", valid, "--json")
	var st statusJSON
	if code != exitFailure || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	c := st.Certificate
	if st.OK || !slices.Equal(st.Problems, []string{"there is no client profile at " + profile}) || st.Profile.Found ||
		!c.Found || c.Serial != 42 || c.Identity != "agent-1@ci" || c.Sponsor != "alice" || c.Ticket != "CHG-7" || c.Grant != "G-9" ||
		!slices.Equal(c.Principals, []string{"deploy", "ops"}) || c.Expired || c.SecondsLeft < 500 || c.SecondsLeft > 600 ||
		c.SignedByServer != nil || st.Server.URL != "" || st.Server.Answers {
		t.Errorf("status --json: %+v", st)
	}
	var raw map[string]any
	json.Unmarshal([]byte(out), &raw)
	if _, ok := jsonAt(raw, "certificate").(map[string]any)["signed_by_server"]; ok {
		t.Errorf("signed_by_server is present without a server: %s", out)
	}

	code, out, errOut = u.run(ctx, "status", "--key", expired)
	if code != exitFailure || !strings.Contains(out, "expires:      EXPIRED at ") || !regexp.MustCompile(`, 3m[01]s ago\n`).MatchString(out) ||
		!strings.Contains(errOut, "the certificate expired at ") {
		t.Errorf("expired: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = u.run(ctx, "status")
	cert := filepath.Join(u.home, ".ssh", "bastion_ed25519-cert.pub")
	if code != exitFailure || !strings.HasPrefix(out, "identity:     unknown: no certificate at "+cert+"\n") || strings.Contains(out, "logins:") ||
		!strings.Contains(errOut, "no certificate at "+cert) {
		t.Errorf("no certificate: exit %d\n%s%s", code, out, errOut)
	}

	if code, _, errOut := u.run(ctx, "status", "extra"); code != exitUsage || !strings.Contains(errOut, "status takes no arguments") {
		t.Errorf("status extra: exit %d\n%s", code, errOut)
	}
}

func TestStatusParseKeyID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		keyID                            string
		identity, sponsor, ticket, grant string
	}{
		{"agent-1@ci serial=42", "agent-1@ci", "", "", ""},
		{"agent-1@ci serial=42 for=alice@corp ticket=OPS-7 grant=G-9", "agent-1@ci", "alice@corp", "OPS-7", "G-9"},
		{"bob@corp serial=7 ticket=CHG-1", "bob@corp", "", "CHG-1", ""},
		{"laptop key of bob", "", "", "", ""},
		{"", "", "", "", ""},
	} {
		id, sp, tk, g := statusParseKeyID(tt.keyID)
		if id != tt.identity || sp != tt.sponsor || tk != tt.ticket || g != tt.grant {
			t.Errorf("%q: %q %q %q %q", tt.keyID, id, sp, tk, g)
		}
	}
}
