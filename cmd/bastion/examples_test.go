package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/recorder/witness/witnesstest"
)

// examplesDir holds the example configurations the documentation points
// to.
const examplesDir = "../../docs/examples"

// TestExamplesPolicyCheck: every example configuration, as shipped, passes
// "bastion policy check".
func TestExamplesPolicyCheck(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.hcl"))
	if err != nil || len(files) < 2 {
		t.Fatalf("example configurations: %q %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errOut := cli(context.Background(), t.TempDir(), "policy", "check", "--config", f)
			if code != 0 || !strings.Contains(out, ": ok: ") || !strings.Contains(out, " 0 warnings") {
				t.Fatalf("policy check --config %s: exit %d\n%s%s", f, code, out, errOut)
			}
		})
	}
}

// TestExampleMinimal runs docs/examples/minimal.hcl as its comment says,
// on free loopback ports: serve --dev with it, a dev token, login, and the
// ssh line serve prints reaches the shell target with the real client.
func TestExampleMinimal(t *testing.T) {
	t.Parallel()
	sshPath := opensshClient(t)
	home := t.TempDir()
	user := filepath.Join(home, "user")
	if code, _, errOut := cli(context.Background(), home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	sp := startServeBanner(t, []string{"BASTION_HOME=" + home, "HOME=" + user},
		"serve", "--dev", "--config", filepath.Join(examplesDir, "minimal.hcl"), "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0")
	api := sp.find(t, `(?m)^bastion serve: HTTPS API at (https://\S+)$`)[1]
	port := sp.find(t, `(?m)^bastion serve: SSH front door at 127\.0\.0\.1:(\d+)$`)[1]
	fp := sp.find(t, `(?m)^  TLS:       self-signed, fingerprint (SHA256:\S+)$`)[1]
	pattern := "[127.0.0.1]:" + port + ",[localhost]:" + port + ",shell,prod-shell"
	sp.find(t, `(?m)^  host CA:   trusted for `+regexp.QuoteMeta(pattern)+` `)
	generic := sp.find(t, `(?m)^  ssh:       (ssh -i ~/\.ssh/bastion_ed25519 -p `+port+` LOGIN@TARGET@127\.0\.0\.1)$`)[1]
	line := strings.Replace(generic, "LOGIN@TARGET@", "dev@shell@", 1)

	run := loginForSSH(t, sshPath, home, api, fp, pattern, line)
	if out, err := run(); err != nil || !strings.Contains(out, "first-hour from /bin/sh") {
		t.Fatalf("%s: %v\n%s\nserve:\n%s", line, err, out, sp.stderr.String())
	}
	if code := sp.stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, sp.stderr.String())
	}
	if code, out, errOut := cli(context.Background(), home, "verify"); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
}

// TestExampleProduction starts serve on docs/examples/production.hcl. Its
// identity providers, witnesses and webhook must answer, so a copy points
// them at real ones on loopback: a zitadel OpenID provider with the device
// flow for "corp", mockoidc for "agents", two litewitness instances, and a
// web server for the webhook; its home is the test's, and its listeners
// free loopback ports (--listen, --ssh-listen). Everything else is the
// file as shipped. serve must start, hand out the host CA for its own
// names only, and have its checkpoints cosigned by the witnesses.
func TestExampleProduction(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	if code, _, errOut := cli(context.Background(), home, "ca", "init", "--origin", "bastion.bank.example/journal"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	logKey, err := os.ReadFile(filepath.Join(home, certauth.JournalPubKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	w1 := witnesstest.Start(t, "witness.example.org/w1", strings.TrimSpace(string(logKey)))
	w2 := witnesstest.Start(t, "witness.example.net/w2", strings.TrimSpace(string(logKey)))
	corp, _ := oidctest.StartDeviceOP(t)
	agents := oidctest.StartMock(t, nil)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()

	src, err := os.ReadFile(filepath.Join(examplesDir, "production.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(src)
	for _, r := range []struct{ from, to string }{
		{`home    = "/var/lib/bastion"`, `home    = "` + home + `"`},
		{`issuer           = "https://login.bank.example"`, `issuer           = "` + corp + `"`},
		{`issuer        = "https://token.actions.example"`, `issuer        = "` + agents.Issuer() + `"`},
		{`webhook_url = "https://chat.bank.example/hooks/bastion"`, `webhook_url = "` + hook.URL + `/hooks/bastion"`},
		{`url = "https://witness.example.org/w1"`, `url = "` + w1.URL + `"`},
		{`key = "witness.example.org/w1+d70dff8b+BAUYSr72zkouzeOgHq3RjHFZ1zP3O7F/XAqxBpmKQFE0"`, `key = "` + w1.VKey + `"`},
		{`url = "https://witness.example.net/w2"`, `url = "` + w2.URL + `"`},
		{`key = "witness.example.net/w2+da3b99d7+BDrW8sf/W3GAg1W0TnLP3Bfb/Htp/IWHYWPgaopgKUHl"`, `key = "` + w2.VKey + `"`},
	} {
		if !strings.Contains(cfg, r.from) {
			t.Fatalf("production.hcl no longer has %s", r.from)
		}
		cfg = strings.Replace(cfg, r.from, r.to, 1)
	}
	path := filepath.Join(t.TempDir(), "bastion.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli(context.Background(), home, "policy", "check", "--config", path); code != 0 {
		t.Fatalf("policy check of the copy: %d\n%s%s", code, out, errOut)
	}

	sp := startServeBanner(t, []string{"HOME=" + filepath.Join(home, "user")},
		"serve", "--config", path, "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0")
	api := sp.find(t, `(?m)^bastion serve: HTTPS API at (https://\S+)$`)[1]
	port := sp.find(t, `(?m)^bastion serve: SSH front door at 127\.0\.0\.1:(\d+)$`)[1]
	fp := sp.find(t, `(?m)^  TLS:       self-signed, fingerprint (SHA256:\S+)$`)[1]
	sp.find(t, `(?m)^  witnesses: w1 \(.*\), w2 \(.*\); threshold 1, stale after 10m0s$`)
	pattern := "[bastion.bank.example]:" + port + ",[127.0.0.1]:" + port + ",[localhost]:" + port + ",db1"
	sp.find(t, `(?m)^  host CA:   trusted for `+regexp.QuoteMeta(pattern)+` `)
	sp.find(t, `(?m)^  ssh:       ssh -i ~/\.ssh/bastion_ed25519 -p `+port+` LOGIN@TARGET@127\.0\.0\.1$`)

	// The API, pinned by the fingerprint serve printed.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the pin below is the check
		VerifyConnection: func(cs tls.ConnectionState) error {
			if certauth.TLSFingerprint(cs.PeerCertificates[0]) != fp {
				return errors.New("not the pinned certificate")
			}
			return nil
		},
	}}}
	get := func(path string, v any) int {
		t.Helper()
		resp, err := hc.Get(api + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode
	}
	var ca certauth.CAResponse
	if code := get("/v1/ca", &ca); code != 200 || len(ca.KnownHosts) != 1 || !strings.HasPrefix(ca.KnownHosts[0], "@cert-authority "+pattern+" ") ||
		ca.SSHAddress != "127.0.0.1:"+port || len(ca.Issuers) != 2 {
		t.Fatalf("GET /v1/ca: %d %+v", code, ca)
	}
	// The witnesses cosign the checkpoints serve pushes.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ready struct {
			Status        string `json:"status"`
			WitnessQuorum string `json:"witness_quorum"`
			Cosigning     *int   `json:"witnesses_cosigning"`
		}
		code := get("/readyz", &ready)
		if code == 200 && ready.WitnessQuorum == "ok" && ready.Cosigning != nil && *ready.Cosigning == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %+v\nserve:\n%s", code, ready, sp.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := sp.stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, sp.stderr.String())
	}
}
