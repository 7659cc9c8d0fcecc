package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cli runs one bastion command line in-process with home as $BASTION_HOME
// and $HOME, and returns its exit status and output.
func cli(ctx context.Context, home string, args ...string) (int, string, string) {
	var out, errOut lockedBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string {
		switch k {
		case "BASTION_HOME":
			return home
		case "HOME":
			return filepath.Join(home, "user")
		}
		return ""
	}}
	code := run(ctx, args, e)
	return code, out.String(), errOut.String()
}

// TestServeLoginRevoke drives the whole certificate path through the CLI:
// ca init, serve --dev, dev token, login, certs list, certs revoke through
// the running server, and verify after it stops.
func TestServeLoginRevoke(t *testing.T) {
	t.Parallel()
	keygen := sshKeygen(t)
	ctx := context.Background()
	home := t.TempDir()
	if code, _, errOut := cli(ctx, home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}

	sctx, stop := context.WithCancel(ctx)
	var serveOut, serveErr lockedBuffer
	done := make(chan int, 1)
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &serveOut, stderr: &serveErr, getenv: func(k string) string {
			if k == "BASTION_HOME" {
				return home
			}
			return ""
		}}
		done <- run(sctx, []string{"serve", "--dev", "--dev-login", "deploy", "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0"}, e)
	}()
	var api, fp string
	deadline := time.Now().Add(20 * time.Second)
	for api == "" || fp == "" {
		out := serveOut.String()
		if m := regexp.MustCompile(`HTTPS API at (https://\S+)`).FindStringSubmatch(out); m != nil {
			api = m[1]
		}
		if m := regexp.MustCompile(`fingerprint (SHA256:\S+)`).FindStringSubmatch(out); m != nil {
			fp = m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s\n%s", code, out, serveErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s\n%s", out, serveErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, token, errOut := cli(ctx, home, "dev", "token", "--sub", "agent-1", "--claim", "repository=bank/app")
	if code != 0 || !strings.Contains(errOut, "DEVELOPMENT ONLY") {
		t.Fatalf("dev token: %d %s", code, errOut)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(ctx, home, "login", "--server", api, "--ca-fingerprint", fp, "--token-file", tokenFile, "--ticket", "CHG-7", "--json")
	if code != 0 {
		t.Fatalf("login: %s", errOut)
	}
	var res struct {
		CertificateFile string   `json:"certificate_file"`
		Serial          uint64   `json:"serial"`
		KeyID           string   `json:"key_id"`
		Principals      []string `json:"principals"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("login --json: %v\n%s", err, out)
	}
	if res.KeyID != "agent-1@dev serial="+itoa(res.Serial)+" ticket=CHG-7" || strings.Join(res.Principals, ",") != "deploy" {
		t.Fatalf("login: %+v", res)
	}
	listing, err := exec.Command(keygen, "-L", "-f", res.CertificateFile).CombinedOutput()
	if err != nil || !strings.Contains(string(listing), res.KeyID) {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, listing)
	}

	// A wrong pin is refused before anything is sent.
	if code, _, errOut := cli(ctx, home, "login", "--server", api, "--ca-fingerprint", "SHA256:"+strings.Repeat("A", 43), "--token-file", tokenFile); code != 1 || !strings.Contains(errOut, "fingerprint") {
		t.Fatalf("login with a wrong pin: %d %s", code, errOut)
	}

	code, out, errOut = cli(ctx, home, "certs", "list", "--json")
	if code != 0 || !strings.Contains(out, `"key_id": "`+res.KeyID+`"`) {
		t.Fatalf("certs list: %d %s %s", code, out, errOut)
	}
	code, out, errOut = cli(ctx, home, "certs", "revoke", "--serial", itoa(res.Serial), "--reason", "test")
	if code != 0 || !strings.Contains(out, "through the running server") {
		t.Fatalf("certs revoke: %d %s %s", code, out, errOut)
	}
	krl := filepath.Join(home, "revoked.krl")
	if out, err := exec.Command(keygen, "-Q", "-f", krl, res.CertificateFile).CombinedOutput(); err == nil || !bytes.Contains(out, []byte("REVOKED")) {
		t.Fatalf("ssh-keygen -Q: %v %s", err, out)
	}
	code, out, _ = cli(ctx, home, "certs", "list")
	if code != 0 || !regexp.MustCompile(`(?m)^`+itoa(res.Serial)+`\s+agent-1@dev\s+deploy\s+\S+\s+revoked `).MatchString(out) {
		t.Fatalf("certs list after revoke: %s", out)
	}

	stop()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, serveErr.String())
	}
	if code, out, errOut := cli(ctx, home, "verify"); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
