// Package bastion is the SSH front door: it authenticates users by
// certificate, routes each session to its target, and pumps the session's
// bytes through the recorder, so that every byte reaches the other side only
// after the journal has committed it (record, then forward) and a session
// whose recording fails is ended rather than left unrecorded (fail closed).
// Today it holds the session pump for a command run in a local
// pseudo-terminal, [RunLocal], which `bastion record` uses and which local PTY
// targets will use; the SSH server that puts it behind OpenSSH comes later.
package bastion
