package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
)

// journalFile is the name of the default journal inside the home directory.
const journalFile = "journal.db"

// An env is what a command may touch of the process around it. Commands use
// it instead of package os, so that tests can drive them with buffers and a
// fake environment.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// getenv reads an environment variable, like os.Getenv.
	getenv func(key string) string

	// homeFlag is the value of --home, or "" if it was not given. The
	// global flag set and every [env.flags] set write it.
	homeFlag string

	// journal, when set, is the journal this process already writes
	// (the demo's): reads of it are recorded through it.
	journal *recorder.Journal

	// tokenFile is the value of --token-file of the commands that record
	// reads or name an operator (see [env.readerToken]), "" if not given.
	tokenFile string

	// readServer and readFingerprint are --server and --ca-fingerprint
	// of the reading commands: the serve instance whose API records
	// reads of a journal in a database (see [recordThroughAPI]), "" if
	// not given.
	readServer, readFingerprint string
}

// home returns the absolute path of the state directory: --home DIR if
// given, else $BASTION_HOME, else ~/.bastion. It does not create it; see
// [env.makeHome].
func (e *env) home() (string, error) {
	dir := e.homeFlag
	if dir == "" {
		dir = e.getenv("BASTION_HOME")
	}
	if dir == "" {
		h := e.getenv("HOME")
		if h == "" {
			return "", withHint(errors.New("cannot find the bastion home directory: $HOME is not set"),
				"pass --home DIR or set $BASTION_HOME")
		}
		dir = filepath.Join(h, ".bastion")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("bastion home %s: %w", dir, err)
	}
	return abs, nil
}

// makeHome returns the state directory like [env.home], creating it with
// mode 0700 (and any missing parents) if it does not exist. An existing
// directory is used as it is.
func (e *env) makeHome() (string, error) {
	dir, err := e.home()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create bastion home: %w", err)
	}
	return dir, nil
}

// dbPath returns the journal a command should use: the value of its --db
// flag if not empty (made absolute, unless it is a database's URL), else
// journal.db in the home directory. It creates nothing.
func (e *env) dbPath(flagValue string) (string, error) {
	if isDatabase(flagValue) {
		return flagValue, nil
	}
	if flagValue != "" {
		abs, err := filepath.Abs(flagValue)
		if err != nil {
			return "", fmt.Errorf("journal %s: %w", flagValue, err)
		}
		return abs, nil
	}
	dir, err := e.home()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, journalFile), nil
}

// A flagSet is a [flag.FlagSet] for one command. Make one with
// [env.flags]; define flags on it as usual; return the error of its Parse
// as is.
type flagSet struct{ *flag.FlagSet }

// flags returns a new flag set that already has the global flags (--home).
// It prints nothing itself: for -h its Parse returns [flag.ErrHelp], on
// which the dispatcher prints the command's usage, and for a bad flag a
// [usageError].
func (e *env) flags() *flagSet {
	fs := flag.NewFlagSet("bastion", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&e.homeFlag, "home", e.homeFlag, "state `DIR` (default $BASTION_HOME, else ~/.bastion)")
	return &flagSet{fs}
}

// Parse parses args like [flag.FlagSet.Parse] and marks a bad flag as a
// [usageError].
func (f *flagSet) Parse(args []string) error {
	err := f.FlagSet.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	// An unknown flag is named as it was typed ("--jsn", not "-jsn"),
	// with the nearest flag the command has.
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		typed := "-" + name
		for _, a := range args {
			if a == "--" {
				break
			}
			if n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); n == name && strings.HasPrefix(a, "-") {
				typed, _, _ = strings.Cut(a, "=")
				break
			}
		}
		var known []string
		f.VisitAll(func(fl *flag.Flag) { known = append(known, fl.Name) })
		msg := fmt.Sprintf("unknown flag %s", typed)
		if s := evidence.Suggest(name, known); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
		return &usageError{errors.New(msg)}
	}
	return &usageError{err}
}
