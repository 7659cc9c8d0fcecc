package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// TestPostgresJournal records to, reads and verifies a journal in a real
// PostgreSQL database through the command line, and runs serve on it: the
// journal location is the database's URL, the log is named by the key's
// origin.
func TestPostgresJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// testscript's TestMain owns this package's: a cluster of the test's
	// own, rather than a shared one nobody would stop.
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDatabase(t)
	home := t.TempDir()
	if code, _, errOut := cli(ctx, home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	for _, word := range []string{"hello", "again"} {
		if code, _, errOut := cli(ctx, home, "record", "--db", dsn, "--", "sh", "-c", "echo "+word); code != 0 {
			t.Fatalf("record: %d %s", code, errOut)
		}
	}
	code, out, errOut := cli(ctx, home, "sessions", "list", "--db", dsn)
	if code != 0 || strings.Count(out, "echo ") != 2 {
		t.Fatalf("sessions list: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := cli(ctx, home, "verify", "--db", dsn); code != 0 {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := cli(ctx, home, "checkpoint", "--db", dsn); code != 0 || !strings.Contains(out, "\n— ") {
		t.Fatalf("checkpoint: %d\n%s\n%s", code, out, errOut)
	}

	cfg := filepath.Join(t.TempDir(), "bastion.hcl")
	writeConfig := func(extra string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\njournal = %q\napi { listen = \"127.0.0.1:0\" }\n%s", home, dsn, extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The readers' group is a SQLite journal's: refused, not ignored.
	writeConfig("access { group = \"root\" }\n")
	if code, out, errOut := cli(ctx, home, "serve", "--config", cfg); code == 0 || !strings.Contains(errOut, "PostgreSQL") {
		t.Fatalf("serve with an access group on a database: %d\n%s\n%s", code, out, errOut)
	}

	writeConfig("")
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var serveOut, serveErr lockedBuffer
	done := make(chan int, 1)
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &serveOut, stderr: &serveErr, getenv: func(k string) string {
			if k == "BASTION_HOME" {
				return home
			}
			return ""
		}}
		done <- run(sctx, []string{"serve", "--dev", "--config", cfg}, e)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !regexp.MustCompile(`journal: +postgres://`).MatchString(serveOut.String()) {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s\n%s", code, serveOut.String(), serveErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s\n%s", serveOut.String(), serveErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The banner comes before serve journals its start: stopping it
	// before then would stop a start, not a serve.
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	for started := 0; started == 0; time.Sleep(20 * time.Millisecond) {
		if err := db.QueryRow(ctx, "SELECT count(*) FROM bastion.leaves WHERE event = 'serve.started'").Scan(&started); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not journal its start:\n%s\n%s", serveOut.String(), serveErr.String())
		}
	}
	if pw, _ := srvPassword(dsn); strings.Contains(serveOut.String(), pw) {
		t.Fatalf("serve shows the database's password:\n%s", serveOut.String())
	}
	// serve holds the log: another writer is refused and told who holds it.
	code, _, errOut = cli(ctx, home, "record", "--db", dsn, "--", "true")
	if code == 0 || !strings.Contains(errOut, "held by another writer") || !strings.Contains(errOut, "serve") {
		t.Fatalf("record while serve holds the log: %d %s", code, errOut)
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, serveErr.String())
	}
	if code, out, errOut := cli(ctx, home, "verify", "--db", dsn); code != 0 {
		t.Fatalf("verify after serve: %d\n%s\n%s", code, out, errOut)
	}
	// Another bastion's key names another log, which is not there.
	other := t.TempDir()
	if code, _, errOut := cli(ctx, other, "ca", "init", "--origin", "other.example/journal"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	if code, _, errOut := cli(ctx, other, "verify", "--db", dsn); code != 2 || !strings.Contains(errOut, `no log "other.example/journal"`) {
		t.Fatalf("verify with another bastion's key: %d %s", code, errOut)
	}
}

func srvPassword(dsn string) (string, bool) {
	m := regexp.MustCompile(`://[^:]+:([^@]+)@`).FindStringSubmatch(dsn)
	if m == nil {
		return "", false
	}
	return m[1], true
}
