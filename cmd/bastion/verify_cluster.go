package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// memberVerify is one member's part of a cluster's verification.
type memberVerify struct {
	Member uint16  `json:"member"`
	Log    string  `json:"log"`
	Intact bool    `json:"intact"`
	Key    keyInfo `json:"key"`
	// Missing says the database holds no log of the member's name.
	Missing bool `json:"missing,omitempty"`
	*recorder.Report
}

// clusterVerify is verify's JSON for a cluster.
type clusterVerify struct {
	Journal string         `json:"journal"`
	Cluster string         `json:"cluster"`
	Intact  bool           `json:"intact"`
	Members []memberVerify `json:"members"`
	// Unlisted are the database's logs the cluster file does not name:
	// nothing here verifies them, and the cluster is not intact.
	Unlisted []string `json:"unlisted_logs"`
	// Failed names the members whose logs do not verify.
	Failed []string `json:"failed"`
}

// verifyCluster verifies every member's log of the cluster in scope, each
// with its own key, after recording the read. The exit status is 1 when
// any member's log does not verify, is missing, or when the database holds
// a log the cluster file does not name. A kept checkpoint is applied to
// the log of its origin; with a session, only the log that holds it is
// verified.
func verifyCluster(ctx context.Context, e *env, sc *readScope, opts recorder.VerifyOptions, asJSON, unrecorded bool) error {
	keptOrigin := ""
	if opts.Kept != nil {
		keptOrigin, _, _ = strings.Cut(string(opts.Kept), "\n")
		found := false
		for _, l := range sc.logs {
			found = found || l.name() == keptOrigin
		}
		if !found {
			return exitCode(2, withHint(fmt.Errorf("the kept checkpoint's origin %q is none of the cluster's members", keptOrigin),
				"a checkpoint is one log's: keep one of a member's log (\"bastion checkpoint --key MEMBER.pub\")"))
		}
	}
	logs := sc.logs
	attrs := recorder.Attrs{"logs": sc.logNames()}
	if opts.Session != nil {
		id := uuid.UUID(*opts.Session)
		attrs["session"] = id.String()
		holders, err := sessionHolders(ctx, sc, id)
		if err != nil {
			return err
		}
		switch len(holders) {
		case 0:
			return exitCode(1, withHint(fmt.Errorf("no member's log in %s holds session %s", journalName(sc.path), id), `run "bastion sessions list" to see the sessions`))
		case 1:
		default:
			return exitCode(1, ambiguousSession(id, holders))
		}
		logs = holders
	}
	unlisted, err := sc.unlisted(ctx)
	if err != nil {
		return exitCode(2, err)
	}
	if err := recordRead(ctx, e, sc.path, "verify", attrs, unrecorded); err != nil {
		return err
	}
	out := clusterVerify{Journal: journalName(sc.path), Cluster: sc.clusterFile, Intact: len(unlisted) == 0, Unlisted: orEmpty(unlisted), Failed: []string{}}
	for _, l := range logs {
		mv := memberVerify{Member: l.member, Log: l.name(), Key: l.key}
		o := opts
		o.Verifier = l.v
		if l.name() != keptOrigin {
			o.Kept = nil
		}
		st, err := openStore(ctx, sc.path, l.name(), storage.Options{ReadOnly: true})
		switch {
		case errors.Is(err, postgres.ErrNoLog):
			mv.Missing = true
			mv.Report = &recorder.Report{Origin: l.name(), Unterminated: []recorder.SessionSummary{}, Abandoned: []recorder.SessionSummary{},
				Problems: []recorder.Problem{{Leaf: -1, Where: "database", What: "no log " + l.name() + " in the database: the member never wrote, or its log was removed"}}}
		case errors.Is(err, storage.ErrNotJournal) || errors.Is(err, storage.ErrSchemaTooNew):
			mv.Report = &recorder.Report{Origin: l.name(), Unterminated: []recorder.SessionSummary{}, Abandoned: []recorder.SessionSummary{},
				Problems: []recorder.Problem{{Leaf: -1, Where: "database", What: err.Error()}}}
		case err != nil:
			return exitCode(2, err)
		default:
			// Each member's log has its own writer: a running instance's
			// checkpoints not cosigned yet are lag, a stopped one's are
			// not witnessed.
			o.Live = writerLive(ctx, e, st, sc.path)
			mv.Report, err = recorder.Verify(ctx, st, o)
			st.Close()
			if err != nil {
				return exitCode(2, fmt.Errorf("verify %s: %w", l.label(), err))
			}
		}
		mv.Intact = mv.Report.Intact()
		if !mv.Intact {
			out.Intact = false
			out.Failed = append(out.Failed, l.label())
		}
		out.Members = append(out.Members, mv)
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printClusterVerify(e.stdout, sc, &out)
	}
	if !out.Intact {
		return exitCode(1, nil)
	}
	return nil
}

func printClusterVerify(w io.Writer, sc *readScope, out *clusterVerify) {
	fmt.Fprintf(w, "cluster %s: %d member(s), each log verified with its own member's key only\n", sc.clusterFile, len(sc.logs))
	for _, m := range out.Members {
		fmt.Fprintf(w, "\nmember %d, log %s\n", m.Member, termtext.Line(m.Log))
		if m.Missing {
			fmt.Fprintf(w, "journal %s\n  log:          %s\nresult: FAILED: no such log in the database\n", out.Journal, termtext.Line(m.Log))
			continue
		}
		printReport(w, out.Journal, m.Key, m.Report)
	}
	fmt.Fprintln(w)
	for _, n := range out.Unlisted {
		fmt.Fprintf(w, "unlisted log: %s is in the database and not in the cluster file: no key given verifies it\n", termtext.Line(n))
	}
	switch {
	case out.Intact:
		fmt.Fprintf(w, "cluster: intact, %d member log(s)\n", len(out.Members))
	case len(out.Failed) > 0:
		verb := "does"
		if len(out.Failed) > 1 {
			verb = "do"
		}
		fmt.Fprintf(w, "cluster: FAILED: %s %s not verify\n", termtext.Line(strings.Join(out.Failed, ", ")), verb)
	default:
		fmt.Fprintf(w, "cluster: FAILED: the database holds %d log(s) the cluster file does not name\n", len(out.Unlisted))
	}
}

// sessionHolders are the logs of the scope whose index claims session id.
func sessionHolders(ctx context.Context, sc *readScope, id uuid.UUID) ([]*logRef, error) {
	var holders []*logRef
	for _, l := range sc.logs {
		st, err := openStore(ctx, sc.path, l.name(), storage.Options{ReadOnly: true})
		if errors.Is(err, postgres.ErrNoLog) {
			continue
		}
		if err != nil {
			return nil, exitCode(2, journalError(err))
		}
		snap, err := st.Snapshot(ctx)
		if err != nil {
			st.Close()
			return nil, exitCode(2, journalError(err))
		}
		_, err = snap.SessionByID(ctx, id[:])
		snap.Close()
		st.Close()
		switch {
		case err == nil:
			holders = append(holders, l)
		case !errors.Is(err, storage.ErrNotFound):
			return nil, exitCode(2, fmt.Errorf("%s: %w", l.label(), err))
		}
	}
	return holders, nil
}

// ambiguousSession is the failure of a read whose session several logs
// claim: session IDs are random, so that is damage or forgery, and
// nothing is shown.
func ambiguousSession(id uuid.UUID, holders []*logRef) error {
	names := make([]string, len(holders))
	for i, l := range holders {
		names[i] = l.label()
	}
	return withHint(fmt.Errorf("session %s is claimed by %d logs: %s; nothing is shown of it", id, len(holders), strings.Join(names, ", ")),
		`session IDs are random and unique across the cluster's logs: run "bastion verify" to find which log is damaged`)
}
