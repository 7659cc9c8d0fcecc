package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

func init() {
	register(&command{
		name:    "play",
		summary: "replay a recorded session in the terminal, with its timing",
		usage:   playUsage,
		run:     runPlay,
	})
}

var playUsage = `Usage:
    bastion play [--db FILE] [--key FILE | --cluster FILE] [--speed X|max]
                 [--max-idle D] [--from OFFSET] [--show-input] [--follow]
                 [--force]
                 [--unrecorded] [--token-file FILE]
                 [--server URL [--ca-fingerprint SHA256:X]] ID

Replays session ID (or a unique prefix of it, 4 characters at least) in
this terminal as it happened: its output with the recorded pauses, and
with --show-input what was typed, in reverse video.

Before it writes anything, play proves the session's leaves included in the
journal's latest signed checkpoint, with the journal's public key; then it
checks each batch of frames against the chain head the log committed for
it before showing it. A session that does not verify is refused (exit 1),
saying why; --force plays it as stored, says what does not verify first
(and again at the end), and still exits 1. A session ID the journal does
not hold exits 1 too (a failed look-up; 2 is for a malformed command
line). "bastion verify" checks the journal as a whole.

--from seeks through the journal's index to the frame at OFFSET, without
reading what comes before it; the screen is cleared and the session plays
from there (a full-screen program looks right from its next redraw).
--follow replays what a live session has recorded so far at once, then
shows its output as it is recorded, until it ends or you quit.

If stdout is a terminal: space pauses and resumes, left and right arrows
seek 5 seconds back and forward, + and - double and halve the speed, q
quits. play warns if the session's terminal was larger than this one.

` + clusterParagraph + `

` + readsParagraph("play") + `

Flags:
    --db FILE         the journal (default: journal.db in the home directory)
    --key FILE        the journal's public key (default: journal.pub in the
                      home directory)
    --speed X|max     play X times as fast as recorded (default 1); max
                      writes everything at once
    --max-idle D      shorten every pause to at most D (e.g. 2s)
    --from OFFSET     start OFFSET into the session (e.g. 1m30s)
    --show-input      show the input too
    --follow          keep playing a session that is still being recorded
    --force           play a session that does not verify
` + readFlagsUsage(22) + "\n" + clusterFlagUsage(22) + `

Examples:
    $ bastion play 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion play --speed 4 --max-idle 2s 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion play --from 12m --show-input 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion play --follow $(bastion sessions list --state live --json | jq -r '.[-1].id')`

func runPlay(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	speed := fs.String("speed", "1", "speed `X` or max")
	maxIdle := fs.Duration("max-idle", 0, "longest pause `D`")
	from := fs.Duration("from", 0, "start `OFFSET`")
	showInput := fs.Bool("show-input", false, "show input")
	follow := fs.Bool("follow", false, "follow a live session")
	force := fs.Bool("force", false, "play a session that does not verify")
	unrecorded := e.registerReadFlags(fs)
	clusterFlag := registerClusterFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("play needs one session ID")
	}
	arg, err := parseSessionArg(pos[0])
	if err != nil {
		return err
	}
	opts := playback.Options{MaxIdle: *maxIdle, From: *from, ShowInput: *showInput, Follow: *follow, Force: *force}
	if *speed == "max" {
		opts.Speed = 0
	} else if opts.Speed, err = strconv.ParseFloat(*speed, 64); err != nil || opts.Speed <= 0 {
		return usageErrorf("--speed %q: want a positive number or max", *speed)
	}
	if *from < 0 || *maxIdle < 0 {
		return usageErrorf("--from and --max-idle cannot be negative")
	}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	ref, st, id, err := openSession(ctx, e, sc, arg)
	if err != nil {
		return err
	}
	defer st.Close()
	v, path := ref.v, sc.path
	sc.sayWhere(e, ref, id)
	opts.Verifier = v
	if err := checkSessionExists(ctx, st, v, id, path); err != nil {
		return err
	}
	if err := recordRead(ctx, e, path, "play", sc.readAttrs(ref, id), *unrecorded); err != nil {
		return err
	}

	stdout, _ := e.stdout.(*os.File)
	stdin, _ := e.stdin.(*os.File)
	opts.Warn = func(msg string) { fmt.Fprintf(e.stderr, "bastion: warning: %s\r\n", termtext.Line(msg)) }
	if isTerminal(stdout) {
		opts.Size = func() (int, int, bool) {
			c, r, err := termSize(stdout)
			return c, r, err == nil
		}
		if isTerminal(stdin) {
			restore, err := makeRaw(int(stdin.Fd()))
			if err == nil {
				defer restore()
				opts.Controls = readKeys(stdin)
			}
		}
	}
	res, err := playback.Play(ctx, st, recorder.SessionID(id), e.stdout, opts)
	if errors.Is(err, recorder.ErrSessionBroken) {
		return withHint(fmt.Errorf("refusing to play: %w", err),
			"run \"bastion verify --session "+id.String()+"\" for the whole journal's findings",
			"--force plays it all the same, as far as its frames go")
	}
	if err != nil {
		return err
	}
	if n := len(res.Problems); n > 0 {
		for _, p := range res.Problems {
			fmt.Fprintf(e.stderr, "bastion: warning: does not verify: %s\n", termtext.Line(p))
		}
		return exitCode(1, withHint(fmt.Errorf("session %s does not verify: played as stored (--force), %d problem(s)", id, n),
			"run \"bastion verify --session "+id.String()+"\" for the whole journal's findings"))
	}
	return nil
}

// checkSessionExists gives a missing session its own message and hint. A
// session whose row is missing but whose start leaf is in the log was
// not recorded elsewhere: its index was changed, and that does not verify.
func checkSessionExists(ctx context.Context, st storage.Store, v note.Verifier, id uuid.UUID, path string) error {
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return exitCode(2, journalError(err))
	}
	defer snap.Close()
	if _, err := snap.SessionByID(ctx, id[:]); errors.Is(err, storage.ErrNotFound) {
		if _, err := recorder.OpenSession(ctx, snap, recorder.SessionID(id), recorder.OpenOptions{Verifier: v}); errors.Is(err, recorder.ErrSessionBroken) {
			return exitCode(1, withHint(err, `run "bastion verify --db `+path+`" for every finding`))
		}
		return exitCode(1, withHint(fmt.Errorf("no session %s in %s", id, path), `run "bastion sessions list" to see the sessions`))
	} else if err != nil {
		return exitCode(2, err)
	}
	return nil
}

func parseSessionID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return id, withHint(usageErrorf("%q is not a session ID", s), `session IDs look like 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d; "bastion sessions list" shows them`)
	}
	return id, nil
}

// A sessionArg is a session named on the command line: a whole ID, or a
// unique prefix of one (at least 4 characters), as "sessions kill" takes.
type sessionArg = sessions.Ref

func parseSessionArg(s string) (sessionArg, error) {
	if a, err := sessions.ParseRef(s); err == nil {
		return a, nil
	}
	_, err := parseSessionID(s)
	return sessionArg{}, err
}

// resolveSession resolves arg in the journal st holds: a prefix that
// names none, or several, is a failed look-up (exit 1). The session
// found is read and verified as any other.
func resolveSession(ctx context.Context, st storage.Store, arg sessionArg, path string) (uuid.UUID, error) {
	if arg.Prefix == "" {
		return arg.ID, nil
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return uuid.UUID{}, exitCode(2, journalError(err))
	}
	defer snap.Close()
	id, err := arg.Resolve(ctx, snap)
	var many *sessions.AmbiguousError
	switch {
	case errors.Is(err, sessions.ErrNoSession):
		return id, exitCode(1, withHint(fmt.Errorf("no session in %s has an ID starting with %q", path, arg.Prefix), `run "bastion sessions list" to see the sessions`))
	case errors.As(err, &many):
		return id, exitCode(1, withHint(fmt.Errorf("%d sessions in %s have IDs starting with %q", many.Sessions, path, arg.Prefix), "give more of the ID"))
	case err != nil:
		return id, exitCode(2, journalError(err))
	}
	return id, nil
}

// parseInterspersed parses flags before and after positional arguments,
// so that "play ID --speed 2" works as well as "play --speed 2 ID".
func parseInterspersed(fs *flagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// readKeys turns the keys pressed on a raw terminal into playback controls.
// The goroutine lives until the process ends: a read on a terminal cannot
// be interrupted, and play exits when it is done.
func readKeys(in *os.File) <-chan playback.Control {
	ch := make(chan playback.Control, 8)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			s := string(buf[:n])
			for len(s) > 0 {
				var c playback.Control
				ok := true
				switch {
				case strings.HasPrefix(s, "\x1b[D"), strings.HasPrefix(s, "\x1bOD"):
					c, s = playback.SeekBack, s[3:]
				case strings.HasPrefix(s, "\x1b[C"), strings.HasPrefix(s, "\x1bOC"):
					c, s = playback.SeekForward, s[3:]
				default:
					switch s[0] {
					case ' ':
						c = playback.TogglePause
					case '+', '=':
						c = playback.Faster
					case '-', '_':
						c = playback.Slower
					case 'q', 'Q', 0x03, 0x04:
						c = playback.Quit
					default:
						ok = false
					}
					s = s[1:]
				}
				if ok {
					select {
					case ch <- c:
					case <-time.After(time.Second):
					}
				}
			}
		}
	}()
	return ch
}
