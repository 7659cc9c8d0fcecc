package bastion

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// TestMain runs the tests with more of them in parallel than go test's
// default of one per CPU, unless -parallel says otherwise: most of them
// wait on OpenSSH clients, sshd, commands in a PTY and timers, not on the
// CPU.
func TestMain(m *testing.M) {
	setParallel(8)
	os.Exit(pgtest.Main(m))
}

// setParallel makes n (at least GOMAXPROCS) the default of -test.parallel.
// A -parallel flag on the command line is parsed after, and wins.
func setParallel(n int) {
	if err := flag.Set("test.parallel", strconv.Itoa(max(n, runtime.GOMAXPROCS(0)))); err != nil {
		panic(err)
	}
}
