// Package local runs a local command for a recorded session, in a
// pseudo-terminal ([RunPTY]) or with pipes ([RunPiped]), and pumps its
// bytes through the journal with package pump, record then forward: what
// the command writes reaches the caller, and what the caller sends reaches
// the command, only after the journal has committed it. A command whose
// session can no longer be recorded is killed (fail closed), and so is one
// whose recorder process dies (a parent-death signal, where the system has
// one).
//
// It is what "bastion record" runs, and what the SSH front door runs for a
// command target. It knows nothing of SSH.
package local
