package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/cluster"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// The readers of a journal in a database that several serve instances
// share (a cluster) read every member's log: verify, evidence, sessions
// list, show and search, play and export. The members and their logs'
// keys come from the cluster file (--cluster FILE, else the home's
// cluster.pub when it exists), and each log is verified with its own
// member's key only: nothing one member signs speaks for another's log.
// Without a cluster file, a reader reads the one log its key (--key, or
// the home's journal.pub) names, as it always did. A SQLite journal is
// one log: it has no cluster.

// A logRef is one log a reader reads and the key it verifies it with.
type logRef struct {
	// member is the log's member ID in the cluster file, 0 without one.
	member uint16
	v      note.Verifier
	key    keyInfo
}

// name is the log's name, its key's origin.
func (l *logRef) name() string { return l.v.Name() }

// label names the log in messages: "member 2 (b.example/journal)", or
// the log's name alone outside a cluster.
func (l *logRef) label() string {
	if l.member == 0 {
		return strconv.Quote(l.name())
	}
	return fmt.Sprintf("member %d (%s)", l.member, l.name())
}

// A readScope is what a reading command reads: the journal's location,
// and the logs in it, one or a cluster's.
type readScope struct {
	path string
	// clusterFile is the cluster file read, "" outside a cluster.
	clusterFile string
	logs        []*logRef
}

// clustered says whether the scope is a cluster's logs.
func (s *readScope) clustered() bool { return s.clusterFile != "" }

// logNames is the scope's logs' names, comma-separated: what a recorded
// read says it read (the logs attribute), "" outside a cluster.
func (s *readScope) logNames() string {
	if !s.clustered() {
		return ""
	}
	names := make([]string, len(s.logs))
	for i, l := range s.logs {
		names[i] = strconv.Itoa(int(l.member)) + "=" + l.name()
	}
	return strings.Join(names, ",")
}

// unlisted lists the logs of the scope's database that are not in its
// cluster file: no key the reader holds verifies them, so a reader of
// the cluster reports them rather than leave them out unnoticed.
func (s *readScope) unlisted(ctx context.Context) ([]string, error) {
	if !s.clustered() {
		return nil, nil
	}
	names, err := postgres.Logs(ctx, s.path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		listed := false
		for _, l := range s.logs {
			listed = listed || l.name() == n
		}
		if !listed {
			out = append(out, n)
		}
	}
	return out, nil
}

// registerClusterFlag adds --cluster to fs.
func registerClusterFlag(fs *flagSet) *string {
	return fs.String("cluster", "", "cluster `FILE`")
}

// clusterFlagUsage is the usage of --cluster, its text at column col as
// the command's other flags' is.
func clusterFlagUsage(col int) string {
	return usageFlag(col, "--cluster FILE", "a PostgreSQL journal: read every member's log,\neach with its key in FILE (default: the home's\ncluster.pub, when it exists and no --key is\ngiven)")
}

// scope finds what a reader reads: the journal at db (--db, or the home's)
// and, for a database with a cluster file (clusterFlag, else the home's
// cluster.pub when no --key is given), every member's log; else the one
// log keyFile (or the home's journal.pub) names. Errors are exit 2.
func (e *env) scope(db, keyFile, clusterFlag string) (*readScope, error) {
	path, err := e.dbPath(db)
	if err != nil {
		return nil, exitCode(2, err)
	}
	file, fromHome := clusterFlag, false
	switch {
	case clusterFlag != "" && keyFile != "":
		return nil, exitCode(2, usageErrorf("give --cluster FILE or --key FILE, not both: --key names one log, the cluster file every member's"))
	case clusterFlag != "" && !isDatabase(path):
		return nil, exitCode(2, withHint(usageErrorf("--cluster reads the logs of a PostgreSQL journal, and %s is a SQLite file: it holds one log", path),
			"pass --db postgres://… with --cluster, or leave --cluster out"))
	case clusterFlag == "" && keyFile == "" && isDatabase(path):
		if home, err := e.home(); err == nil {
			if _, err := os.Stat(filepath.Join(home, cluster.File)); err == nil {
				file, fromHome = filepath.Join(home, cluster.File), true
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, exitCode(2, fmt.Errorf("cluster file: %w", err))
			}
		}
	}
	if file == "" {
		v, key, err := loadVerifier(e, keyFile)
		if err != nil {
			return nil, exitCode(2, err)
		}
		return &readScope{path: path, logs: []*logRef{{v: v, key: key}}}, nil
	}
	ms, err := cluster.Load(file)
	if err != nil {
		return nil, exitCode(2, withHint(err, "the cluster file lists each member as \"ID VERIFIER-KEY\", one a line (docs/scale-out.md)"))
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, exitCode(2, err)
	}
	s := &readScope{path: path, clusterFile: abs}
	for _, m := range ms.All() {
		s.logs = append(s.logs, &logRef{member: m.ID, v: m.Key, key: keyInfo{File: abs, Key: m.Key.Text, Default: fromHome, Cluster: true}})
	}
	return s, nil
}

// A scopeLog is one log of a scope, read and verified as readLog reads
// it.
type scopeLog struct {
	ref *logRef
	*verifiedLog
}

// readScopeLogs reads every log of the scope as readLog reads one. Outside
// a cluster, its errors are readLog's. In a cluster, a member's log that
// is missing, cannot be read or does not verify is named on stderr and
// left out (nothing is shown from it), and failed is the exit 1 the
// command ends with after showing the others'; a log in the database that
// the cluster file does not name is reported the same way, and so are
// logs whose verified leaves start a session another log starts too.
func readScopeLogs(ctx context.Context, e *env, sc *readScope, events func(string) bool) (logs []scopeLog, failed error, err error) {
	if !sc.clustered() {
		l, err := readLogAt(ctx, e, sc.path, sc.logs[0].v, events)
		if err != nil {
			return nil, nil, err
		}
		return []scopeLog{{sc.logs[0], l}}, nil, nil
	}
	var bad []string
	for _, ref := range sc.logs {
		l, err := readLogAt(ctx, e, sc.path, ref.v, events)
		if err != nil {
			fmt.Fprintf(e.stderr, "bastion: error: %s: %s\n", ref.label(), messageText(err.Error()))
			bad = append(bad, ref.label())
			continue
		}
		logs = append(logs, scopeLog{ref, l})
	}
	logs, bad = dropSharedSessions(e, logs, bad)
	unlisted, err := sc.unlisted(ctx)
	if err != nil {
		closeScopeLogs(logs)
		return nil, nil, exitCode(2, err)
	}
	for _, n := range unlisted {
		fmt.Fprintf(e.stderr, "bastion: error: log %q is in the database and not in the cluster file %s: nothing of it is shown\n", messageText(n), sc.clusterFile)
		bad = append(bad, strconv.Quote(n)+" (not in the cluster file)")
	}
	if len(bad) > 0 {
		failed = exitCode(1, withHint(fmt.Errorf("%d log(s) of the cluster are left out: %s", len(bad), strings.Join(bad, ", ")),
			`run "bastion verify --db `+journalName(sc.path)+`" for every finding`))
	}
	return logs, failed, nil
}

func closeScopeLogs(logs []scopeLog) {
	for _, l := range logs {
		l.Close()
	}
}

// scopeErr is the exit status of a command that showed what the scope's
// logs say: the first log's index finding, else failed.
func scopeErr(logs []scopeLog, failed error) error {
	for _, l := range logs {
		if err := l.indexErr(); err != nil {
			return err
		}
	}
	return failed
}

// openSession opens, read-only, the log of the scope that holds the
// session arg names: outside a cluster the one log (arg is resolved as
// before, by the caller); in a cluster the member's log whose verified
// start leaves start it, found by a whole ID or a unique prefix across
// every member's log (locateSession). The session is then read and
// verified with that member's key only.
func openSession(ctx context.Context, e *env, sc *readScope, arg sessionArg) (ref *logRef, st storage.Store, id uuid.UUID, err error) {
	if !sc.clustered() {
		st, err := openReadOnly(ctx, sc.path, sc.logs[0].name())
		if err != nil {
			return nil, nil, id, exitCode(2, err)
		}
		id, err = resolveSession(ctx, st, arg, sc.path)
		if err != nil {
			st.Close()
			return nil, nil, id, err
		}
		return sc.logs[0], st, id, nil
	}
	ref, id, err = locateSession(ctx, e, sc, arg)
	if err != nil {
		return nil, nil, id, err
	}
	st, err = openReadOnly(ctx, sc.path, ref.name())
	if err != nil {
		return nil, nil, id, exitCode(2, err)
	}
	return ref, st, id, nil
}

// readAttrs are the attributes of the recorded read of session id in the
// log ref names: session, and in a cluster the log (logs).
func (s *readScope) readAttrs(ref *logRef, id uuid.UUID) recorder.Attrs {
	a := recorder.Attrs{"session": id.String()}
	if s.clustered() {
		a["logs"] = strconv.Itoa(int(ref.member)) + "=" + ref.name()
	}
	return a
}

// sayWhere tells, on stderr, which member's log holds session id, when
// the scope is a cluster's.
func (s *readScope) sayWhere(e *env, ref *logRef, id uuid.UUID) {
	if s.clustered() {
		fmt.Fprintf(e.stderr, "bastion: session %s is in %s's log, verified with its key only\n", id, ref.label())
	}
}

// clusterParagraph is the part of the usage of every reading command that
// says how it reads a cluster's logs.
var clusterParagraph = fill(`A PostgreSQL journal may hold the logs of several serve instances of one
cluster. With a cluster file (--cluster FILE, or the home's cluster.pub
when it exists and no --key is given), lines of "ID VERIFIER-KEY" naming
every member and its log's public key, this command reads every member's
log, each verified with its own member's key only, and says which member
each session belongs to (a MEMBER column; "member" and "log" in JSON). A
session ID is found in whichever log holds it; one that several logs claim
is refused. Without a cluster file it reads the one log its key names.
See docs/scale-out.md, "Reading a cluster".`, 76)
