package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/bastionhq/bastion/bastion/local"
	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
)

func init() {
	register(&command{
		name:    "record",
		summary: "run a command in a terminal and record every byte into the journal",
		usage:   recordUsage,
		run:     runRecord,
	})
}

const recordUsage = `Usage:
    bastion record [--db FILE] [-q] -- COMMAND [ARG...]

Runs COMMAND in a new pseudo-terminal and records its session into the
journal: every byte typed or piped in, every byte of output, the terminal's
size and its changes, and how the command ended. Record, then forward: a
byte reaches the screen, or the command, only after the journal has
committed it. If the journal cannot be written, the command is killed and
record fails: nothing runs unrecorded.

When standard input is a terminal, it is put in raw mode for the session
and restored afterwards. When it is not (a pipe, a file, CI), its content
is the command's input, and its end is passed on as end-of-file.

record exits with the command's exit status (128+N if signal N killed it),
or 255 if bastion itself fails (no key, the journal cannot be written).
It needs the journal signing key ("bastion ca init").

Flags:
    --db FILE   the journal (default: journal.db in the home directory)
    -q          do not print the session ID when the command ends

Examples:
    $ bastion record -- bash
    $ bastion record -- psql -h db1 payments
    $ echo 'select 1;' | bastion record --db /tmp/j.db -- sqlite3`

// exitRecordFailed is record's exit status when bastion itself fails, as
// ssh uses 255: a command's own status stays unambiguous.
const exitRecordFailed = 255

func runRecord(ctx context.Context, e *env, args []string) error {
	err := record(ctx, e, args)
	var ue *usageError
	var ee *exitError
	if err == nil || errors.As(err, &ue) || errors.As(err, &ee) || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return exitCode(exitRecordFailed, err)
}

func record(ctx context.Context, e *env, args []string) (err error) {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	quiet := fs.Bool("q", false, "quiet")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return usageErrorf("record needs a command: bastion record -- COMMAND [ARG...]")
	}

	j, path, closeJournal, err := openJournal(ctx, e, *db)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeJournal(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	stdin, _ := e.stdin.(*os.File)
	stdout, _ := e.stdout.(*os.File)
	tty := isTerminal(stdin)
	cfg := local.PTYConfig{Argv: argv, Stdin: e.stdin, StdinIsTerminal: tty, Stdout: e.stdout}
	attrs := recorder.Attrs{
		"kind":    "record",
		"command": termtext.ShellJoin(argv),
		"pid":     strconv.Itoa(os.Getpid()),
	}
	if u, err := user.Current(); err == nil {
		attrs["user"] = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		attrs["host"] = h
	}
	if wd, err := os.Getwd(); err == nil {
		attrs["cwd"] = wd
	}
	if t := e.getenv("TERM"); t != "" {
		attrs["term"] = t
	}

	// The terminal the command sees is the user's, when there is one.
	sizeSrc := stdout
	if !isTerminal(sizeSrc) {
		sizeSrc = stdin
	}
	if isTerminal(sizeSrc) {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cfg.Resize = watchResize(rctx, sizeSrc)
		if cols, rows, err := termSize(sizeSrc); err == nil {
			cfg.Size = local.Size{Cols: cols, Rows: rows}
		}
	}

	s, err := j.StartSession(ctx, recorder.SessionInfo{Attrs: attrs})
	if err != nil {
		return fmt.Errorf("start recording: %w", err)
	}
	if tty {
		restore, err := makeRaw(int(stdin.Fd()))
		if err != nil {
			// The session started but never ran: say so in its end.
			return errors.Join(err, s.End(context.WithoutCancel(ctx), recorder.Attrs{"reason": events.EndError, "detail": err.Error()}))
		}
		defer restore()
	}
	res, runErr := local.RunPTY(ctx, cfg, s)

	if err := endLocal(ctx, s, res, runErr); err != nil {
		return err
	}
	if !*quiet {
		if tty {
			fmt.Fprint(e.stderr, "\r\n")
		}
		fmt.Fprintf(e.stderr, "bastion: recorded session %s in %s\n", s.ID(), path)
	}
	if res.ExitCode != 0 {
		return exitCode(res.ExitCode, nil)
	}
	return nil
}

// endLocal records how a local command's session ended, an exit frame and
// then the end leaf, and returns runErr, RunPTY's error, or the error of
// recording the end.
func endLocal(ctx context.Context, s *recorder.Session, res local.Result, runErr error) error {
	end := recorder.Attrs{"reason": events.EndExited}
	switch {
	case errors.Is(runErr, pump.ErrRecordingFailed):
		// The journal failed: there is nothing more it can take.
		return runErr
	case runErr != nil && ctx.Err() != nil:
		end["reason"] = events.EndStopped
		end["detail"] = context.Cause(ctx).Error()
	case runErr != nil:
		end["reason"] = events.EndError
		end["detail"] = runErr.Error()
	}
	if err := local.RecordExit(s, res, end); err != nil {
		return err
	}
	// End commits after every frame, and waits for it.
	if err := s.End(context.WithoutCancel(ctx), end); err != nil {
		return fmt.Errorf("end recording: %w", err)
	}
	return runErr
}
