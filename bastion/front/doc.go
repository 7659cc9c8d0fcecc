// Package front is bastion's SSH front door: everything about one SSH
// connection through the bastion and its sessions. It authenticates users
// by certificate only, routes each session to its target (LOGIN@TARGET
// in the user name, or ssh -J), asks policy for every request, and pumps
// the session's bytes through the journal with package pump, so that a
// byte reaches the other side only after its frame is committed (record,
// then forward); a session whose recording fails is ended rather than
// left unrecorded (fail closed).
//
// The server (package bastion) builds a [Front] with [New] from
// [Options]: the ssh block of the configuration ([Config]), the
// [Target]s, the certificate authorities and registry, the [Journal] in
// force, policy and grants as functions (a reload swaps what they
// return), and [Metrics] to count with. It serves it with [Front.Serve],
// swaps its targets on a reload ([Front.LoadTargets], [Front.SetTargets])
// and stops it with [Front.Shutdown]. The live sessions are a [Sessions]
// the server holds too: it lists them, kills one, ends those of a revoked
// certificate or an ended grant, and changes their [Limits].
//
// # The life of a connection
//
//  1. Accept: the listener bounds the connections per client address and
//     those not yet authenticated (the oldest makes room); what it refuses
//     is counted and journaled within a budget (front.go).
//  2. Pre-auth: each connection's offered keys and refusals are tallied,
//     and cost the journal one ssh.auth_refused leaf at most, within a
//     budget per interval; past it, summaries (preauth.go).
//  3. Authentication: a user certificate signed by the user CA, valid
//     now, not revoked, principal = login, source-address honoured, and
//     its key proved; the user name names the target (front.go).
//  4. Channels: a session channel becomes a frontSession (session.go),
//     whose requests policy decides one by one (policy.go): a shell,
//     exec or subsystem request starts a recorded session on a local
//     command target (package local) or an upstream SSH target dialled
//     with a per-session certificate from the target CA (upstream.go);
//     sftp is observed and journaled by file (sftp.go). A direct-tcpip
//     channel is the outer connection of ssh -J, an inner SSH connection
//     served with a host certificate for the target's name (jump.go), or
//     a recorded port forward (forward.go).
//  5. Limits: each live session is registered in [Sessions], which ends
//     it at its certificate's expiry, its grant's end, idleness, its
//     maximum duration, a revocation, a kill or shutdown, telling the
//     client why (life.go).
//  6. End: the session records its end (exit status, reason) before its
//     handler returns; [Front.Shutdown] waits for those ends before the
//     server closes the journal.
//
// # Goroutines and locks
//
// [Front.Serve] runs gliderlabs/ssh's accept loop, which runs one
// goroutine per connection and one per channel; beside it, one goroutine
// renews the host certificate and one journals the refusal summaries
// every interval (owned by the listener's write group, which Shutdown
// waits for). Each connection's pre-auth accounting is one goroutine in
// Front.preAuths until it is written. A session channel's handler goroutine
// owns its frontSession and counts in Front.sessions; the pumps it starts
// (package pump), the upstream request mirror and keepalive, and the
// sftp observer's pipe are its own, and end before it returns. Timers of
// [Sessions] end sessions by canceling their context with the cause.
//
// Each lock guards the fields its comment names: Sessions.mu (the
// registry; taken before liveSession.mu where both are held),
// liveSession.mu (a session's ID, grant and timers), frontSession.mu
// (pty and told, against tell from a limit's goroutine),
// Front.hostCertMu, Front.closeMu, the listener's mu (open and
// unauthenticated connections), preAuth.mu, the refusal budget's mu, and
// the caches of compiled maskers and of jump host certificates. The
// targets in force are an atomic pointer: a reload swaps the whole set,
// and a connection keeps the set it resolved its target in.
package front
