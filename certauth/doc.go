// Package certauth is bastion's key and certificate authority: it creates and
// loads the keys that "bastion ca init" makes under the home directory.
//
// It holds the journal signing key (an Ed25519 signed-note key whose name is
// the journal's log origin) and three SSH certificate authorities, one per
// [Role]: the user CA signs users' certificates and is what the bastion (and
// any server users reach directly) trusts; the host CA signs the bastion's
// host certificate, which clients trust with an "@cert-authority" line; the
// target CA signs the certificates the bastion logs in to targets with,
// which targets trust with sshd's TrustedUserCAKeys. [KRL] writes the
// OpenSSH key revocation list that makes sshd refuse revoked certificates.
//
// It also exchanges tokens for certificates: [Issuer] takes an identity a
// [TokenVerifier] proved (package oidc's Verifier), asks policy, and signs a
// user certificate after journaling the issuance; [API] is the HTTPS endpoint "bastion
// serve" offers (the authorities, certificates, the KRL, and the routes of
// just-in-time grants, whose store is package grants), with its request and
// answer types, which its client (package apiclient) shares; [Registry]
// keeps issued and revoked certificates from the journal; [ParsePublicKey]
// refuses keys too weak or of the wrong kind; [LoadTLS] makes or loads the
// API's TLS certificate.
//
// # Files
//
// Under the home directory:
//
//	journal.key                         journal signing key, 0600
//	journal.pub                         its verifier key, 0644
//	ca/                                 the CAs, 0700
//	ca/ROLE_ca                          ROLE's active private key, OpenSSH format, 0600
//	ca/ROLE_ca.pub                      its public key, authorized_keys format, 0644
//	ca/ROLE_ca.retired-UNTIL-HASH.pub   a retired public key, trusted until UNTIL
//	tls/api.crt, tls/api.key            the API's self-signed TLS certificate (key 0600)
//	revoked.krl                         the KRL of revoked certificates, 0644
//	dev/issuer.key, dev/issuer.json     the development issuer's key and URL (package oidc)
//
// ROLE is user, host or target. UNTIL is the end of the grace period in UTC
// (20261128T120000Z); HASH is the first 8 hex digits of the SHA-256 of the
// key's wire encoding. The private key files are what ssh-keygen reads; the
// key in ROLE_ca is what signs, and ROLE_ca.pub is its copy for people and
// tools.
//
// Private keys are written with mode 0600 and public keys with 0644, and
// loading refuses a private key others may read. No key is ever overwritten
// by "ca init": [CreateJournalKey] creates its files exclusively, because a
// journal signed by a lost key can no longer be extended, and
// [CreateAuthorities] writes all three CAs into a temporary directory that
// it renames to ca/, so that a crash leaves all of them or none.
//
// [RotateAuthority] is the only change to ca/: it writes the old public key
// to a retired file, renames the new private key over the old one (after
// which the old key can never sign again), rewrites ROLE_ca.pub, and removes
// retired files whose grace period has ended. Each file is written to a
// temporary name, synced and renamed, and the directory synced, so a crash
// at any point leaves a usable authority. Retired keys past their grace
// period are ignored when loading.
package certauth
