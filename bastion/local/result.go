package local

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/recorder"
)

// Size is a terminal size in character cells.
type Size struct {
	Cols, Rows int
}

// Clamp bounds s to what a terminal can hold (0 to 65535 cells a side), so
// the size recorded is exactly the size applied.
func (s Size) Clamp() Size {
	bound := func(v int) int { return min(max(v, 0), math.MaxUint16) }
	return Size{Cols: bound(s.Cols), Rows: bound(s.Rows)}
}

// Payload encodes s as a resize frame's payload: cols u32 ‖ rows u32,
// big-endian.
func (s Size) Payload() []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[0:4], uint32(s.Cols))
	binary.BigEndian.PutUint32(b[4:8], uint32(s.Rows))
	return b
}

func (s Size) winsize() *unix.Winsize {
	return &unix.Winsize{Col: uint16(s.Cols), Row: uint16(s.Rows)}
}

// Result is how a command ended.
type Result struct {
	// ExitCode is the command's exit status, or 128 plus the signal number
	// when a signal killed it, as shells report it.
	ExitCode int

	// Signal is the name of the signal that killed the command, without
	// "SIG" ("KILL", "HUP"), or "" if the command exited by itself.
	Signal string
}

// SignalCommitWait bounds how long the record of a signal may take to
// commit before the signal is sent anyway: ending a command must not
// depend on the journal.
const SignalCommitWait = signalCommitWait

// exitResult says how a reaped process ended; ps nil means never reaped.
func exitResult(ps *os.ProcessState) Result {
	if ps == nil {
		return Result{}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return Result{ExitCode: 128 + int(sig), Signal: signalName(sig)}
	}
	return Result{ExitCode: ps.ExitCode()}
}

// signalName is sig's name as SSH spells it: "KILL" for SIGKILL, or the
// number for a signal without a name.
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return strings.TrimPrefix(name, "SIG")
	}
	return strconv.Itoa(int(sig))
}

// RecordExit records how a command ended: an exit frame holding its status
// (and the signal that killed it, if one did), and the same as "exit-"
// attributes in end, for the session's end leaf.
func RecordExit(rec pump.Recorder, res Result, end recorder.Attrs) error {
	exit := recorder.Attrs{"status": strconv.Itoa(res.ExitCode)}
	if res.Signal != "" {
		exit["signal"] = res.Signal
	}
	for k, v := range exit {
		end["exit-"+k] = v
	}
	payload, err := recorder.EncodeAttrs(exit)
	if err != nil {
		return err
	}
	if _, err := rec.Append(recorder.KindExit, 0, payload); err != nil {
		return fmt.Errorf("record exit status: %w", err)
	}
	return nil
}
