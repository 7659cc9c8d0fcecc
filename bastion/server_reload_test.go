package bastion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReloadConfig: a reload puts the targets and session limits of the
// configuration file in force for new sessions, while a live session
// keeps its target and limits; the journal records the file's hash. A
// reload that changes what takes a restart (the SSH listen address) is
// refused, named and journaled, and changes nothing, not even what it
// would have applied live.
func TestReloadConfig(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	ctx := context.Background()
	path := filepath.Join(fx.ts.home, "bastion.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b string) string {
		t.Helper()
		// Whole, by a rename: the server's watch of the file must not
		// read it half written (truncated, an empty configuration) and
		// journal a refusal of that.
		if err := os.WriteFile(path+".new", []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(b))
		return hex.EncodeToString(sum[:])
	}
	first := fx.ts.events(t, EventServeStarted)[0]["config.sha256"]
	if out, code := fx.ssh(t, fx.key, "ops@other", "true"); code != 255 {
		t.Fatalf("other before the reload: exit %d, %q", code, out)
	}
	// Quiet for longer than the new idle timeout, and on the target the
	// reload removes: it keeps both.
	held := fx.sshStart(t, fx.key, "ops@box", "echo started; sleep 3; echo still-here")
	fx.waitLive(t, 1, held)

	boxBlock := "target \"box\" {\n  command = [\"/bin/sh\"]\n}\n"
	if !strings.Contains(string(src), boxBlock) {
		t.Fatalf("no box target in %s", src)
	}
	second := strings.Replace(string(src), boxBlock, "target \"other\" {\n  command = [\"/bin/sh\"]\n}\n", 1)
	second = strings.Replace(second, `host_names = ["bastion.example"]`, `host_names = ["bastion.example"]
  idle_timeout = "1s"`, 1)
	secondSum := write(second)
	if err := fx.ts.Reload(ctx, ReloadSignal); err != nil {
		t.Fatal(err)
	}
	reloaded := fx.ts.events(t, EventConfigReloaded)
	if len(reloaded) != 1 || reloaded[0]["config.sha256"] != secondSum || reloaded[0]["previous"] != first ||
		reloaded[0]["targets.added"] != "other" || reloaded[0]["targets.removed"] != "box" || reloaded[0]["ssh.idle-timeout"] != "1s" {
		t.Fatalf("config.reloaded: %v (want sha256 %s, previous %s)", reloaded, secondSum, first)
	}
	if out, code := fx.ssh(t, fx.key, "ops@other", "echo other-ok"); code != 0 || !strings.Contains(out, "other-ok") {
		t.Fatalf("other after the reload: exit %d, %q", code, out)
	}
	if out, code := fx.ssh(t, fx.key, "ops@box", "true"); code != 255 {
		t.Fatalf("box after the reload: exit %d, %q", code, out)
	}
	if code := held.wait(t); code != 0 || !strings.Contains(held.stdout.String(), "still-here") {
		t.Fatalf("the live session: exit %d, stdout %q, stderr %q", code, held.stdout.String(), held.stderr.String())
	}
	if out, code := fx.ssh(t, fx.key, "ops@other", "sleep 10"); code != 255 || !strings.Contains(out, "no input or output for 1s") {
		t.Fatalf("a new session past the new idle timeout: exit %d, %q", code, out)
	}

	// The SSH listen address takes a restart: the whole file is refused,
	// the new target with it.
	third := strings.Replace(second, `listen     = "127.0.0.1:0"`, `listen     = "127.0.0.1:1"`, 1)
	third = strings.Replace(third, `idle_timeout = "1s"`, `idle_timeout = "1h"`, 1)
	third += "target \"third\" {\n  command = [\"/bin/sh\"]\n}\n"
	if third == second+"target \"third\" {\n  command = [\"/bin/sh\"]\n}\n" {
		t.Fatal("the listen address was not changed")
	}
	thirdSum := write(third)
	err = fx.ts.Reload(ctx, ReloadSignal)
	var re *RestartError
	if !errors.As(err, &re) || !slices.Equal(re.Fields, []string{"ssh.listen"}) {
		t.Fatalf("reload of a new listen address: %v", err)
	}
	refused := fx.ts.events(t, EventConfigReloadRefused)
	if len(refused) != 1 || refused[0]["fields"] != "ssh.listen" || refused[0]["config.sha256"] != thirdSum || refused[0]["in-force"] != secondSum || refused[0]["trigger"] != ReloadSignal {
		t.Fatalf("config.reload_refused: %v", refused)
	}
	if n := len(fx.ts.events(t, EventConfigReloaded)); n != 1 {
		t.Fatalf("%d config.reloaded events after a refusal", n)
	}
	if n := testutil.ToFloat64(fx.ts.metrics.reloads.WithLabelValues("refused")); n != 1 {
		t.Fatalf("reloads refused: %v", n)
	}
	if out, code := fx.ssh(t, fx.key, "ops@third", "true"); code != 255 {
		t.Fatalf("third after the refused reload: exit %d, %q", code, out)
	}
	if out, code := fx.ssh(t, fx.key, "ops@other", "sleep 10"); code != 255 || !strings.Contains(out, "no input or output for 1s") {
		t.Fatalf("the idle timeout after the refused reload: exit %d, %q", code, out)
	}
	if l := fx.ts.life.Limits(); l.IdleTimeout.String() != "1s" {
		t.Fatalf("limits after the refused reload: %+v", l)
	}
	fx.verify(t)
}
