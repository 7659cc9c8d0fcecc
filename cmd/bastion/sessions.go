package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
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

var sessionsListUsage = `Usage:
    bastion sessions list [--db FILE] [--key FILE | --cluster FILE]
                          [--identity ID] [--target NAME] [--login USER]
                          [--since T] [--until T]
                          [--state live|unterminated|ended|abandoned] [--json]

Lists the journal's sessions, oldest first: ID, start time (UTC), state,
duration, frames, bytes in and out, who (identity, or the local user),
where (LOGIN@TARGET, or the host) and the command, one line each: a
command's first line, cut at 60 characters, with "…" when anything was left
out (--json and "sessions show" give it whole). A session is "live" while it is being
recorded: it has no end record and a running process holds the journal's
writer lock; "unterminated" when it has no end record and no running
process holds the lock (its recorder was killed, or the machine stopped,
and no writer has opened the journal since); "abandoned" when a later
writer ended it after its recorder stopped; and "ended" otherwise. Bytes are those its end
record counts: "-" while it is live (and for sessions recorded before
bastion counted them); "bastion sessions show" counts them from the frames.

The filters combine: --identity, --target and --login match the session's
start record exactly (a local "bastion record" matches --identity on its OS
user and --target on its host); --since and --until (RFC 3339 times or
dates, e.g. 2026-11-27 or 2026-11-27T10:00:00Z) keep the sessions active at
some time in between.

Everything listed comes from the journal's signed records: every leaf of
the log is read and hashed, and must give the root of the journal's latest
checkpoint, signed by its key, or nothing is listed (exit 1). If the index
columns beside the records were changed, that is said first, on stderr,
the list still shows what the records say, and it exits 1. The frames are
not read: "bastion sessions show" and "bastion verify" check those.

` + clusterParagraph + `

A log of the cluster that is missing or does not verify, or a log in the
database the cluster file does not name, is said on stderr and nothing of
it is listed; the others are, and the list exits 1.

Flags:
    --db FILE          the journal (default: journal.db in the home directory)
    --key FILE         the journal's public key (default: journal.pub in the
                       home directory)
` + clusterFlagUsage(23) + `
    --identity ID      only sessions of this identity
    --target NAME      only sessions to this target
    --login USER       only sessions as this login
    --since T          only sessions that were active at or after T
    --until T          only sessions that started at or before T
    --state S          only live, ended or abandoned sessions
    --json             one JSON array: id, member and log (of a cluster's
                       journal), started, ended (absent while live), state, end_reason, identity, target, login, client,
                       kind, frames, in_bytes and out_bytes (absent when the
                       end record does not count them), summary (the command,
                       subsystem or forward)

Examples:
    $ bastion sessions list
    $ bastion sessions list --identity https://token.actions.githubusercontent.com#repo:bank/app --since 2026-11-01
    $ bastion sessions list --state live --json | jq -r '.[].id'`

const sessionsKillUsage = `Usage:
    bastion sessions kill [--reason TEXT] [--token-file FILE] [--json] ID

Ends a live SSH session through the running server (its admin socket): the
client reads on its standard error that an operator ended the session, and
the reason if one is given; the target's command is stopped; the session's
end record says "killed", by whom and why. Who is the uid, account and pid
the kernel reports for the caller, and the person: the identity of the
OIDC token given with --token-file (or $BASTION_TOKEN_FILE), which the
server verifies, else the identity the configuration's operator_accounts
maps the account to, else nobody ("operator.verified" none). When the
policy names operators, a person who is not one is refused ("not an
operator"), and the refusal is journaled.

ID is the session's ID as "sessions list" shows it, or enough of its
beginning to name one live session. A live session is listed as "live".

In a cluster (docs/scale-out.md), a session another member holds is
ended by that member: this server journals a kill request, the holder
ends the session with an end record that names the request, and the
command waits a few seconds for that record and says so.

It exits 1 if no live session has that ID (it has ended, or no member
holds it), if the member that holds it did not end it in time, or if no
server is running for this home.

Flags:
    --reason TEXT   why, told to the client and recorded
    --token-file FILE
                    an OIDC token naming you, for the server to verify
                    (default: $BASTION_TOKEN_FILE)
    --json          print the session ended as JSON: id, identity, serial,
                    login, target, client, started, and remote (member,
                    request_leaf, end_leaf, end_reason) when another
                    member held it

Examples:
    $ bastion sessions list --state live --json | jq -r '.[].id'
    $ bastion sessions kill --reason "runaway migration, see CHG-1234" 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion sessions kill 0190b3c4`

func runSessionsKill(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	reason := fs.String("reason", "", "why (`TEXT`)")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.StringVar(&e.tokenFile, "token-file", "", "token `FILE`")
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
	token, err := e.readerToken()
	if err != nil {
		return err
	}
	l, err := bastion.AdminKill(ctx, home, bastion.AdminKillRequest{ID: id, Reason: *reason, By: operator(e), Token: token})
	switch {
	case errors.Is(err, bastion.ErrNoServer):
		return withHint(fmt.Errorf("%w: no session is live", err), `a session runs only while "bastion serve" does`)
	case errors.Is(err, bastion.ErrNoLiveSession):
		return withHint(err, `"bastion sessions list" shows the sessions; a live one is "live"`)
	case err != nil:
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	fmt.Fprintf(e.stdout, "killed session %s: %s as %s@%s from %s, started %s\n", termtext.Line(l.ID), termtext.Line(l.Identity), termtext.Line(l.Login), termtext.Line(l.Target),
		termtext.Line(l.Client), l.Started.UTC().Format(time.RFC3339))
	if r := l.Remote; r != nil {
		fmt.Fprintf(e.stdout, "  held by member %s, which ended it (%s) at its leaf %d, at the request this member journaled at leaf %d\n",
			termtext.Line(r.Member), termtext.Line(r.Reason), r.EndLeaf, r.RequestLeaf)
	}
	return nil
}

// sessionJSON is a line of "sessions list" (and its --json).
type sessionJSON = sessions.Session

// sessionFilter holds the filter flags list and search share.
type sessionFilter struct {
	identity, target, login, state string
	since, until                   string
	sessions.Filter
}

func (f *sessionFilter) register(fs *flagSet) {
	fs.StringVar(&f.identity, "identity", "", "identity `ID`")
	fs.StringVar(&f.target, "target", "", "target `NAME`")
	fs.StringVar(&f.login, "login", "", "login `USER`")
	fs.StringVar(&f.since, "since", "", "start `TIME`")
	fs.StringVar(&f.until, "until", "", "end `TIME`")
	fs.StringVar(&f.state, "state", "", "live, unterminated, ended or abandoned")
}

// check reads the flags into the filter.
func (f *sessionFilter) check() error {
	f.Filter = sessions.Filter{Identity: f.identity, Target: f.target, Login: f.login, State: f.state}
	if err := f.Filter.Check(); err != nil {
		return usageErrorf("--%v", err)
	}
	var err error
	if f.since != "" {
		if f.Since, err = sessions.ParseTime(f.since); err != nil {
			return usageErrorf("--since: %v", err)
		}
	}
	if f.until != "" {
		if f.Until, err = sessions.ParseTime(f.until); err != nil {
			return usageErrorf("--until: %v", err)
		}
	}
	return nil
}

// StateUnterminated is the state of a session without an end record
// whose recorder is gone (sessions.StateUnterminated).
const StateUnterminated = sessions.StateUnterminated

// writerHolder describes the writer that holds the journal open as st
// (at path, for a SQLite file) now, or "" when none does: a SQLite file's
// lock, a database log's advisory lock. The one probe every reader asks.
func writerHolder(ctx context.Context, st storage.Store, path string) (string, error) {
	if pg, ok := st.(*postgres.Store); ok {
		return pg.WriterHolder(ctx)
	}
	return storage.WriterHolder(path), nil
}

// writerGone says whether no live process holds the writer lock of the
// journal at path, open as st: its unterminated sessions are then not
// live. A database that cannot say leaves them live.
func writerGone(ctx context.Context, st storage.Store, path string) bool {
	holder, err := writerHolder(ctx, st, path)
	return err == nil && holder == ""
}

// writerHeld says whether a writer holds the journal open as st now: a
// running writer pushes its checkpoints to the witnesses, so what they
// have not cosigned yet is lag. One that cannot say counts as no writer,
// so lag is then reported as a problem rather than hidden.
func writerHeld(ctx context.Context, st storage.Store, path string) bool {
	holder, err := writerHolder(ctx, st, path)
	return err == nil && holder != ""
}

func runSessionsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	asJSON := fs.Bool("json", false, "JSON output")
	clusterFlag := registerClusterFlag(fs)
	var f sessionFilter
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("sessions list takes no arguments")
	}
	if err := f.check(); err != nil {
		return err
	}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	logs, failed, err := readScopeLogs(ctx, e, sc, nil)
	if err != nil {
		return err
	}
	defer closeScopeLogs(logs)
	list := listScope(ctx, sc, logs, &f)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return err
		}
		return scopeErr(logs, failed)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	member := func(sessionJSON) string { return "" }
	if sc.clustered() {
		fmt.Fprint(tw, "MEMBER\t")
		member = func(s sessionJSON) string { return strconv.Itoa(int(s.Member)) + "\t" }
	}
	fmt.Fprintln(tw, "ID\tSTARTED (UTC)\tSTATE\tDURATION\tFRAMES\tIN\tOUT\tWHO\tWHERE\tCOMMAND")
	for _, s := range list {
		fmt.Fprint(tw, member(s))
		dur := "-"
		if s.Ended != nil {
			dur = s.Ended.Sub(s.Started).Round(time.Millisecond).String()
		}
		where := s.Target
		if s.Login != "" {
			where = s.Login + "@" + s.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", termtext.Line(s.ID), s.Started.Format("2006-01-02 15:04:05"), termtext.Line(s.State), dur,
			s.Frames, byteCount(s.InBytes), byteCount(s.OutBytes), dash(termtext.Line(s.Identity)), dash(termtext.Line(where)), termtext.Line(sessions.ShortCommand(s.Summary, commandWidth)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return scopeErr(logs, failed)
}

// listScope lists the sessions f matches of every log read, in the order
// they started; in a cluster each names its member and log.
func listScope(ctx context.Context, sc *readScope, logs []scopeLog, f *sessionFilter) []sessionJSON {
	list := []sessionJSON{}
	for _, l := range logs {
		for _, s := range sessions.List(l.Log, &f.Filter, writerGone(ctx, l.st, l.path)) {
			if sc.clustered() {
				s.Member, s.Log = l.ref.member, l.ref.name()
			}
			list = append(list, s)
		}
	}
	if sc.clustered() {
		slices.SortStableFunc(list, func(a, b sessionJSON) int { return a.Started.Compare(b.Started) })
	}
	return list
}

// commandWidth is how many characters of a session's command the list
// shows; --json and "sessions show" give it whole.
const commandWidth = sessions.CommandWidth

// byteCount prints a count the records may not hold as "-".
func byteCount(n *int64) string {
	if n == nil {
		return "-"
	}
	return recorder.ByteCount(*n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
