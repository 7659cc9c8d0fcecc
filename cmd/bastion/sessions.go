package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/bastion"
)

func init() {
	register(&command{
		name:    "sessions list",
		summary: "list recorded sessions",
		usage:   sessionsListUsage,
		run:     runSessionsList,
	})
	register(&command{
		name:    "sessions kill",
		summary: "end a live SSH session, telling its client why",
		usage:   sessionsKillUsage,
		run:     runSessionsKill,
	})
}

const sessionsListUsage = `Usage:
    bastion sessions list [--db FILE] [--json]

Lists the journal's sessions, oldest first: ID, start time (UTC), state,
duration, frames, bytes in and out, and the command. A session is "ended"
once its end record is committed, and "open" before that: it is being
recorded, or its recorder stopped without ending it (see "bastion verify").

This is the journal's index, for finding sessions; "bastion verify" is what
proves the records behind it.

Flags:
    --db FILE   the journal (default: journal.db in the home directory)
    --json      one JSON array: id, started, ended (absent while open),
                state, frames, in_bytes, out_bytes, summary

Examples:
    $ bastion sessions list
    $ bastion sessions list --json | jq -r '.[] | select(.state == "open") | .id'`

const sessionsKillUsage = `Usage:
    bastion sessions kill [--reason TEXT] [--json] ID

Ends a live SSH session through the running server (its admin socket): the
client reads on its standard error that an operator ended the session, and
the reason if one is given; the target's command is stopped; the session's
end record says "killed", by whom (the uid and pid the kernel reports) and
why.

ID is the session's ID as "sessions list" shows it, or enough of its
beginning to name one live session. A live session is listed as "open".

It exits 1 if no live session has that ID (it has ended, or it is not one
of this server's), or if no server is running for this home.

Flags:
    --reason TEXT   why, told to the client and recorded
    --json          print the session ended as JSON: id, identity, serial,
                    login, target, client, started

Examples:
    $ bastion sessions list --json | jq -r '.[] | select(.state == "open") | .id'
    $ bastion sessions kill --reason "runaway migration, see CHG-1234" 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion sessions kill 0190b3c4`

func runSessionsKill(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	reason := fs.String("reason", "", "why (`TEXT`)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("sessions kill needs one session ID (flags go before it)")
	}
	id := fs.Arg(0)
	home, err := e.home()
	if err != nil {
		return err
	}
	l, err := bastion.AdminKill(ctx, home, bastion.AdminKillRequest{ID: id, Reason: *reason, By: operator(e)})
	switch {
	case errors.Is(err, bastion.ErrNoServer):
		return withHint(fmt.Errorf("%w: no session is live", err), `a session runs only while "bastion serve" does`)
	case errors.Is(err, bastion.ErrNoLiveSession):
		return withHint(err, `"bastion sessions list" shows the sessions; a live one is "open"`)
	case err != nil:
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	fmt.Fprintf(e.stdout, "killed session %s: %s as %s@%s from %s, started %s\n", l.ID, oneLine(l.Identity), oneLine(l.Login), oneLine(l.Target),
		l.Client, l.Started.UTC().Format(time.RFC3339))
	return nil
}

type sessionJSON struct {
	ID       string     `json:"id"`
	Started  time.Time  `json:"started"`
	Ended    *time.Time `json:"ended,omitempty"`
	State    string     `json:"state"`
	Frames   int64      `json:"frames"`
	InBytes  int64      `json:"in_bytes"`
	OutBytes int64      `json:"out_bytes"`
	Summary  string     `json:"summary"`
}

func runSessionsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("sessions list takes no arguments")
	}
	snap, st, _, err := openSnapshot(ctx, e, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	defer snap.Close()
	rows, err := snap.Sessions(ctx)
	if err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	list := make([]sessionJSON, 0, len(rows))
	for _, r := range rows {
		s := sessionJSON{
			Started: time.Unix(0, r.StartedNS).UTC(), State: "open",
			Frames: r.Frames, InBytes: r.InBytes, OutBytes: r.OutBytes, Summary: r.Summary,
		}
		if id, err := uuid.FromBytes(r.ID); err == nil {
			s.ID = id.String()
		} else {
			s.ID = fmt.Sprintf("%x", r.ID)
		}
		if r.Ended() {
			t := time.Unix(0, r.EndedNS).UTC()
			s.Ended, s.State = &t, "ended"
		}
		list = append(list, s)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED (UTC)\tSTATE\tDURATION\tFRAMES\tIN\tOUT\tCOMMAND")
	for _, s := range list {
		dur := "-"
		if s.Ended != nil {
			dur = s.Ended.Sub(s.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Started.Format("2006-01-02 15:04:05"), s.State, dur,
			s.Frames, byteCount(s.InBytes), byteCount(s.OutBytes), oneLine(s.Summary))
	}
	return tw.Flush()
}

// oneLine shows s on one line of a table: line breaks and tabs as escapes,
// other control characters as '?', so that a recorded command cannot
// break the listing or send the terminal escape sequences.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
