package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// The check of a cluster's logs that rests on their verified leaves
// rather than on their index: which sessions each starts (a session ID two
// logs claim is damage or forgery; docs/journal-format.md, section 10,
// "A session ID two logs start fails"). It reads each log with
// recorder.ReadLog: every leaf proven against the log's signed head
// checkpoint, no frame.

// logFacts are what the verified leaves of one log say.
type logFacts struct {
	ref *logRef
	// sessions are the IDs of the sessions the log's start leaves start.
	sessions []uuid.UUID
}

// readLogFacts reads the leaves of the log ref names in the journal at
// path. A missing log is postgres.ErrNoLog; a log that does not verify
// wraps recorder.ErrLogDamaged.
func readLogFacts(ctx context.Context, path string, ref *logRef) (*logFacts, error) {
	st, err := openStore(ctx, path, ref.name(), storage.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	log, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: ref.v})
	if err != nil {
		return nil, err
	}
	f := &logFacts{ref: ref}
	for _, s := range log.Sessions {
		f.sessions = append(f.sessions, uuid.UUID(s.ID))
	}
	return f, nil
}

// A sharedSession is a session ID that several logs of a cluster start.
type sharedSession struct {
	Session string   `json:"session"`
	Logs    []string `json:"logs"`
}

// sharedSessions finds the session IDs that more than one of the logs
// start, in the order of the first log's sessions.
func sharedSessions(facts []*logFacts) []sharedSession {
	holders := map[uuid.UUID][]string{}
	var order []uuid.UUID
	for _, f := range facts {
		for _, id := range f.sessions {
			if len(holders[id]) == 0 {
				order = append(order, id)
			}
			if l := holders[id]; len(l) == 0 || l[len(l)-1] != f.ref.label() {
				holders[id] = append(l, f.ref.label())
			}
		}
	}
	out := []sharedSession{}
	for _, id := range order {
		if len(holders[id]) > 1 {
			out = append(out, sharedSession{Session: id.String(), Logs: holders[id]})
		}
	}
	return out
}

// sharedSessionError is the failure of a cluster whose logs claim one
// session ID twice: session IDs are random, so that is damage or forgery.
func sharedSessionError(s sharedSession) error {
	return fmt.Errorf("session %s is claimed by %d logs: %s", s.Session, len(s.Logs), strings.Join(s.Logs, ", "))
}

// locateSession finds, in a cluster's logs, the session arg names (a whole
// ID or a unique prefix) among the sessions each log's verified start
// leaves start. A log that is missing is passed over; one that does not
// verify is named on stderr and not searched (nothing of it is trusted).
// No log starting it, a prefix several sessions share, and a session
// several logs start (IDs are random: damage or forgery, and nothing is
// shown) are exit 1.
func locateSession(ctx context.Context, e *env, sc *readScope, arg sessionArg) (*logRef, uuid.UUID, error) {
	type hit struct {
		ref *logRef
		id  uuid.UUID
	}
	var hits []hit
	var skipped []string
	for _, l := range sc.logs {
		f, err := readLogFacts(ctx, sc.path, l)
		switch {
		case errors.Is(err, postgres.ErrNoLog):
			continue
		case errors.Is(err, recorder.ErrLogDamaged):
			fmt.Fprintf(e.stderr, "bastion: error: %s does not verify: %s; it is not searched\n", l.label(), messageText(err.Error()))
			skipped = append(skipped, l.label())
			continue
		case err != nil:
			return nil, uuid.UUID{}, exitCode(2, fmt.Errorf("%s: %w", l.label(), journalError(err)))
		}
		for _, sid := range f.sessions {
			if arg.Matches(sid) {
				hits = append(hits, hit{l, sid})
			}
		}
	}
	what := arg.String()
	switch {
	case len(hits) == 0:
		hint := `run "bastion sessions list" to see the sessions of every member`
		if len(skipped) > 0 {
			hint = fmt.Sprintf("%s not searched, as it does not verify: run \"bastion verify --db %s\"", strings.Join(skipped, ", "), journalName(sc.path))
		}
		return nil, uuid.UUID{}, exitCode(1, withHint(fmt.Errorf("no member's log in %s holds a session %s", journalName(sc.path), what), hint))
	case len(hits) > 1 && hits[0].id != hits[1].id:
		return nil, uuid.UUID{}, exitCode(1, withHint(fmt.Errorf("%d sessions in the cluster's logs have IDs starting with %q", len(hits), arg.Prefix), "give more of the ID"))
	case len(hits) > 1:
		s := sharedSession{Session: hits[0].id.String()}
		for _, h := range hits {
			s.Logs = append(s.Logs, h.ref.label())
		}
		return nil, uuid.UUID{}, exitCode(1, withHint(fmt.Errorf("%w; nothing is shown of it", sharedSessionError(s)),
			`session IDs are random and unique across the cluster's logs: run "bastion verify" to find which log is damaged`))
	}
	return hits[0].ref, hits[0].id, nil
}

// readKeptCheckpoints reads the kept checkpoints given to a cluster's
// verify (--checkpoint, repeated), by the log of their origin (their first
// line): each must be of a member's log, at most one per log. Mistakes
// are exit 2: the check could not run as asked.
func readKeptCheckpoints(sc *readScope, files []string) (map[string][]byte, error) {
	kept := map[string][]byte{}
	from := map[string]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, exitCode(2, fmt.Errorf("kept checkpoint: %w", err))
		}
		origin, _, _ := strings.Cut(string(data), "\n")
		if !slices.ContainsFunc(sc.logs, func(l *logRef) bool { return l.name() == origin }) {
			return nil, exitCode(2, withHint(fmt.Errorf("kept checkpoint %s: its origin %q is none of the cluster's members", file, messageText(origin)),
				"a checkpoint is one log's: keep one of each member's log (\"bastion checkpoint --key MEMBER.pub\") and pass each with --checkpoint"))
		}
		if prev, ok := from[origin]; ok {
			return nil, exitCode(2, usageErrorf("kept checkpoints %s and %s are both of log %s: give one per member's log", prev, file, messageText(origin)))
		}
		kept[origin], from[origin] = data, file
	}
	return kept, nil
}

// dropSharedSessions leaves out of a cluster's verified logs those that
// start a session another of them starts too: which claim is true, no
// signature says, so nothing of either log is shown. Each such session is
// named on stderr, and the logs left out are added to bad.
func dropSharedSessions(e *env, logs []scopeLog, bad []string) ([]scopeLog, []string) {
	facts := make([]*logFacts, len(logs))
	for i, l := range logs {
		f := &logFacts{ref: l.ref}
		for _, s := range l.Sessions {
			f.sessions = append(f.sessions, uuid.UUID(s.ID))
		}
		facts[i] = f
	}
	shared := sharedSessions(facts)
	if len(shared) == 0 {
		return logs, bad
	}
	drop := map[string]bool{}
	for _, s := range shared {
		fmt.Fprintf(e.stderr, "bastion: error: %s: session IDs are random, so one claim is damage or forgery; nothing of those logs is shown\n", messageText(sharedSessionError(s).Error()))
		for _, l := range s.Logs {
			drop[l] = true
		}
	}
	kept := logs[:0]
	for _, l := range logs {
		if drop[l.ref.label()] {
			l.Close()
			bad = append(bad, l.ref.label()+" (a session another log claims too)")
			continue
		}
		kept = append(kept, l)
	}
	return kept, bad
}

// checkMemberReports checks, for a cluster's report (format
// ClusterReportFormat), that each member's report files have the digests
// its section of evidence.json gives, which evidence.sig covers: a
// file changed or missing, or a section without them, is a problem each,
// printed to w and counted. A report of one journal has no member files.
func checkMemberReports(w io.Writer, report fs.FS) (bad int, err error) {
	data, err := fs.ReadFile(report, evidence.JSONFile)
	if err != nil {
		return 0, err
	}
	var head struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(data, &head) != nil || head.Format != ClusterReportFormat {
		return 0, nil
	}
	var rep clusterReport
	if err := json.Unmarshal(data, &rep); err != nil {
		fmt.Fprintf(w, "  %-14s not a cluster's report: %s\n", evidence.JSONFile+":", termtext.Line(err.Error()))
		return 1, nil
	}
	for _, m := range rep.Members {
		if m.Missing {
			continue
		}
		want := fmt.Sprintf("member-%d", m.Member)
		if m.Dir != want {
			bad++
			fmt.Fprintf(w, "  member %d:     its directory is %q, not %s\n", m.Member, termtext.Line(m.Dir), want)
			continue
		}
		for _, name := range memberReportFiles {
			file := want + "/" + name
			signed, ok := m.SHA256[name]
			if !ok {
				bad++
				fmt.Fprintf(w, "  %s: no digest in the signed report: not covered by its signature\n", file)
				continue
			}
			sum, err := evidence.Digest(report, want+"/"+name)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				bad++
				fmt.Fprintf(w, "  %s: missing; the signed report gives sha256 %s\n", file, termtext.Line(signed))
			case err != nil:
				return bad, err
			case sum != signed:
				bad++
				fmt.Fprintf(w, "  %s: sha256 %s, NOT the signed %s: changed since it was made\n", file, sum, termtext.Line(signed))
			default:
				fmt.Fprintf(w, "  %s: sha256 %s, as signed\n", file, sum)
			}
		}
	}
	return bad, nil
}
