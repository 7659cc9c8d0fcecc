package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/bastionhq/bastion/bastion/sshdtest"
)

// examinerPolicy is the scenario's policy: humans and an agent sponsored
// by alice; a standing role on staging that denies rm; a grant-only role
// on prod, approved by a human, with every masking detector. The approval
// does not exclude the sponsor, so alice may approve her own agent's
// grant, and the report must flag it. extraDeny is added to staging's
// deny list (a reload's change).
func examinerPolicy(login, extraDeny string) string {
	deny := `"rm **"`
	if extraDeny != "" {
		deny += fmt.Sprintf(", %q", extraDeny)
	}
	return fmt.Sprintf(`
identity "humans" {
  providers = ["dev"]
  subjects  = ["alice", "bob"]
}
identity "agents" {
  providers = ["dev"]
  subjects  = ["agent-*"]
  sponsors  = ["alice"]
}
role "staging" {
  identities = ["humans", "agents"]
  targets    = ["staging-1"]
  logins     = [%[1]q]
  pty        = true
  shell      = true
  commands { deny = [%[2]s] }
}
role "prod" {
  identities = ["agents"]
  targets    = ["prod-db"]
  logins     = [%[1]q]
  access     = "grant"
  pty        = true
  shell      = true
  masking    = "all"
  approval {
    approvers    = ["humans"]
    max_duration = "1h"
  }
}
`, login, deny)
}

// TestEvidenceExaminerScenario is issue 15's first must-show: the
// examiner's scenario with real OpenSSH (ssh, and sshd as the prod
// target), a real serve process and the real development OpenID provider
// (serve --dev; every identity is dev's). A human (alice) and an agent
// she sponsors; a standing role on a command target (staging-1) and a
// grant-only role with approval and masking on an sshd target (prod-db).
// Sessions run (exec and -tt); a command is denied; a grant alice
// approves for her own agent is used and its open session cut off at its
// end; another is denied; one expires unanswered; an operator, named by
// her token, kills a session and revokes a certificate; a broken policy
// is refused, then a good one loaded. Then, while serve runs, play,
// export, sessions show, sessions search, verify and evidence, each
// journaled through serve. The report validates against the schema and
// shows every one of those reads, names the operator of the kill and the
// revocation, flags the self-approval, carries the dev-provider banner,
// is amber on its own head and green on a checkpoint the auditor kept
// earlier; a typo'd --target exits 1 with a suggestion.
func TestEvidenceExaminerScenario(t *testing.T) {
	t.Parallel()
	sshBin := sshdtest.Need(t, "ssh")
	ctx := context.Background()
	started := time.Now()
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	uid := strconv.Itoa(os.Getuid())
	dir := t.TempDir()
	home, trust := rigHome(t, dir, false)
	prod := sshdtest.Start(t, "TrustedUserCAKeys "+trust)
	prodPub, err := os.ReadFile(prod.HostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(dir, "policy.hcl")
	writePolicy := func(text string) {
		t.Helper()
		// Whole or not at all: the watcher must never read half a file.
		tmp := policyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policyFile); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(examinerPolicy(login, ""))
	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home   = %q
policy = %q
api { listen = "127.0.0.1:0" }
ssh { listen = "127.0.0.1:0" }
grants { pending_ttl = "3s" }
target "staging-1" { command = ["/bin/sh"] }
target "prod-db" {
  ssh      = %q
  host_key = %q
}
`, home, policyFile, prod.Addr, strings.TrimSpace(string(prodPub)))), 0o600); err != nil {
		t.Fatal(err)
	}
	var serveLog lockedBuffer
	sp, devIssuer := startDevServe(t, cfg, &serveLog)
	if !strings.HasPrefix(devIssuer, "http://127.0.0.1") {
		t.Fatalf("the dev provider's issuer is %q", devIssuer)
	}
	c := sshClient{bin: sshBin, port: sp.ssh[strings.LastIndexByte(sp.ssh, ':')+1:], known: filepath.Join(dir, "known_hosts")}
	staging, prodDB := login+"@staging-1@127.0.0.1", login+"@prod-db@127.0.0.1"

	// Identities, all from the development provider: alice and bob,
	// people; agent-7, acting for alice (an RFC 8693 delegation token);
	// carol, the operator on duty.
	aliceTok := devTokenFile(t, home, dir, "alice", "--claim", "email=alice@example.com")
	bobTok := devTokenFile(t, home, dir, "bob")
	agentTok := devTokenFile(t, home, dir, "agent-7", "--sponsor", "alice")
	carolTok := devTokenFile(t, home, dir, "carol")
	aliceKey, aliceSerial := devCert(t, sp, dir, "alice", aliceTok)
	agentKey, _ := devCert(t, sp, dir, "agent", agentTok)

	// Standing access on staging: exec and -tt, and a command the
	// policy denies.
	if out, errOut, err := c.run(aliceKey, "", staging, "echo deployed-by-alice"); err != nil || !strings.Contains(out, "deployed-by-alice") {
		t.Fatalf("alice exec on staging-1: %v %q %q", err, out, errOut)
	}
	if out, errOut, err := c.run(aliceKey, "echo tt-by-al''ice; exit\r", "-tt", staging); err != nil || !strings.Contains(out, "tt-by-alice") {
		t.Fatalf("alice -tt on staging-1: %v %q %q", err, out, errOut)
	}
	if out, errOut, err := c.run(agentKey, "", staging, "uname -s"); err != nil || out == "" {
		t.Fatalf("agent exec on staging-1: %v %q %q", err, out, errOut)
	}
	if _, errOut, err := c.run(agentKey, "", staging, "rm -rf /tmp/examiner-nothing"); err == nil || !strings.Contains(errOut, "denied") {
		t.Fatalf("a command the policy denies ran: %v %q", err, errOut)
	}

	// The auditor keeps a checkpoint now, before everything that follows:
	// it anchors the records before it, not the whole period.
	keepCheckpoint := func(name string) string {
		t.Helper()
		code, note, errOut := cli(ctx, home, "checkpoint")
		if code != 0 || note == "" {
			t.Fatalf("checkpoint: exit %d: %s", code, errOut)
		}
		kept := filepath.Join(dir, name)
		if err := os.WriteFile(kept, []byte(note), 0o600); err != nil {
			t.Fatal(err)
		}
		return kept
	}
	keptEarly := keepCheckpoint("kept-early.txt")

	grants := func(tokenFile string, args ...string) map[string]any {
		t.Helper()
		args = append(append([]string{"grants"}, args...), "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-file", tokenFile, "--json")
		code, out, errOut := cli(ctx, home, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s %s", strings.Join(args, " "), code, out, errOut)
		}
		var g map[string]any
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return g
	}
	request := func(duration, reason string) string {
		t.Helper()
		g := grants(agentTok, "request", "--target", "prod-db", "--login", login, "--duration", duration, "--reason", reason)
		if jsonString(g, "state") != "pending" || jsonString(g, "sponsor") != "alice" {
			t.Fatalf("grant request: %v", g)
		}
		return jsonString(g, "id")
	}

	// The grant alice approves for her own agent: used, and a session
	// still open at its end cut off by the front door.
	used := request("8s", "apply migration 42")
	if g := grants(aliceTok, "approve", "--comment", "go ahead", used); jsonString(g, "state") != "active" {
		t.Fatalf("approved grant: %v", g)
	}
	prodKey, _ := devCert(t, sp, dir, "agent-prod", agentTok)
	if out, errOut, err := c.run(prodKey, "", prodDB, "echo migrated"); err != nil || !strings.Contains(out, "migrated") {
		t.Fatalf("agent exec on prod-db under %s: %v %q %q", used, err, out, errOut)
	}
	open := c.start(t, prodKey, "", "-tt", prodDB)
	open.stdin.Write([]byte("echo schema-''ready\r"))
	waitFor(t, 10*time.Second, "the prod-db shell to answer", func() bool { return strings.Contains(open.out.String(), "schema-ready\r\n") })

	// Another grant denied by bob; a third nobody answers.
	denied := request("5m", "look around")
	if g := grants(bobTok, "deny", "--comment", "no ticket", denied); jsonString(g, "state") != "denied" {
		t.Fatalf("denied grant: %v", g)
	}
	unanswered := request("5m", "nobody answers this")

	// An operator, named by her token, kills a live session and revokes
	// alice's certificate through the admin socket.
	live := c.start(t, agentKey, "started", staging, "echo started; exec sleep 60")
	liveID := ""
	_, out, _ := cli(ctx, home, "sessions", "list", "--state", "live", "--json")
	var lives []sessionJSON
	json.Unmarshal([]byte(out), &lives)
	for _, s := range lives {
		if s.Target == "staging-1" {
			liveID = s.ID
		}
	}
	if liveID == "" {
		t.Fatalf("no live session on staging-1: %s", out)
	}
	killed, out, errOut := cli(ctx, home, "sessions", "kill", "--token-file", carolTok, "--reason", "runaway job", liveID)
	if killed != 0 {
		t.Errorf("sessions kill --token-file: exit %d: %s %s", killed, out, errOut)
		live.cmd.Process.Kill() // go on with the scenario
	}
	live.wait(t, 10*time.Second)
	if killed == 0 && !strings.Contains(live.errOut.String(), "ended by an operator") {
		t.Errorf("the killed client read %q", live.errOut.String())
	}
	if code, out, errOut := cli(ctx, home, "certs", "revoke", "--token-file", carolTok, "--serial", strconv.FormatUint(aliceSerial, 10), "--reason", "laptop lost"); code != 0 {
		t.Errorf("certs revoke --token-file: exit %d: %s %s", code, out, errOut)
	} else if _, _, err := c.run(aliceKey, "", staging, "true"); err == nil {
		t.Error("alice's revoked certificate still opens a session")
	}

	// A policy reload refused (a broken file), then one accepted.
	reloads := func(msg string) int { return strings.Count(serveLog.String(), msg) }
	refused, loaded := reloads("reload refused"), reloads("configuration in force")
	writePolicy(examinerPolicy(login, "") + "\nrole \"broken\" {\n  identities = [\n")
	sp.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the broken policy to be refused", func() bool { return reloads("reload refused") > refused })
	writePolicy(examinerPolicy(login, "shutdown **"))
	sp.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the fixed policy to be loaded", func() bool { return reloads("configuration in force") > loaded })

	// The open session ends with its grant; the unanswered one expires.
	if err := open.wait(t, 20*time.Second); err == nil {
		t.Errorf("the session under %s ended cleanly, not cut off", used)
	}
	if msg := open.errOut.String(); !strings.Contains(msg, "the grant "+used+" that allowed this session ended") {
		t.Errorf("the session under %s did not end with it: stderr %q", used, msg)
	}
	waitFor(t, 20*time.Second, "the unanswered grant to expire", func() bool {
		return jsonString(grants(agentTok, "show", unanswered), "state") == "expired"
	})
	var cutID string
	_, out, _ = cli(ctx, home, "sessions", "list", "--json")
	var all []sessionJSON
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Target == "prod-db" && s.EndReason == "grant-ended" {
			cutID = s.ID
		}
	}
	if cutID == "" {
		t.Fatalf("no prod-db session ended with its grant: %s", out)
	}

	// The period ends once everything above has happened; the reads
	// follow, all while serve runs.
	from := started.Add(-time.Minute).UTC().Truncate(time.Second)
	to := time.Now().Add(time.Second).UTC().Truncate(time.Second)
	reads := []struct {
		action string
		args   []string
	}{
		{"play", []string{"play", "--speed", "max", cutID}},
		{"export", []string{"export", "--format", "asciicast", cutID}},
		{"show", []string{"sessions", "show", cutID}},
		{"search", []string{"sessions", "search", "schema"}},
		{"verify", []string{"verify"}},
	}
	for _, r := range reads {
		if code, out, errOut := cli(ctx, home, r.args...); code != 0 {
			t.Fatalf("%s while serve runs: exit %d: %s %s", strings.Join(r.args, " "), code, out, errOut)
		}
	}
	if d := time.Until(to); d > 0 {
		time.Sleep(d) // the period must not end in the future
	}
	// Once the period is over, the auditor keeps a checkpoint that covers
	// all of it (serve keeps one every second).
	time.Sleep(1500 * time.Millisecond)
	kept := keepCheckpoint("kept-after.txt")
	period := []string{"evidence", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339)}

	schema, err := jsonschema.NewCompiler().Compile("../../docs/evidence.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	report := func(out string, extra ...string) any {
		t.Helper()
		args := append(append(slices.Clone(period), "--out", out), extra...)
		code, stdout, errOut := cli(ctx, home, args...)
		if code != 0 {
			t.Errorf("%s: exit %d: %s %s", strings.Join(args, " "), code, stdout, errOut)
			return nil
		}
		data, err := os.ReadFile(filepath.Join(out, "evidence.json"))
		if err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(inst); err != nil {
			t.Errorf("%s: evidence.json does not match docs/evidence.schema.json: %v", strings.Join(args, " "), err)
		}
		var r any
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	r := report(filepath.Join(dir, "report"))
	if r == nil {
		t.FailNow()
	}
	t.Run("scenario", func(t *testing.T) {
		states := map[string]string{}
		for _, g := range jsonObjects(r, "grants") {
			states[jsonString(g, "id")] = jsonString(g, "state")
		}
		for id, want := range map[string]string{used: "ended", denied: "denied", unanswered: "expired"} {
			if states[id] != want {
				t.Errorf("grant %s is %q in the report, want %q", id, states[id], want)
			}
		}
		var cut bool
		for _, s := range jsonObjects(r, "sessions") {
			cut = cut || jsonString(s, "id") == cutID && jsonString(s, "end_reason") == "grant-ended" && jsonString(s, "grant") == used
		}
		if !cut {
			t.Errorf("the report has no session %s ended with grant %s", cutID, used)
		}
		if !slices.ContainsFunc(jsonObjects(r, "refusals"), func(f map[string]any) bool {
			return jsonString(f, "event") == "ssh.request_refused" && strings.Contains(jsonString(f, "what"), "rm -rf /tmp/examiner-nothing")
		}) {
			t.Errorf("the denied command is not among the refusals: %v", jsonAt(r, "refusals"))
		}
		var refusedReload, loadedAfter bool
		for _, p := range jsonObjects(r, "custody", "policies") {
			switch jsonString(p, "event") {
			case "policy.refused":
				refusedReload = true
			case "policy.loaded":
				loadedAfter = loadedAfter || refusedReload
			}
		}
		if !refusedReload || !loadedAfter {
			t.Errorf("custody.policies has no refused reload followed by a load: %v", jsonAt(r, "custody", "policies"))
		}
		if jsonString(r, "verification", "intact") != "true" {
			t.Errorf("the journal does not verify: %v", jsonAt(r, "verification", "problems"))
		}
	})
	t.Run("reads", func(t *testing.T) {
		// Every read made while serve ran, journaled through serve as the
		// kernel reported the reader.
		for _, action := range []string{"play", "export", "show", "search", "verify", "evidence"} {
			var seen []string
			found := false
			for _, a := range jsonObjects(r, "custody", "accesses") {
				if jsonString(a, "action") != action {
					continue
				}
				seen = append(seen, fmt.Sprintf("via=%q uid=%q", jsonString(a, "via"), jsonString(a, "uid")))
				found = found || jsonString(a, "via") == "serve" && jsonString(a, "uid") == uid
			}
			if !found {
				t.Errorf("custody.accesses has no %s journaled via serve by uid %s (has %v)", action, uid, seen)
			}
		}
	})
	t.Run("operators", func(t *testing.T) {
		for _, action := range []string{"kill", "revoke-certificate"} {
			var seen []map[string]any
			found := false
			for _, a := range jsonObjects(r, "operator_actions") {
				if jsonString(a, "action") != action {
					continue
				}
				seen = append(seen, a)
				found = found || jsonString(a, "operator") == "carol@dev" && jsonString(a, "verified") == "token" && jsonString(a, "uid") == uid
			}
			if !found {
				t.Errorf("operator_actions has no %s by carol@dev verified by token (has %v)", action, seen)
			}
		}
	})
	t.Run("segregation-of-duties", func(t *testing.T) {
		var sod []string
		for _, f := range jsonObjects(r, "summary", "exceptions") {
			if jsonString(f, "kind") == "segregation-of-duties" {
				sod = append(sod, jsonString(f, "what"))
			}
		}
		if !slices.ContainsFunc(sod, func(w string) bool { return strings.Contains(w, used) }) {
			t.Errorf("no segregation-of-duties exception names %s, which alice approved for her own agent (have %q)", used, sod)
		}
		for _, w := range sod {
			if strings.Contains(w, denied) || strings.Contains(w, unanswered) {
				t.Errorf("a grant alice did not approve is flagged: %q", w)
			}
		}
	})
	t.Run("dev-banner", func(t *testing.T) {
		if !slices.ContainsFunc(jsonObjects(r, "banners"), func(b map[string]any) bool { return jsonString(b, "kind") == "dev-provider" }) {
			t.Errorf("no dev-provider banner: %v", jsonAt(r, "banners"))
		}
	})
	t.Run("anchor", func(t *testing.T) {
		if level := jsonString(r, "anchor", "level"); level != "amber" {
			t.Errorf("without a kept checkpoint the anchor is %q, want amber (%v)", level, jsonAt(r, "anchor"))
		}
		g := report(filepath.Join(dir, "report-kept"), "--checkpoint", kept)
		if g == nil {
			return
		}
		if level := jsonString(g, "anchor", "level"); level != "green" || jsonString(g, "anchor", "basis") != "kept-checkpoint" {
			t.Errorf("with the checkpoint kept after the period the anchor is %v, want green on kept-checkpoint", jsonAt(g, "anchor"))
		}
		// One kept during the period anchors only what came before it.
		if e := report(filepath.Join(dir, "report-early"), "--checkpoint", keptEarly); e != nil {
			if level := jsonString(e, "anchor", "level"); level != "amber" || jsonString(e, "anchor", "basis") != "kept-checkpoint" {
				t.Errorf("with a checkpoint kept during the period the anchor is %v, want amber on kept-checkpoint", jsonAt(e, "anchor"))
			}
		}
	})
	t.Run("target-typo", func(t *testing.T) {
		args := append(slices.Clone(period), "--out", filepath.Join(dir, "report-typo"), "--target", "prod-bd")
		code, out, errOut := cli(ctx, home, args...)
		if code != 1 || !strings.Contains(errOut, `did you mean "prod-db"?`) {
			t.Errorf("evidence --target prod-bd: exit %d, want 1 with a suggestion: %s %s", code, out, errOut)
		}
	})
}
