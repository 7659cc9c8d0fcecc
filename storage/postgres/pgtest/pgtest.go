// Package pgtest runs a real PostgreSQL server for tests: a cluster of its
// own in a temporary directory, made with initdb and run with pg_ctl from
// Debian's postgresql package, listening on a free loopback port only.
//
// One cluster is shared by the tests of a package ([Shared], stopped by
// [Main]); each test gets a database of its own ([Server.NewDatabase]), so
// tests run in parallel. A test that needs a cluster set up otherwise
// (fsync off, say) starts its own with [Start].
//
// initdb and pg_ctl refuse to run as root. Tests (and CI) run as root, so
// then they run through "runuser -u postgres --" on a directory given to
// that user. Without the binaries a test skips, unless CI=true: then it
// fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binRoot is where Debian's postgresql packages put their binaries, one
// directory per major version; they are not on PATH.
const binRoot = "/usr/lib/postgresql"

// superuser is the cluster's superuser role.
const superuser = "postgres"

// Server is a running PostgreSQL cluster of a test's own.
type Server struct {
	bin      string // the directory of initdb, pg_ctl
	dir      string // the temporary directory holding everything
	data     string // the data directory
	logFile  string
	port     int
	password string
	runAs    string // "postgres" when the test runs as root, else ""

	dbs atomic.Int64 // databases made, for unique names
}

// Options set up a cluster.
type Options struct {
	// Settings are postgresql.conf lines added to the defaults, such as
	// {"fsync": "off"}.
	Settings map[string]string
}

// Bin returns the directory of the highest PostgreSQL version installed,
// or "" when there is none.
func Bin() string {
	dirs, _ := filepath.Glob(filepath.Join(binRoot, "*", "bin"))
	best, bestVer := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err != nil {
			continue
		}
		if v > bestVer {
			best, bestVer = d, v
		}
	}
	return best
}

// need skips the test when PostgreSQL is not installed, or fails it when
// CI=true: in CI a missing tool is a failure.
func need(t testing.TB) string {
	t.Helper()
	bin := Bin()
	if bin == "" {
		msg := "PostgreSQL's initdb and pg_ctl are not installed under " + binRoot + "/*/bin (Debian package postgresql)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the cluster the tests of this package share, starting it
// on first use. The package's TestMain must call [Main], which stops it.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := need(t)
	shared.once.Do(func() {
		shared.srv, shared.err = start(bin, Options{})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

// Main runs the package's tests and then stops the shared cluster, if one
// was started: call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
		os.RemoveAll(shared.srv.dir)
	}
	return code
}

// Start starts a cluster of the test's own, stopped and removed when the
// test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(need(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(s.dir)
	})
	return s
}

func start(bin string, opts Options) (s *Server, err error) {
	s = &Server{bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup(superuser); err != nil {
			return nil, fmt.Errorf("pgtest: running as root, initdb needs an unprivileged user: %w", err)
		}
		s.runAs = superuser
	}
	// The cluster's directory must be reachable by the user the server
	// runs as: a fresh directory, mode 0755, holding one given to it.
	top, err := os.MkdirTemp("", "bastion-pgtest-")
	if err != nil {
		return nil, err
	}
	s.dir = top
	defer func() {
		if err != nil {
			os.RemoveAll(top)
		}
	}()
	if err := os.Chmod(top, 0o755); err != nil {
		return nil, err
	}
	cluster := filepath.Join(top, "cluster")
	if err := os.Mkdir(cluster, 0o700); err != nil {
		return nil, err
	}
	if s.runAs != "" {
		u, err := user.Lookup(s.runAs)
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(cluster, uid, gid); err != nil {
			return nil, err
		}
	}
	s.data = filepath.Join(cluster, "data")
	s.logFile = filepath.Join(cluster, "server.log")
	s.password = randomHex(16)
	pwfile := filepath.Join(cluster, "pwfile")
	if err := s.writeAsOwner(pwfile, s.password+"\n"); err != nil {
		return nil, err
	}
	// Local (socket) connections are trusted: the socket is in a
	// directory only the server's user may enter. TCP needs the password.
	if out, err := s.run("initdb", "-D", s.data, "-U", superuser, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	os.Remove(pwfile)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.port = port
	conf := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": "'" + cluster + "'",
		"max_connections":         "200",
		"shared_buffers":          "32MB",
		"logging_collector":       "off",
	}
	for k, v := range opts.Settings {
		conf[k] = v
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var extra strings.Builder
	extra.WriteString("\n# pgtest\n")
	for _, k := range keys {
		fmt.Fprintf(&extra, "%s = %s\n", k, conf[k])
	}
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(extra.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start starts the server again after [Server.Stop]; it waits until it
// accepts connections.
func (s *Server) Start() error {
	if out, err := s.run("pg_ctl", "-D", s.data, "-l", s.logFile, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(s.logFile)
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server (fast shutdown: sessions are disconnected,
// transactions rolled back).
func (s *Server) Stop() error { return s.stop() }

// Restart stops the server and starts it again: every connection to it is
// cut.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) stop() error {
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := s.run("pg_ctl", "-D", s.data, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// run runs one of the server's programs as the cluster's owner.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	// The server's own environment, not the test's: PGDATA or PGPORT
	// there would point the programs elsewhere.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// writeAsOwner writes a file the cluster's owner can read.
func (s *Server) writeAsOwner(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if s.runAs == "" {
		return nil
	}
	u, err := user.Lookup(s.runAs)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// DSN returns a connection URL for database db as the superuser, over
// TCP on loopback.
func (s *Server) DSN(db string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(superuser, s.password),
		Host:   net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:   "/" + db,
	}
	u.RawQuery = "sslmode=disable&connect_timeout=10"
	return u.String()
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Exec runs SQL statements as the superuser in database db.
func (s *Server) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// NewDatabase creates an empty database for the test, dropped when it
// ends, and returns its connection URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbs.Add(1), randomHex(4))
	s.Exec(t, "postgres", "CREATE DATABASE "+name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			// The server was stopped by the test: nothing to drop.
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
