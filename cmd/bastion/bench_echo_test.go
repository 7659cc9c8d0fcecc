package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

// echoCommand puts the session's terminal in raw mode without echo (ISIG
// kept, so that ^C ends it), says it is ready, and runs cat: each byte
// typed comes back as cat writes it, as an editor or a shell's line
// editor echoes a keystroke.
const echoCommand = "stty raw -echo isig; echo ready; cat"

// echoSession is one "ssh -tt … cat" with a pipe for each end.
type echoSession struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  io.Reader
	errb *bytes.Buffer
	rtt  []time.Duration
}

func (r *frontRig) startEcho(b *testing.B, name string, dest []string) *echoSession {
	b.Helper()
	args := append(append(r.base(), "-tt"), dest...)
	cmd := exec.Command(r.ssh, append(args, echoCommand)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	s := &echoSession{name: name, cmd: cmd, in: in, out: out, errb: &bytes.Buffer{}}
	cmd.Stderr = s.errb
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var seen []byte
	buf := make([]byte, 256)
	for !bytes.Contains(seen, []byte("ready\n")) {
		n, err := out.Read(buf)
		if err != nil {
			b.Fatalf("%s: %v before ready: %q %s", name, err, seen, s.errb)
		}
		seen = append(seen, buf[:n]...)
	}
	return s
}

// key sends one byte and times until it comes back.
func (s *echoSession) key(b *testing.B, c byte) {
	var got [1]byte
	t0 := time.Now()
	if _, err := s.in.Write([]byte{c}); err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
	if _, err := io.ReadFull(s.out, got[:]); err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
	s.rtt = append(s.rtt, time.Since(t0))
	if got[0] != c {
		b.Fatalf("%s: sent %q, echoed %q", s.name, c, got[0])
	}
}

// end stops cat with ^C and lets ssh exit.
func (s *echoSession) end() {
	s.in.Write([]byte{3})
	s.in.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, s.out)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
	}
}

// percentile is the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// BenchmarkFrontEcho is the keystroke echo latency the bastion adds: one
// byte at a time sent to cat under a terminal (ssh -tt, raw mode) and
// timed until it comes back, BENCH_FRONT_KEYS times (default 500) on each
// of four sessions held at once, taking turns key by key: through the
// bastion to its local command target (box), through the bastion to the
// sshd target (db), the same with every masking detector on (dbm), and
// straight to that sshd. It reports p50, p99 and the maximum of each, and
// the bastion's less the direct one's at p50 and p99, and dbm's less db's
// at p50 (what masking adds).
func BenchmarkFrontEcho(b *testing.B) {
	keys := 500
	if n, err := strconv.Atoi(os.Getenv("BENCH_FRONT_KEYS")); err == nil && n > 0 {
		keys = n
	}
	r := newFrontRig(b)
	b.ResetTimer()
	var box, db, dbm, direct []time.Duration
	for range b.N {
		ss := []*echoSession{
			r.startEcho(b, "box", r.box()),
			r.startEcho(b, "db", r.bastion()),
			r.startEcho(b, "direct", r.direct()),
			r.startEcho(b, "dbm", r.masked()),
		}
		for i := range keys {
			c := byte('a' + i%26)
			for j := range ss {
				ss[(i+j)%len(ss)].key(b, c)
			}
		}
		for _, s := range ss {
			s.end()
		}
		box, db, direct, dbm = append(box, ss[0].rtt...), append(db, ss[1].rtt...), append(direct, ss[2].rtt...), append(dbm, ss[3].rtt...)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"box", box}, {"db", db}, {"dbm", dbm}, {"direct", direct}} {
		b.ReportMetric(ms(percentile(m.d, 50)), m.name+"-p50-ms")
		b.ReportMetric(ms(percentile(m.d, 99)), m.name+"-p99-ms")
		b.ReportMetric(ms(percentile(m.d, 100)), m.name+"-max-ms")
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"box", box}, {"db", db}, {"dbm", dbm}} {
		b.ReportMetric(ms(percentile(m.d, 50)-percentile(direct, 50)), "added-"+m.name+"-p50-ms")
		b.ReportMetric(ms(percentile(m.d, 99)-percentile(direct, 99)), "added-"+m.name+"-p99-ms")
	}
	// Masking's own cost: the masked route against the same route
	// unmasked, in the same run.
	b.ReportMetric(ms(percentile(dbm, 50)-percentile(db, 50)), "masking-p50-ms")
	b.ReportMetric(float64(len(direct)), "keys-each")
	b.ReportMetric(0, "ns/op")
}
