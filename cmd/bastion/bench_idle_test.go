package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// BenchmarkFrontIdle is what idle sessions cost the front door. The
// server runs in the benchmark's process (bastion.NewServer and Run, as
// serve assembles it), so that it can read its own heap; the clients run
// in a child process (this test binary again, as bastion-idle-clients,
// with x/crypto clients), so that their memory is not counted.
//
// Three waves, each of BENCH_FRONT_IDLE (default 1,000) sessions on the
// local command target, each on a connection of its own: that many with a
// terminal (pty-req, then exec "sleep 600"), held, then closed; then as
// many without one (exec "sleep 600"), held, then closed. The heap
// (runtime.MemStats.HeapAlloc after two collections, so that nothing idle
// in a sync.Pool is counted) is read before each batch and with it held.
// Reported:
//
//   - pty-KiB/session and exec-KiB/session: the heap's growth per session
//     held, the most over the waves after the first (which find the
//     buffers and caches of the one before), so the steady cost;
//   - rss-end/start: the process's resident set (VmRSS) after the last
//     wave closed, the journal was quiet long enough for serve to give
//     back SQLite's caches (memoryQuiet), and debug.FreeOSMemory, over the
//     same before the first wave: memory the sessions took and did not
//     give back;
//   - rss-end/first: the same over the RSS after the first wave closed:
//     whether the later waves leave more behind;
//   - sessions-held: how many sessions were held at once.
func BenchmarkFrontIdle(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("BENCH_FRONT_IDLE")); err == nil && v > 0 {
		n = v
	}
	const waves = 3
	r := newIdleRig(b, n)
	clients := startIdleClients(b, r)

	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	runtime.GC()
	debug.FreeOSMemory()
	rssStart := selfRSS(b)
	var ptyCost, execCost []float64
	var rssFirst int64
	// hold opens n sessions of kind ("pty" or "exec"), and returns the
	// heap's growth per session with them held; then closes them.
	hold := func(kind string) float64 {
		h0 := heap()
		clients.do(b, fmt.Sprintf("%s %d", kind, n))
		r.settle(b, n)
		h1 := heap()
		clients.do(b, "close")
		r.settle(b, 0)
		return float64(h1-h0) / float64(n) / 1024
	}
	b.ResetTimer()
	for range b.N {
		for w := range waves {
			h := heap()
			ptyCost = append(ptyCost, hold("pty"))
			execCost = append(execCost, hold("exec"))
			b.Logf("wave %d: heap %.1f MiB before; %d sessions with a terminal +%.1f KiB each; %d exec sessions +%.1f KiB each; %.1f MiB after they closed",
				w+1, float64(h)/(1<<20), n, ptyCost[len(ptyCost)-1], n, execCost[len(execCost)-1], float64(heap())/(1<<20))
			if rssFirst == 0 {
				time.Sleep(memoryQuiet)
				debug.FreeOSMemory()
				rssFirst = selfRSS(b)
			}
		}
	}
	b.StopTimer()
	time.Sleep(memoryQuiet)
	runtime.GC()
	debug.FreeOSMemory()
	rssEnd := selfRSS(b)

	b.Logf("RSS %.1f MiB before the first wave, %.1f MiB after it closed, %.1f MiB after the last closed",
		float64(rssStart)/(1<<20), float64(rssFirst)/(1<<20), float64(rssEnd)/(1<<20))
	// The waves after the first: those that find what the one before
	// left to reuse.
	steady := func(costs []float64) float64 {
		worst := 0.0
		for i, c := range costs {
			if i%waves != 0 {
				worst = max(worst, c)
			}
		}
		return worst
	}
	b.ReportMetric(steady(ptyCost), "pty-KiB/session")
	b.ReportMetric(steady(execCost), "exec-KiB/session")
	b.ReportMetric(float64(rssEnd)/float64(rssStart), "rss-end/start")
	b.ReportMetric(float64(rssEnd)/float64(rssFirst), "rss-end/first")
	b.ReportMetric(float64(n), "sessions-held")
	b.ReportMetric(0, "ns/op")
}

// memoryQuiet is how long the benchmark lets the journal be quiet before
// it reads the RSS: longer than the storage's idle time before it gives
// back SQLite's caches (5 s) and its checkpointer's tick (1 s).
const memoryQuiet = 7 * time.Second

// idleRig is a front door in this process with a local command target,
// and a key and certificate for it from the real exchange.
type idleRig struct {
	srv              *bastion.Server
	addr, login      string
	key, known, home string
}

func newIdleRig(b *testing.B, conns int) *idleRig {
	b.Helper()
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	m := oidctest.StartMock(b, nil)
	dir := b.TempDir()
	home, _ := rigHome(b, dir, false)
	cfgPath := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
home = %q
api {
  listen            = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh {
  listen = "127.0.0.1:0"
  # every client comes from 127.0.0.1
  max_connections_per_address = %d
}
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
  pty     = true
  shell   = true
  permit  = ["permit-pty"]
}
target "box" { command = ["/bin/sh"] }
`, home, conns+10, m.Issuer(), m.ClientID, login)), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := bastion.LoadConfig(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	commits := bastion.NewCommitObserver()
	j, st, closeJournal, err := openJournalWith(ctx, home, filepath.Join(home, "journal.db"),
		recorder.Options{OnCommit: commits.OnCommit, OnPublish: commits.OnPublish}, storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	// Errors only: go test folds stderr into the output make bench parses.
	log := hclog.New(&hclog.LoggerOptions{Name: "bastion", Output: os.Stderr, Level: hclog.Error})
	srv, err := bastion.NewServer(ctx, bastion.ServerOptions{
		Config: cfg, Home: home, Journal: j, Store: st, Authorities: auth,
		Commits: commits, Logger: log, CloseJournal: closeJournal,
	})
	if err != nil {
		closeJournal()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("serve: %v", err)
		}
		if err := srv.CloseJournal(); err != nil {
			b.Errorf("close the journal: %v", err)
		}
	})
	r := &idleRig{srv: srv, addr: srv.SSHAddr(), login: login, home: home}
	r.key, r.known = agentKey(b, m, &serveProcess{api: srv.APIURL(), fingerprint: srv.TLS().Fingerprint}, dir, "agent-1")
	return r
}

// settle waits until the front door holds want live sessions, and then a
// second more, for the last of them to finish setting up (or tearing
// down).
func (r *idleRig) settle(b *testing.B, want int) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		live := 0
		for _, l := range r.srv.LiveSessions() {
			if l.ID != "" {
				live++
			}
		}
		if live == want && (want > 0 || len(r.srv.LiveSessions()) == 0) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d live sessions, never %d", live, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
}

// idleClients is the child process that holds the client side of the
// sessions: it reads commands on its stdin and answers "ok" on its stdout.
type idleClients struct {
	in  io.WriteCloser
	out *bufio.Scanner
}

func startIdleClients(b *testing.B, r *idleRig) *idleClients {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{"bastion-idle-clients", r.addr, r.login + "@box", r.key, r.known}, Stderr: os.Stderr}
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	return &idleClients{in: in, out: bufio.NewScanner(out)}
}

func (c *idleClients) do(b *testing.B, command string) {
	b.Helper()
	fmt.Fprintln(c.in, command)
	if !c.out.Scan() {
		b.Fatalf("%s: the clients' process ended", command)
	}
	if got := c.out.Text(); got != "ok" {
		b.Fatalf("%s: %s", command, got)
	}
}

// idleClientsMain is the bastion-idle-clients process: with the front
// door's address, the user name, the key (its certificate beside it) and
// the known_hosts file as arguments, it opens sessions on commands read
// from stdin, one a line: "pty N" opens N sessions with a terminal running
// "sleep 600", "exec N" as many without one, "close" closes them all. It
// answers each with "ok", or "error: …" and exits. It ends at the end of
// its stdin.
func idleClientsMain() {
	fail := func(err error) {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	if len(os.Args) != 5 {
		fail(fmt.Errorf("usage: %s ADDR USER KEY KNOWN_HOSTS", os.Args[0]))
	}
	addr, usr, keyPath, knownPath := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	signer, err := certSigner(keyPath)
	if err != nil {
		fail(err)
	}
	// The bastion's host certificate, checked against the host CA of the
	// @cert-authority line (x/crypto's knownhosts does not apply "*" to a
	// host with a port).
	known, err := os.ReadFile(knownPath)
	if err != nil {
		fail(err)
	}
	var hostCA ssh.PublicKey
	for line := range strings.SplitSeq(string(known), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "@cert-authority" {
			if hostCA, _, _, _, err = ssh.ParseAuthorizedKey([]byte(strings.Join(f[2:], " "))); err != nil {
				fail(err)
			}
		}
	}
	if hostCA == nil {
		fail(fmt.Errorf("%s has no @cert-authority line", knownPath))
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return bytes.Equal(k.Marshal(), hostCA.Marshal()) }}
	cfg := &ssh.ClientConfig{User: usr, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: checker.CheckHostKey, Timeout: time.Minute}

	open := func(withPTY bool) (*ssh.Client, error) {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		s, err := c.NewSession()
		if err == nil && withPTY {
			err = s.RequestPty("xterm", 24, 80, ssh.TerminalModes{})
		}
		if err == nil {
			err = s.Start("sleep 600")
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	var held []*ssh.Client
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && (f[0] == "pty" || f[0] == "exec"):
			n, err := strconv.Atoi(f[1])
			if err != nil {
				fail(err)
			}
			// A few at a time: the handshakes are what takes long.
			var mu sync.Mutex
			var first error
			next := make(chan struct{}, n)
			for range n {
				next <- struct{}{}
			}
			close(next)
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range next {
						c, err := open(f[0] == "pty")
						mu.Lock()
						if err != nil && first == nil {
							first = err
						}
						if c != nil {
							held = append(held, c)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if first != nil {
				fail(first)
			}
		case len(f) == 1 && f[0] == "close":
			for _, c := range held {
				c.Close()
			}
			held = nil
		default:
			fail(fmt.Errorf("unknown command %q", in.Text()))
		}
		fmt.Println("ok")
	}
	os.Exit(0)
}

// certSigner is the key at path with its certificate (path-cert.pub), for
// x/crypto clients.
func certSigner(path string) (ssh.Signer, error) {
	keyPEM, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	certLine, err := os.ReadFile(path + "-cert.pub")
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certLine)
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s-cert.pub is not a certificate", path)
	}
	return ssh.NewCertSigner(cert, k)
}

// selfRSS is this process's resident set size in bytes.
func selfRSS(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}
