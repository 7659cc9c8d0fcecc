package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/bastionhq/bastion/recorder/witness"
)

func init() {
	register(&command{
		name:    "witness serve",
		summary: "run a witness that cosigns a journal's checkpoints (C2SP tlog-witness)",
		usage:   witnessServeUsage,
		run:     runWitnessServe,
	})
	register(&command{
		name:    "witness latest",
		summary: "print the latest checkpoint a witness cosigned for a log",
		usage:   witnessLatestUsage,
		run:     runWitnessLatest,
	})
	register(&command{
		name:    "witness key",
		summary: "print a witness's public key",
		usage:   witnessKeyUsage,
		run:     runWitnessKey,
	})
}

const witnessServeUsage = `Usage:
    bastion witness serve --home DIR --listen ADDR --log VKEY... [--name NAME]
                          [--key-type ml-dsa-44|ed25519]

Runs a witness: an HTTP service, per C2SP tlog-witness, that cosigns a
journal's checkpoints only if each extends the last one it cosigned. A
journal rolled back to an older copy, or rewritten, is refused, and the
refusal is kept as evidence. Run it on a machine the bastion's
administrators do not control, and give its public key to the bastion
(witness blocks) and to the auditors (verify --witness).

At the first start, it makes its key pair in DIR (created with mode 0700):
witness.key (mode 0600) and witness.pub, and needs --name. It keeps what it
cosigned in DIR/witness.db. It prints its name, its public key, the logs it
witnesses and the address it listens on, then logs to stderr. SIGINT or
SIGTERM stops it after the requests in flight.

HTTP:
    POST /add-checkpoint                      C2SP tlog-witness add-checkpoint
    GET  /<sha256 hex of origin>/checkpoint   the latest checkpoint cosigned
    GET  /                                    name, key and logs, as text

Flags:
    --home DIR          the witness's directory (required: never the
                        bastion's own home)
    --listen ADDR       the TCP address to listen on, like :7380 or
                        127.0.0.1:7380 (port 0: any free port)
    --log VKEY          a log's public key (the journal's journal.pub), or a
                        file that holds one; the key's name is the log's
                        origin; repeat for more logs
    --name NAME         the witness's name, URL-like, such as
                        witness.example.org/w1: required at the first start,
                        and afterwards either omitted or the same
    --key-type TYPE     the key made at the first start: ml-dsa-44 (the
                        default, as the specification recommends) or ed25519

Examples:
    $ bastion witness serve --home /var/lib/witness --listen :7380 \
          --name witness.example.org/w1 --log bastion.example.org/journal+1a2b3c4d+AW…
    $ bastion witness serve --home /var/lib/witness --listen :7380 --log journal.pub`

const witnessLatestUsage = `Usage:
    bastion witness latest --home DIR --origin ORIGIN

Prints the latest checkpoint the witness in DIR cosigned for the log
ORIGIN: the checkpoint's text, the log's signature line and the witness's
cosignature line. Keep it where the bastion cannot write: "bastion verify
--checkpoint FILE" then proves the journal still extends it, and
"bastion verify --witness KEY" checks the cosignature. It reads the
witness's state without disturbing a running "witness serve".

It exits 1 when the witness cosigned nothing for ORIGIN.

Flags:
    --home DIR        the witness's directory
    --origin ORIGIN   the log's origin: the name in its key, such as
                      bastion.example.org/journal

Examples:
    $ bastion witness latest --home /var/lib/witness --origin bastion.example.org/journal > kept.txt
    $ bastion verify --checkpoint kept.txt`

const witnessKeyUsage = `Usage:
    bastion witness key --home DIR

Prints the witness's public key (its witness.pub), one line: give it to
the bastion's witness block and to auditors' "verify --witness".

Flags:
    --home DIR   the witness's directory

Examples:
    $ bastion witness key --home /var/lib/witness`

// witnessHome is the --home of a witness command. It must be given: a
// witness kept in the bastion's own home would be under the control of
// those it is meant to check.
func witnessHome(e *env) (string, error) {
	if e.homeFlag == "" {
		return "", usageErrorf("witness commands need --home DIR, the witness's own directory")
	}
	return e.home()
}

func runWitnessServe(ctx context.Context, e *env, args []string) error {
	flags := e.flags()
	listen := flags.String("listen", "", "`ADDR` to listen on")
	name := flags.String("name", "", "the witness's `NAME`")
	keyType := flags.String("key-type", "", "key `TYPE` made at the first start")
	var logs stringsFlag
	flags.Var(&logs, "log", "a log's public key `VKEY`, or a file holding one")
	if err := flags.Parse(args); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return usageErrorf("witness serve takes no arguments")
	case *listen == "":
		return usageErrorf("witness serve needs --listen ADDR")
	case len(logs) == 0:
		return usageErrorf("witness serve needs --log VKEY, the public key of a log to witness")
	case *keyType != "" && *keyType != witness.AlgMLDSA44 && *keyType != witness.AlgEd25519:
		return usageErrorf("--key-type %q: want %s or %s", *keyType, witness.AlgMLDSA44, witness.AlgEd25519)
	}
	if *name != "" {
		if err := witness.CheckWitnessName(*name); err != nil {
			return &usageError{err}
		}
	}
	var keys []*witness.LogKey
	for _, v := range logs {
		k, err := readLogKey(v)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	dir, err := witnessHome(e)
	if err != nil {
		return err
	}
	id, err := witnessIdentity(dir, *name, *keyType)
	if err != nil {
		return err
	}
	st, err := witness.OpenState(ctx, filepath.Join(dir, witness.StateFile), id.Key.VKey)
	if err != nil {
		return err
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	w, err := witness.New(witness.Config{Identity: id, Logs: keys, State: st, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	fmt.Fprintf(e.stdout, "witness %s\nkey %s\n", id.Name(), id.Key.VKey)
	for _, k := range keys {
		fmt.Fprintf(e.stdout, "log %s\n", k.VKey)
	}
	fmt.Fprintf(e.stdout, "listening http://%s\n", ln.Addr())
	log.Info("witness started", "name", id.Name(), "listen", ln.Addr().String(), "logs", len(keys))
	err = w.Serve(ctx, ln)
	log.Info("witness stopped")
	return err
}

// witnessIdentity loads the witness's key pair from dir, or makes one at
// the first start; a --name or --key-type given later must match it.
func witnessIdentity(dir, name, keyType string) (*witness.Identity, error) {
	id, err := witness.LoadIdentity(dir)
	if errors.Is(err, witness.ErrNoIdentity) {
		if name == "" {
			return nil, withHint(&usageError{fmt.Errorf("%s holds no witness key yet, and --name is needed to make one", dir)},
				"pass --name, such as --name witness.example.org/w1")
		}
		if keyType == "" {
			keyType = witness.AlgMLDSA44
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("witness home: %w", err)
		}
		return witness.CreateIdentity(dir, name, keyType)
	}
	if err != nil {
		return nil, err
	}
	if name != "" && name != id.Name() {
		return nil, withHint(fmt.Errorf("--name %q, but the witness in %s is named %q", name, dir, id.Name()),
			"omit --name: a witness keeps its name and key")
	}
	if keyType != "" && keyType != id.Key.Alg {
		return nil, withHint(fmt.Errorf("--key-type %s, but the witness key in %s is %s", keyType, dir, id.Key.Alg),
			"omit --key-type: a witness keeps its key")
	}
	return id, nil
}

// readLogKey reads --log: a log's public key, or the path of a file that
// holds one (such as journal.pub).
func readLogKey(v string) (*witness.LogKey, error) {
	k, kerr := witness.ParseLogKey(v)
	if kerr == nil {
		return k, nil
	}
	data, err := os.ReadFile(v)
	switch {
	case errors.Is(err, fs.ErrNotExist) && strings.Contains(v, "+"):
		return nil, &usageError{fmt.Errorf("--log: %w", kerr)}
	case err != nil:
		return nil, &usageError{fmt.Errorf("--log %q is neither a log's public key nor a file that holds one: %w", v, err)}
	}
	k, err = witness.ParseLogKey(string(data))
	if err != nil {
		return nil, &usageError{fmt.Errorf("--log %s: %w", v, err)}
	}
	return k, nil
}

func runWitnessLatest(ctx context.Context, e *env, args []string) error {
	flags := e.flags()
	origin := flags.String("origin", "", "the log's `ORIGIN`")
	if err := flags.Parse(args); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return usageErrorf("witness latest takes no arguments")
	case *origin == "":
		return usageErrorf("witness latest needs --origin ORIGIN")
	}
	dir, err := witnessHome(e)
	if err != nil {
		return err
	}
	st, err := openWitnessState(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := st.Latest(ctx, *origin)
	if errors.Is(err, witness.ErrNotCosigned) {
		origins, oerr := st.Origins(ctx)
		if oerr != nil {
			return oerr
		}
		hint := "it has cosigned no checkpoint yet"
		if len(origins) > 0 {
			hint = "it has cosigned checkpoints of: " + strings.Join(origins, ", ")
		}
		return withHint(fmt.Errorf("the witness in %s cosigned nothing for %q", dir, *origin), hint)
	}
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(c.Checkpoint)
	return err
}

// openWitnessState opens a witness's state read-only.
func openWitnessState(ctx context.Context, dir string) (*witness.State, error) {
	path := filepath.Join(dir, witness.StateFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, withHint(fmt.Errorf("%s holds no witness state", dir), `a witness is started with "bastion witness serve --home DIR"`)
	}
	return witness.OpenStateReadOnly(ctx, path)
}

func runWitnessKey(ctx context.Context, e *env, args []string) error {
	flags := e.flags()
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return usageErrorf("witness key takes no arguments")
	}
	dir, err := witnessHome(e)
	if err != nil {
		return err
	}
	id, err := witness.LoadIdentity(dir)
	if errors.Is(err, witness.ErrNoIdentity) {
		return withHint(fmt.Errorf("%s holds no witness key", dir), `a witness makes its key at its first "bastion witness serve --name NAME"`)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, id.Key.VKey)
	return err
}
