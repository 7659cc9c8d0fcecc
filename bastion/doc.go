// Package bastion is the server: "bastion serve" assembled from its parts.
//
//   - The SSH front door authenticates users by certificate only, routes
//     each session to its target (LOGIN@TARGET or ssh -J), asks policy,
//     and pumps the session's bytes through the recorder, so that every
//     byte reaches the other side only after the journal has committed it
//     (record, then forward); a session whose recording fails is ended
//     rather than left unrecorded (fail closed). Every byte path goes
//     through package pump (bastion/pump); local command targets run in a
//     pseudo-terminal or on pipes through package local (bastion/local),
//     which is also what "bastion record" uses; upstream targets are
//     reached over SSH with the bastion's own short-lived certificates.
//   - The configuration (HCL), hot reload of it and of the policy, the
//     HTTPS API's assembly (certificates, grants, /metrics, /healthz,
//     /readyz), the admin and access sockets, the journal's recovery from
//     faults and its alarms, and the witnesses the journal's checkpoints
//     are pushed to.
//
// Its parts live in packages of their own: the certificate authority and
// its HTTPS API (certauth), token verification and the development OpenID
// provider (certauth/oidc), policy and masking (policy, policy/mask),
// just-in-time grants (policy/grants), the alarms' webhook
// (policy/webhook), and the journal (recorder) over storage; the journal's
// event and reason names are package events'. docs/architecture.md maps
// them.
//
// docs/front-door.md, docs/operations.md and docs/witnesses.md describe
// what it does from the outside.
package bastion
