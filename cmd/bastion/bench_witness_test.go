package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/recorder/witness/witnesstest"
)

// witnessRig is one "bastion serve" with a local command target, and the
// client's key for it.
type witnessRig struct {
	sp         *serveProcess
	key, known string
	port       string
}

// newWitnessRig starts serve in dir with the home made there by rigHome
// (made now when home is "").
func newWitnessRig(b *testing.B, m *mockoidc.MockOIDC, dir, home, login, extra string) *witnessRig {
	b.Helper()
	if home == "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		home, _ = rigHome(b, dir, false)
	}
	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home = %q
api {
  listen            = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh { listen = "127.0.0.1:0" }
identity_provider "corp" {
  issuer    = %q
  audiences = [%q]
}
role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["box"]
  logins  = [%q]
}
target "box" { command = ["/bin/sh"] }
%s
`, home, m.Issuer(), m.ClientID, login, extra)), 0o600); err != nil {
		b.Fatal(err)
	}
	r := &witnessRig{sp: startServeProcess(b, cfg, true)}
	r.port = r.sp.ssh[strings.LastIndexByte(r.sp.ssh, ':')+1:]
	r.key, r.known = agentKey(b, m, r.sp, dir, "agent-1")
	return r
}

// BenchmarkFrontWitnessed is session throughput (an exec session printing
// BENCH_FRONT_MIB/4 MiB on a local command target, read by the real ssh
// client) through a bastion that pushes its checkpoints to two witnesses
// (litewitness and "bastion witness serve", threshold 2) against one with
// none, in paired rounds of alternating order; witnessed/none is the
// median of the rounds' throughput ratios (1.0: no cost). It ends by
// checking that the witnesses cosigned what the witnessed bastion kept.
func BenchmarkFrontWitnessed(b *testing.B) {
	sshBin := sshdtest.Need(b, "ssh")
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	m := oidctest.StartMock(b, nil)
	dir := b.TempDir()
	plain := newWitnessRig(b, m, filepath.Join(dir, "plain"), "", login, "")
	// The witnessed bastion's home comes first: the witnesses need its key.
	whome := filepath.Join(dir, "witnessed")
	if err := os.MkdirAll(whome, 0o700); err != nil {
		b.Fatal(err)
	}
	home, _ := rigHome(b, whome, false)
	logKey, err := os.ReadFile(filepath.Join(home, "journal.pub"))
	if err != nil {
		b.Fatal(err)
	}
	lw := witnesstest.Start(b, "lw.bench/w1", strings.TrimSpace(string(logKey)))
	origin, _, _ := strings.Cut(string(logKey), "+")
	bw := startBastionWitness(b, filepath.Join(dir, "witness-home"), "bw.bench/w2", filepath.Join(home, "journal.pub"))
	witnessed := newWitnessRig(b, m, whome, home, login, fmt.Sprintf(`
witness "lw" {
  url = %q
  key = %q
}
witness "bw" {
  url = %q
  key = %q
}
witnesses { threshold = 2 }
`, lw.URL, lw.VKey, bw.url, bw.vkey))

	mib := max(benchMiB()/4, 1)
	command := fmt.Sprintf("head -c %dM /dev/zero", mib)
	run := func(r *witnessRig) time.Duration {
		c := sshClient{bin: sshBin, port: r.port, known: r.known}
		cmd := c.command(r.key, login+"@box@127.0.0.1", command)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("ssh: %v: %s", err, stderr.String())
		}
		return time.Since(t0)
	}
	var ratios []float64
	var tPlain, tWitnessed []time.Duration
	b.ResetTimer()
	// Four paired rounds an iteration, each pair in the other order.
	for i := range 4 * b.N {
		var p, w time.Duration
		if i%2 == 0 {
			p, w = run(plain), run(witnessed)
		} else {
			w, p = run(witnessed), run(plain)
		}
		tPlain, tWitnessed = append(tPlain, p), append(tWitnessed, w)
		ratios = append(ratios, p.Seconds()/w.Seconds())
	}
	b.StopTimer()
	if lw.Latest(origin) <= 0 {
		b.Fatalf("litewitness cosigned nothing for %s:\n%s", origin, lw.Log())
	}
	slices.Sort(ratios)
	mbps := func(d time.Duration) float64 { return float64(mib) * (1 << 20) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(median(tPlain)), "none-MB/s")
	b.ReportMetric(mbps(median(tWitnessed)), "witnessed-MB/s")
	b.ReportMetric(ratios[len(ratios)/2], "witnessed/none")
	b.ReportMetric(0, "ns/op")
}
