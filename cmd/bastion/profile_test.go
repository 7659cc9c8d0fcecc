package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bastionhq/bastion/policy/grants"
)

// clientUser runs bastion as a user of the bastion: $HOME is home, and
// vars are the other environment variables (none else is set).
type clientUser struct {
	home string
	vars map[string]string
}

func (u clientUser) env(stdout, stderr *lockedBuffer) *env {
	return &env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, getenv: func(k string) string {
		if k == "HOME" {
			return u.home
		}
		return u.vars[k]
	}}
}

func (u clientUser) run(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut lockedBuffer
	code := run(ctx, args, u.env(&out, &errOut))
	return code, out.String(), errOut.String()
}

// profileConfig writes a configuration for "serve --dev": a shell target
// db-1, a standing role giving agents and bob the login ops on it, and a
// grant-only role giving agents deploy on it, approved by bob; no rate
// limits, since the test asks for many grants.
func profileConfig(t *testing.T, dir, home string) string {
	t.Helper()
	policyFile := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(policyFile, []byte(`
identity "agents" {
  providers = ["dev"]
  subjects  = ["agent-*"]
}
identity "approvers" {
  providers = ["dev"]
  subjects  = ["bob"]
}
role "standing" {
  identities = ["agents", "approvers"]
  targets    = ["db-1"]
  logins     = ["ops"]
}
role "db-grant" {
  identities = ["agents"]
  targets    = ["db-1"]
  logins     = ["deploy"]
  access     = "grant"
  approval {
    approvers    = ["approvers"]
    max_duration = "1h"
  }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home   = %q
policy = %q
api {
  listen            = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh { listen = "127.0.0.1:0" }
target "db-1" { command = ["/bin/sh"] }
`, home, policyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestProfileFirstHour is the client side of the first hour against a real
// "serve --dev": without a profile, grants and status say to log in first;
// one login with flags writes the profile (0600 in a 0700 directory, no
// token in it); then status, grants request/show/approve/list, a bare
// login and login --renew need no connection flags; flags win over the
// profile; grant IDs resolve by unique prefix; --profile,
// $BASTION_PROFILE and $XDG_CONFIG_HOME place the profile; a profile
// others may write is refused; status reports a server that is gone.
func TestProfileFirstHour(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	home, _ := rigHome(t, dir, false)
	var serveLog lockedBuffer
	sp, _ := startDevServe(t, profileConfig(t, dir, home), &serveLog)
	agentTok := devTokenFile(t, home, dir, "agent-1")
	bobTok := devTokenFile(t, home, dir, "bob")
	token, err := os.ReadFile(agentTok)
	if err != nil {
		t.Fatal(err)
	}

	agent := clientUser{home: filepath.Join(dir, "agent")}
	profile := filepath.Join(agent.home, ".config", "bastion", "profile.json")

	// Before any login: the next step is named, and nothing is written.
	code, _, errOut := agent.run(ctx, "grants", "list")
	if code != exitUsage || !strings.Contains(errOut, "grants list needs --server URL") ||
		!strings.Contains(errOut, "no client profile at "+profile) ||
		!strings.Contains(errOut, "bastion: hint: log in once with the server's address; later commands remember it: bastion login --server URL") {
		t.Fatalf("grants list without a profile: exit %d\n%s", code, errOut)
	}
	code, out, errOut := agent.run(ctx, "status")
	if code != exitFailure || !strings.Contains(out, "profile:      none at "+profile) || !strings.Contains(out, "answers:      not asked") ||
		!strings.Contains(errOut, "bastion: hint: log in once") {
		t.Fatalf("status without a profile: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Fatalf("a profile exists before login: %v", err)
	}

	// The one login with flags.
	code, out, errOut = agent.run(ctx, "login", "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-file", agentTok)
	if code != 0 || !strings.Contains(out, "  profile:      "+profile+" (") {
		t.Fatalf("login: exit %d\n%s%s", code, out, errOut)
	}
	if m := fileMode(t, profile); m != 0o600 {
		t.Errorf("profile mode %04o, want 0600", m)
	}
	if m := fileMode(t, filepath.Dir(profile)); m != 0o700 {
		t.Errorf("profile directory mode %04o, want 0700", m)
	}
	raw, err := os.ReadFile(profile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), strings.TrimSpace(string(token))) {
		t.Fatalf("the profile holds the token:\n%s", raw)
	}
	var saved map[string]any
	if err := json.Unmarshal(raw, &saved); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(agent.home, ".ssh", "bastion_ed25519")
	wantSaved := map[string]any{"version": 1.0, "server": sp.api, "ca_fingerprint": sp.fingerprint, "token_file": agentTok,
		"key": key, "known_hosts": filepath.Join(agent.home, ".ssh", "known_hosts")}
	if len(saved) != len(wantSaved) {
		t.Errorf("profile %v, want exactly %v", saved, wantSaved)
	}
	for k, v := range wantSaved {
		if saved[k] != v {
			t.Errorf("profile %s = %v, want %v", k, saved[k], v)
		}
	}

	// status: the certificate, the server, and that it answers.
	code, out, errOut = agent.run(ctx, "status")
	for _, want := range []string{
		"identity:     agent-1@dev\n", "logins:       ops\n", "expires:      ", ", in ",
		"certificate:  " + key + "-cert.pub (serial ", "server:       " + sp.api + "\n", "pin:          " + sp.fingerprint + "\n",
		"token:        read from the file " + agentTok + "\n", "profile:      " + profile + "\n", "answers:      yes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = agent.run(ctx, "status", "--json")
	var st statusJSON
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: exit %d\n%s%s", code, out, errOut)
	}
	if !st.OK || len(st.Problems) != 0 || !st.Profile.Found || st.Certificate.Identity != "agent-1@dev" ||
		!slices.Equal(st.Certificate.Principals, []string{"ops"}) || st.Certificate.SecondsLeft <= 0 || st.Certificate.Expired ||
		st.Certificate.SignedByServer == nil || !*st.Certificate.SignedByServer ||
		st.Server.URL != sp.api || st.Server.CAFingerprint != sp.fingerprint || st.Server.TokenSource != "file" || !st.Server.Answers {
		t.Fatalf("status --json: %+v", st)
	}

	// Grants with no connection flags. Ask until one ID has a start no
	// other ID has (IDs are journal leaf indexes: G-18 and G-21 do, G-21
	// and G-23 do not).
	var ids []string
	var unique, uniqueID string
	for len(ids) < 2 || unique == "" {
		if len(ids) == 15 {
			t.Fatalf("no grant ID with a unique start among %v", ids)
		}
		code, out, errOut := agent.run(ctx, "grants", "request", "--target", "db-1", "--login", "deploy", "--duration", "30m",
			"--reason", "first hour", "--json")
		var g grants.Grant
		if code != 0 || json.Unmarshal([]byte(out), &g) != nil {
			t.Fatalf("grants request: exit %d\n%s%s", code, out, errOut)
		}
		ids = append(ids, g.ID)
		unique, uniqueID = grantsUniqueStart(ids)
	}
	t.Logf("grants %v; %q names %s", ids, unique, uniqueID)

	// bob approves by the unique start, with his own token: the server
	// and the pin still come from the profile.
	code, out, errOut = agent.run(ctx, "grants", "approve", unique, "--token-file", bobTok, "--comment", "ok")
	if code != 0 || !strings.HasPrefix(out, "grant "+uniqueID+" approved: active\n") || !strings.Contains(out, "by bob@dev: ok") {
		t.Fatalf("approve %s as bob: exit %d\n%s%s", unique, code, out, errOut)
	}
	code, out, errOut = agent.run(ctx, "grants", "show", "G-")
	if code != exitFailure || out != "" || !strings.Contains(errOut, fmt.Sprintf("bastion: error: %d of the grants you see have IDs starting with \"G-\": %s\n", len(ids), strings.Join(ids, ", "))) ||
		!strings.Contains(errOut, "bastion: hint: give more of the ID") {
		t.Fatalf("show an ambiguous start: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = agent.run(ctx, "grants", "revoke", "G-999999")
	if code != exitFailure || !strings.Contains(errOut, "grant_not_found") {
		t.Fatalf("revoke an unknown grant: exit %d\n%s", code, errOut)
	}
	code, out, errOut = agent.run(ctx, "grants", "show", strings.ToLower(uniqueID))
	if code != 0 || !strings.HasPrefix(out, "grant "+uniqueID+": active\n") {
		t.Fatalf("show %s in lower case: exit %d\n%s%s", uniqueID, code, out, errOut)
	}
	code, out, errOut = agent.run(ctx, "grants", "show", strings.TrimPrefix(ids[0], "G-"), "--json")
	if code != 0 || !strings.Contains(out, `"id": "`+ids[0]+`"`) {
		t.Fatalf("show %s by its number: exit %d\n%s%s", ids[0], code, out, errOut)
	}
	code, out, errOut = agent.run(ctx, "grants", "list", "--state", "active")
	if code != 0 || !strings.Contains(out, uniqueID+"  active") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errOut)
	}

	// A bare login: the profile's server, pin, token, key and known_hosts;
	// the grant's login comes with it.
	code, out, errOut = agent.run(ctx, "login", "--json")
	var lj loginJSON
	if code != 0 || json.Unmarshal([]byte(out), &lj) != nil {
		t.Fatalf("bare login: exit %d\n%s%s", code, out, errOut)
	}
	if lj.KeyFile != key || lj.KeyCreated || lj.ProfileFile != profile || !slices.Contains(lj.Principals, "deploy") || lj.Identity != "agent-1@dev" {
		t.Fatalf("bare login: %+v", lj)
	}

	// login --renew: stays up after the first certificate, until stopped.
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var rout, rerr lockedBuffer
	rout.onWrite = func(all string) {
		if strings.Contains(all, "\n") {
			stop()
		}
	}
	if code := run(rctx, []string{"login", "--renew", "--json"}, agent.env(&rout, &rerr)); code != 0 ||
		json.Unmarshal([]byte(rout.String()), &lj) != nil || lj.KeyFile != key ||
		!strings.Contains(rerr.String(), "next renewal at") || !strings.Contains(rerr.String(), "stopped; the certificate") {
		t.Fatalf("login --renew: exit %d\n%s%s", code, rout.String(), rerr.String())
	}

	// Flags win: a wrong pin is refused though the profile's is right;
	// another --server ignores the profile.
	wrongPin := "SHA256:" + strings.Repeat("A", 43)
	code, out, errOut = agent.run(ctx, "status", "--ca-fingerprint", wrongPin)
	if code != exitFailure || !strings.Contains(out, "pin:          "+wrongPin) || !strings.Contains(out, "answers:      no: ") ||
		!strings.Contains(errOut, "does not match the pinned fingerprint") {
		t.Fatalf("status with a wrong pin: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = agent.run(ctx, "grants", "list", "--ca-fingerprint", wrongPin)
	if code != exitFailure || !strings.Contains(errOut, "does not match the pinned fingerprint") {
		t.Fatalf("grants list with a wrong pin: exit %d\n%s", code, errOut)
	}
	code, out, errOut = agent.run(ctx, "status", "--server", "127.0.0.1:1")
	if code != exitFailure || !strings.Contains(out, "server:       https://127.0.0.1:1\n") || !strings.Contains(out, "pin:          none") ||
		strings.Contains(out, "token:") {
		t.Fatalf("status with another server: exit %d\n%s%s", code, out, errOut)
	}

	// Where the profile is: $XDG_CONFIG_HOME, $BASTION_PROFILE, --profile.
	xdg := clientUser{home: filepath.Join(dir, "xdg-user"), vars: map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")}}
	if code, _, errOut := xdg.run(ctx, "login", "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-file", agentTok); code != 0 {
		t.Fatalf("login with $XDG_CONFIG_HOME: %s", errOut)
	}
	if m := fileMode(t, filepath.Join(dir, "xdg", "bastion", "profile.json")); m != 0o600 {
		t.Errorf("$XDG_CONFIG_HOME profile mode %04o", m)
	}
	named := filepath.Join(dir, "named", "profile.json")
	env := clientUser{home: filepath.Join(dir, "env-user"), vars: map[string]string{"BASTION_PROFILE": named}}
	if code, _, errOut := env.run(ctx, "login", "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-env", "AGENT_TOKEN"); code != exitFailure ||
		!strings.Contains(errOut, "$AGENT_TOKEN is not set or empty") {
		t.Fatalf("login with an empty variable: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(named); !os.IsNotExist(err) {
		t.Fatalf("a failed login wrote the profile: %v", err)
	}
	env.vars["AGENT_TOKEN"] = strings.TrimSpace(string(token))
	if code, _, errOut := env.run(ctx, "login", "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-env", "AGENT_TOKEN"); code != 0 {
		t.Fatalf("login with $BASTION_PROFILE: %s", errOut)
	}
	if raw, err := os.ReadFile(named); err != nil || !strings.Contains(string(raw), `"token_env": "AGENT_TOKEN"`) || strings.Contains(string(raw), env.vars["AGENT_TOKEN"]) {
		t.Fatalf("$BASTION_PROFILE profile: %v\n%s", err, raw)
	}
	for _, p := range []string{filepath.Join(env.home, ".config"), filepath.Join(xdg.home, ".config")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists: the profile went to ~/.config", p)
		}
	}
	stranger := clientUser{home: filepath.Join(dir, "stranger"), vars: map[string]string{"AGENT_TOKEN": env.vars["AGENT_TOKEN"]}}
	if code, out, errOut := stranger.run(ctx, "grants", "list", "--profile", named); code != 0 || !strings.Contains(out, uniqueID) {
		t.Fatalf("grants list --profile: exit %d\n%s%s", code, out, errOut)
	}

	// A profile others may write says where tokens go: refused.
	if err := os.Chmod(profile, 0o666); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = agent.run(ctx, "grants", "list")
	if code != exitFailure || !strings.Contains(errOut, "may be written by others (mode 0666): refusing to use it") ||
		!strings.Contains(errOut, "bastion: hint: chmod 600 "+profile) {
		t.Fatalf("grants list with a profile others may write: exit %d\n%s", code, errOut)
	}
	if err := os.Chmod(profile, 0o600); err != nil {
		t.Fatal(err)
	}

	// The server gone: status still shows the certificate, and fails.
	sp.cmd.Process.Signal(syscall.SIGTERM)
	sp.cmd.Wait()
	code, out, errOut = agent.run(ctx, "status")
	if code != exitFailure || !strings.Contains(out, "identity:     agent-1@dev (grant "+uniqueID+")\n") || !strings.Contains(out, "logins:       deploy, ops\n") ||
		!strings.Contains(out, "answers:      no: ") || !strings.Contains(errOut, "bastion: error: not ready: the bastion does not answer: ") {
		t.Fatalf("status with the server gone: exit %d\n%s%s", code, out, errOut)
	}
}

// grantsUniqueStart returns a proper start of one of ids ("G-2" of G-21)
// that no other of ids starts with, and that ID; "" if there is none.
func grantsUniqueStart(ids []string) (start, id string) {
	for _, id := range ids {
		for n := len("G-") + 1; n < len(id); n++ {
			if got, _ := grantsMatchID(ids, id[:n]); got == id {
				return id[:n], id
			}
		}
	}
	return "", ""
}
