// Package bastion is the server: "bastion serve" assembled from its parts.
//
// It reads the configuration (HCL) and reloads it and the policy; builds
// the HTTPS API (certificates, grants, /metrics, /healthz, /readyz) and
// the admin and access sockets; watches the journal's health, recovers
// it from faults and raises its alarms; pushes its checkpoints to the
// witnesses; and runs the SSH front door (package front, bastion/front),
// which it hands the journal in force, the policy, the grants and its
// metrics, and whose live sessions it lists, kills and ends on a
// revocation or a grant's end. Serving ends with a graceful shutdown: the
// live sessions record their end before the journal closes.
//
// Its parts live in packages of their own: the SSH front door
// (bastion/front), which pumps every byte through package pump and runs
// local command targets with package local, the certificate authority and
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
