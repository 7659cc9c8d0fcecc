// Package recorder owns the journal: its format, its writer and its
// verification (docs/journal-format.md).
//
// Sessions append frames (output, input, resizes, masks, ends) to a hash
// chain of their own; one writer goroutine seals them in group commits,
// each with a segment leaf per session it touched, into a Merkle log whose
// head is signed at every commit (a C2SP tlog-checkpoint, as a signed
// note) and kept for good about once a second. Events (certificates,
// grants, policy, reads, witnesses' changes) are leaves of the same log.
// Readers trust only what verifies: [ReadLog] and [OpenSession] prove what
// they return against a signed checkpoint, and [Verify] checks everything
// an auditor would, offline, with the public key alone. Witnesses'
// cosignatures are kept beside the checkpoints they cosign
// ([Journal.AddCosignatures]); package witness speaks their protocol.
//
// Beside it: package events names the journal's events and the reasons
// they record; playback replays and exports a session; evidence builds the
// examiner's report; termtext makes outside text safe for a terminal;
// recordertest holds what tests of journals share. Masking, which decides
// what a frame may hold before it is appended, is policy's (package mask).
package recorder
