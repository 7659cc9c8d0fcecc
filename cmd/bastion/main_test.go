package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as the bastion command inside scripts.
//
// The tests run this binary as bastion hundreds of times. Built with
// -race, a process that exits 0 first sleeps for GORACE's atexit_sleep_ms
// (1 s by default) so that goroutines still running can report a race;
// unless GORACE says otherwise, those processes sleep 10 ms. Races are
// reported as they happen either way.
//
// Most tests wait on processes (serve, ssh, sshd, Chromium, litewitness)
// more than on the CPU: unless -parallel says otherwise, eight run at a
// time rather than one per CPU.
func TestMain(m *testing.M) {
	if _, set := os.LookupEnv("GORACE"); !set {
		os.Setenv("GORACE", "atexit_sleep_ms=10")
	}
	if err := flag.Set("test.parallel", strconv.Itoa(max(8, runtime.GOMAXPROCS(0)))); err != nil {
		panic(err)
	}
	testscript.Main(m, map[string]func(){"bastion": main, "bastion-idle-clients": idleClientsMain})
}

// TestScript runs the end-to-end scripts in testdata/script. Besides the
// standard commands they may use:
//
//	exits CODE PROG [ARGS...]   like exec, but PROG must exit with CODE
//	[cmd:NAME]                  true if this build has command NAME; write
//	                            a group command with a dash: [cmd:ca-init]
func TestScript(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("BASTION_HOME", e.WorkDir+"/home")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": cmdExits,
		},
		Condition: func(cond string) (bool, error) {
			name, ok := strings.CutPrefix(cond, "cmd:")
			if !ok {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			return commands[strings.ReplaceAll(name, "-", " ")] != nil, nil
		},
	})
}

func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exits")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// withCommands replaces the command table, but for help, and the contract
// for the duration of the test. Tests that use it must not run in parallel.
func withCommands(t *testing.T, contractNames []string, cs ...*command) {
	t.Helper()
	oldCommands, oldContract := commands, contract
	t.Cleanup(func() { commands, contract = oldCommands, oldContract })
	commands = map[string]*command{"help": oldCommands["help"]}
	contract = contractNames
	for _, c := range cs {
		register(c)
	}
}

func fakeCommand(name string, err error) *command {
	return &command{
		name:    name,
		summary: "do " + name,
		usage:   "Usage:\n    bastion " + name + "\n\nExamples:\n    $ bastion " + name,
		run: func(ctx context.Context, e *env, args []string) error {
			fs := e.flags()
			if err := fs.Parse(args); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %q\n", name, fs.Args())
			return err
		},
	}
}

func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code = run(context.Background(), args, e)
	return code, out.String(), errOut.String()
}

func TestDispatch(t *testing.T) {
	withCommands(t,
		[]string{"top", "planned", "grp one", "grp two", "empty one", "help"},
		fakeCommand("top", nil),
		fakeCommand("grp one", nil),
		fakeCommand("fails", errors.New("it broke")),
		fakeCommand("hinted", withHint(errors.New("no journal"), `run "bastion ca init" first`)),
		fakeCommand("tampered", exitCode(1, nil)),
		fakeCommand("cannot", exitCode(2, errors.New("cannot open journal"))),
		fakeCommand("bad", usageErrorf("bad needs an ID")),
	)
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring; "" means stdout must be empty
		stderr     string // substring; "" means stderr must be empty
		noStderrOf string // must not appear in stderr
	}{
		{"top level", []string{"top", "a", "b"}, 0, `top ["a" "b"]`, "", ""},
		{"group member", []string{"grp", "one", "x"}, 0, `grp one ["x"]`, "", ""},
		{"flags after name", []string{"top", "--home", "/h", "x"}, 0, `top ["x"]`, "", ""},
		{"global flag first", []string{"--home", "/h", "top"}, 0, `top []`, "", ""},
		{"help flag", []string{"top", "-h"}, 0, "Usage:\n    bastion top\n", "", ""},
		{"group help flag", []string{"grp", "-h"}, 0, "    grp one  do grp one\n", "", ""},
		{"group without subcommand", []string{"grp"}, 2, "",
			"bastion: error: \"grp\" needs a subcommand\nbastion: hint: run \"bastion help grp\" for usage\n", ""},
		{"planned group member", []string{"grp", "two"}, 2, "",
			"bastion: error: \"grp two\" is not available in this build yet\n", ""},
		{"unknown group member", []string{"grp", "zzz"}, 2, "",
			"bastion: error: unknown command \"grp zzz\"\nbastion: hint: run \"bastion help grp\" to list its subcommands\n", ""},
		{"planned group", []string{"empty", "one"}, 2, "", "bastion: error: \"empty one\" is not available in this build yet\n", ""},
		{"planned group alone", []string{"empty"}, 2, "", "bastion: error: \"empty\" is not available in this build yet\n", ""},
		{"planned", []string{"planned"}, 2, "", "bastion: error: \"planned\" is not available in this build yet\n", ""},
		{"unknown", []string{"nope"}, 2, "", "bastion: error: unknown command \"nope\"\n", ""},
		{"bad global flag", []string{"--nope"}, 2, "", "bastion: error: unknown flag --nope\n", ""},
		{"bad command flag", []string{"top", "--nope"}, 2, "",
			"bastion: error: unknown flag --nope\nbastion: hint: run \"bastion help top\" for usage\n", ""},
		{"failure", []string{"fails"}, 1, "fails", "bastion: error: it broke\n", "hint"},
		{"hint", []string{"hinted"}, 1, "hinted", "bastion: error: no journal\nbastion: hint: run \"bastion ca init\" first\n", ""},
		{"silent exit", []string{"tampered"}, 1, "tampered", "", ""},
		{"exit with message", []string{"cannot"}, 2, "cannot", "bastion: error: cannot open journal\n", "hint"},
		{"usage error from command", []string{"bad"}, 2, "bad",
			"bastion: error: bad needs an ID\nbastion: hint: run \"bastion help bad\" for usage\n", ""},
		{"no arguments", nil, 2, "", "Usage:", ""},
		{"help overview", []string{"help"}, 0, "Commands:\n", "", ""},
		{"help -h", []string{"-h"}, 0, "Commands:\n", "", ""},
		{"help group member", []string{"help", "grp", "one"}, 0, "Usage:\n    bastion grp one\n", "", ""},
		{"help group member quoted", []string{"help", "grp one"}, 0, "Usage:\n    bastion grp one\n", "", ""},
		{"help group", []string{"help", "grp"}, 0, "Subcommands:\n    grp one  do grp one\n", "", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", "bastion: error: unknown command \"nope\"\n", ""},
		{"help planned", []string{"help", "planned"}, 2, "", "is not available in this build yet", ""},
		{"help extra words", []string{"help", "top", "x"}, 2, "", "unknown command \"top x\"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runArgs(tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			check := func(what, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", what, got, want)
				}
			}
			check("stdout", stdout, tt.stdout)
			check("stderr", stderr, tt.stderr)
			if tt.noStderrOf != "" && strings.Contains(stderr, tt.noStderrOf) {
				t.Errorf("stderr = %q, want no %q", stderr, tt.noStderrOf)
			}
		})
	}
}

func TestReportHintOrder(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := withHint(fmt.Errorf("open journal: %w", withHint(errors.New("no such file"), "inner")), "outer")
	if code := report(&b, err); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	want := "bastion: error: open journal: no such file\nbastion: hint: inner\nbastion: hint: outer\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestOverviewListsOnlyRegistered(t *testing.T) {
	t.Parallel()
	ov := overview()
	for _, name := range contract {
		line := "\n    " + name + " "
		if registered := commands[name] != nil; registered != strings.Contains(ov, line) {
			t.Errorf("command %q: registered = %v, but listed in the overview = %v", name, registered, !registered)
		}
	}
}

// TestCommandConventions holds every registered command to the conventions
// the overview and the help text rely on.
func TestCommandConventions(t *testing.T) {
	t.Parallel()
	for name, c := range commands {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if !slices.Contains(contract, name) {
				t.Errorf("%q is not a command of the interface contract; add it to the contract list if it is meant to be", name)
			}
			if strings.HasSuffix(c.summary, ".") {
				t.Errorf("summary %q ends with a period", c.summary)
			}
			if want := "Usage:\n    bastion " + name; !strings.HasPrefix(c.usage, want) {
				t.Errorf("usage does not start with %q", want)
			}
			if !strings.Contains(c.usage, "\nExamples:\n    $ bastion ") {
				t.Errorf("usage has no \"Examples:\" section with a \"$ bastion\" line")
			}
		})
	}
}

func TestRegisterRejectsMalformed(t *testing.T) {
	for _, c := range []*command{
		fakeCommand("a b c", nil),
		fakeCommand("a  b", nil),
		fakeCommand("", nil),
		{name: "nosummary", usage: "u", run: fakeCommand("x", nil).run},
		fakeCommand("twice", nil),
	} {
		t.Run(c.name, func(t *testing.T) {
			withCommands(t, nil, fakeCommand("twice", nil))
			defer func() {
				if recover() == nil {
					t.Errorf("register(%q) did not panic", c.name)
				}
			}()
			register(c)
		})
	}
}

func TestVersionOverride(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v9.9.9"
	code, stdout, _ := runArgs("version")
	if code != 0 || !strings.HasPrefix(stdout, "bastion v9.9.9 (go") {
		t.Errorf("bastion version = %d, %q", code, stdout)
	}
}
