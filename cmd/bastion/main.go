// Command bastion is an SSH bastion that records every privileged session
// into a journal an auditor can verify offline.
//
// # Commands
//
// Each command lives in its own file, cmd/bastion/NAME.go, and adds itself
// to the command table from an init function:
//
//	func init() {
//		register(&command{
//			name:    "checkpoint",
//			summary: "print the latest signed checkpoint",
//			usage:   checkpointUsage,
//			run:     runCheckpoint,
//		})
//	}
//
// A command in a group ("ca init", "sessions list") registers the two words
// separated by one space; the group itself ("sessions") needs no entry.
// run parses its own flags with [env.flags], so that -h and --home behave
// the same everywhere, and returns an error; [report] turns that error into
// the message and the exit status the user sees.
//
// This package only parses, wires and prints: the domain logic lives in the
// packages it calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/bastionhq/bastion/recorder/evidence"
)

// A command is one entry of the command table.
type command struct {
	// name is what the user types: one word ("verify"), or a group and a
	// subcommand separated by one space ("ca init").
	name string

	// summary is the line the overview shows next to the name: lowercase,
	// no trailing period, like "print the version".
	summary string

	// usage is the hand-written text that "bastion help NAME" and
	// "bastion NAME -h" print. It starts with "Usage:\n    bastion NAME",
	// then says what the command does and lists its flags, and ends with an
	// "Examples:" section.
	usage string

	// run executes the command. args are the words after the command name,
	// flags first; run parses them with [env.flags]. ctx is canceled when
	// the process receives SIGINT or SIGTERM. A nil error exits 0; see
	// [report] for what a non-nil error prints and exits with.
	run func(ctx context.Context, e *env, args []string) error
}

// commands is the command table, keyed by [command.name]. Only [register]
// writes it, from init functions.
var commands = map[string]*command{}

// register adds c to the command table. It panics on a malformed or
// duplicate entry, so a mistake shows at the first run of any test.
func register(c *command) {
	words := strings.Split(c.name, " ")
	switch {
	case len(words) > 2 || slices.Contains(words, ""):
		panic(fmt.Sprintf("bastion: command name %q: want one word or two separated by one space", c.name))
	case c.run == nil || c.summary == "" || c.usage == "":
		panic(fmt.Sprintf("bastion: command %q: name, summary, usage and run are all required", c.name))
	case commands[c.name] != nil:
		panic(fmt.Sprintf("bastion: command %q registered twice", c.name))
	}
	commands[c.name] = c
}

// contract lists every command the interface contract names, in the order
// the overview shows them. A name here that no file has registered yet is
// reported as "not available in this build yet" rather than as unknown, so
// that nobody mistakes a missing feature for a typo.
var contract = []string{
	"demo",
	"ca init", "ca show", "ca rotate",
	"serve",
	"login", "status",
	"record",
	"sessions list", "sessions show", "sessions search", "sessions kill",
	"play",
	"export",
	"checkpoint",
	"verify",
	"grants request", "grants approve", "grants deny", "grants revoke", "grants list", "grants show",
	"policy check", "policy explain", "policy hash",
	"certs list", "certs revoke",
	"evidence",
	"witness serve", "witness latest", "witness key",
	"dev token",
	"version",
	"help",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, give the default behavior back, so that a
	// second Ctrl-C kills a command that is slow to shut down.
	context.AfterFunc(ctx, stop)
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := run(ctx, os.Args[1:], e)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns the
// exit status. It is main without the process: tests call it directly.
func run(ctx context.Context, args []string, e *env) int {
	global := &flagSet{flag.NewFlagSet("bastion", flag.ContinueOnError)}
	global.SetOutput(io.Discard)
	global.Usage = func() {}
	global.StringVar(&e.homeFlag, "home", e.homeFlag, "")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printText(e.stdout, overview())
			return 0
		}
		return report(e.stderr, withHint(err, `run "bastion help" for usage`))
	}
	args = global.Args()
	if len(args) == 0 {
		printText(e.stderr, overview())
		return exitUsage
	}

	c, rest, err := lookup(args)
	if err != nil {
		return report(e.stderr, err)
	}
	err = c.run(ctx, e, rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		printText(e.stdout, c.usage)
		return 0
	case errors.Is(err, context.Canceled) && ctx.Err() != nil && context.Cause(ctx) != ctx.Err():
		// Name the signal rather than print "context canceled".
		err = fmt.Errorf("stopped: %w", context.Cause(ctx))
	}
	var ue *usageError
	var he *hintError
	if errors.As(err, &ue) && !errors.As(err, &he) {
		err = withHint(err, fmt.Sprintf("run \"bastion help %s\" for usage", c.name))
	}
	return report(e.stderr, err)
}

// lookup finds the command that args start with and returns it with the
// remaining arguments. A group name without a known subcommand yields the
// group's own command, which lists the subcommands.
func lookup(args []string) (*command, []string, error) {
	name := args[0]
	var sub string
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		sub = args[1]
		if c := commands[name+" "+sub]; c != nil {
			return c, args[2:], nil
		}
	}
	if c := commands[name]; c != nil {
		return c, args[1:], nil
	}
	if isGroup(name) {
		full := name + " " + sub
		members := groupMembers(name)
		switch {
		case sub != "" && slices.Contains(contract, full):
			return nil, nil, notAvailable(full)
		case sub != "" && len(members) > 0:
			return nil, nil, withHint(unknownCommandError(full),
				fmt.Sprintf("run \"bastion help %s\" to list its subcommands", name))
		case sub != "":
			return nil, nil, unknownCommand(full)
		case len(members) == 0:
			return nil, nil, notAvailable(name)
		}
		return groupCommand(name), args[1:], nil
	}
	if slices.Contains(contract, name) {
		return nil, nil, notAvailable(name)
	}
	return nil, nil, unknownCommand(name)
}

// isGroup reports whether name is the first word of a two-word command,
// registered or in the contract.
func isGroup(name string) bool {
	for _, n := range slices.Concat(contract, slices.Collect(maps.Keys(commands))) {
		if strings.HasPrefix(n, name+" ") {
			return true
		}
	}
	return false
}

// groupMembers returns the registered commands of the group name, in
// overview order.
func groupMembers(name string) []*command {
	var members []*command
	for _, c := range available() {
		if strings.HasPrefix(c.name, name+" ") {
			members = append(members, c)
		}
	}
	return members
}

// groupCommand returns a command standing for the group name itself: its
// usage lists the subcommands, and running it without one is a usage error.
func groupCommand(name string) *command {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n    bastion %s <subcommand> [flags] [arguments]\n\nSubcommands:\n", name)
	writeCommandList(&b, groupMembers(name))
	fmt.Fprintf(&b, "\nRun \"bastion help %s <subcommand>\" for its flags and examples.\n", name)
	return &command{
		name:    name,
		summary: "subcommands of " + name,
		usage:   b.String(),
		run: func(ctx context.Context, e *env, args []string) error {
			fs := e.flags()
			if err := fs.Parse(args); err != nil {
				return err
			}
			return usageErrorf("%q needs a subcommand", name)
		},
	}
}

// available returns the registered commands in overview order: the
// contract's order, then any others by name.
func available() []*command {
	var list []*command
	for _, name := range contract {
		if c := commands[name]; c != nil {
			list = append(list, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(commands)) {
		if !slices.Contains(contract, name) {
			list = append(list, commands[name])
		}
	}
	return list
}

func notAvailable(name string) error {
	return withHint(&usageError{fmt.Errorf("%q is not available in this build yet", name)},
		`run "bastion help" to list the commands this build has`)
}

func unknownCommand(name string) error {
	return withHint(unknownCommandError(name), `run "bastion help" to list commands`)
}

// unknownCommandError names an unknown command, with the nearest one.
func unknownCommandError(name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := evidence.Suggest(name, commandNames()); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return &usageError{errors.New(msg)}
}

// commandNames are the commands this build has, and their groups.
func commandNames() []string {
	var names []string
	for name := range commands {
		names = append(names, name)
		if g, _, ok := strings.Cut(name, " "); ok && !slices.Contains(names, g) {
			names = append(names, g)
		}
	}
	slices.Sort(names)
	return names
}
