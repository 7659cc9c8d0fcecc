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
	// Shared are the session IDs that several members' logs start.
	Shared []sharedSession `json:"shared_sessions"`
}

// verifyCluster verifies every member's log of the cluster in scope, each
// with its own key, after recording the read. The exit status is 1 when
// any member's log does not verify, is missing, when the database holds
// a log the cluster file does not name, or when two logs start one
// session. Each kept checkpoint (kept, by origin) is applied to the log
// of its origin; with a session, only the log that holds it is verified.
func verifyCluster(ctx context.Context, e *env, sc *readScope, opts recorder.VerifyOptions, kept map[string][]byte, asJSON, unrecorded bool) error {
	logs := sc.logs
	attrs := recorder.Attrs{"logs": sc.logNames()}
	if opts.Session != nil {
		id := uuid.UUID(*opts.Session)
		attrs["session"] = id.String()
		ref, _, err := locateSession(ctx, e, sc, sessionArg{ID: id})
		if err != nil {
			return err
		}
		logs = []*logRef{ref}
	}
	unlisted, err := sc.unlisted(ctx)
	if err != nil {
		return exitCode(2, err)
	}
	if err := recordRead(ctx, e, sc.path, "verify", attrs, unrecorded); err != nil {
		return err
	}
	out := clusterVerify{Journal: journalName(sc.path), Cluster: sc.clusterFile, Intact: len(unlisted) == 0, Unlisted: orEmpty(unlisted), Failed: []string{}}
	var facts []*logFacts
	for _, l := range logs {
		mv := memberVerify{Member: l.member, Log: l.name(), Key: l.key}
		o := opts
		o.Verifier = l.v
		o.Kept = kept[l.name()]
		o.Member = l.member
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
			o.Live = o.Live || writerHeld(ctx, st, "")
			mv.Report, err = recorder.Verify(ctx, st, o)
			st.Close()
			if err != nil {
				return exitCode(2, fmt.Errorf("verify %s: %w", l.label(), err))
			}
			switch f, err := readLogFacts(ctx, sc.path, l); {
			case err == nil:
				facts = append(facts, f)
			case !errors.Is(err, recorder.ErrLogDamaged) && !errors.Is(err, postgres.ErrNoLog):
				return exitCode(2, fmt.Errorf("%s: %w", l.label(), err))
			}
		}
		mv.Intact = mv.Report.Intact()
		if !mv.Intact {
			out.Intact = false
			out.Failed = append(out.Failed, l.label())
		}
		out.Members = append(out.Members, mv)
	}
	out.Shared = sharedSessions(facts)
	out.Intact = out.Intact && len(out.Shared) == 0
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
		m.Report.WriteText(w, out.Journal, m.Key)
	}
	fmt.Fprintln(w)
	for _, n := range out.Unlisted {
		fmt.Fprintf(w, "unlisted log: %s is in the database and not in the cluster file: no key given verifies it\n", termtext.Line(n))
	}
	for _, d := range out.Shared {
		fmt.Fprintf(w, "shared session: %s: session IDs are random, so one log's claim is damage or forgery\n", termtext.Line(sharedSessionError(d).Error()))
	}
	switch {
	case out.Intact:
		fmt.Fprintf(w, "cluster: intact, %d member log(s)\n", len(out.Members))
	case len(out.Failed) == 0 && len(out.Unlisted) == 0:
		fmt.Fprintf(w, "cluster: FAILED: %d session ID(s) claimed by more than one log\n", len(out.Shared))
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
