# The smallest bastion worth trying, on one machine: the HTTPS API and the
# SSH front door on loopback, one local shell target, and the development
# identity provider (serve --dev; never in production).
#
#   bastion ca init
#   bastion serve --dev --config docs/examples/minimal.hcl
#   bastion dev token --sub agent-1 > token
#   bastion login --server https://127.0.0.1:8443 --ca-fingerprint SHA256:… --token-file token
#   ssh -i ~/.ssh/bastion_ed25519 -p 2222 dev@shell@127.0.0.1
#
# The state (keys, journal) is in the home directory: --home DIR, else
# $BASTION_HOME, else ~/.bastion.

api {
  listen = "127.0.0.1:8443"
}

ssh {
  listen = "127.0.0.1:2222"
}

# A shell on this machine, run as the bastion's own user; "dev" below is
# the login a certificate must name to reach it.
target "shell" {
  command = ["/bin/sh"]
}

# Whoever holds a token of the development provider.
identity "developers" {
  providers = ["dev"]
}

role "shell" {
  identities = ["developers"]
  targets    = ["shell"]
  logins     = ["dev"]
  pty        = true
  shell      = true
}

# A second shell that stands for production: nobody reaches it without a
# just-in-time grant, which someone else must approve (never the one who
# asks), for at most an hour.
target "prod-shell" {
  command = ["/bin/sh"]
}

identity "approvers" {
  providers = ["dev"]
  subjects  = ["alice"]
}

role "prod" {
  identities = ["developers"]
  targets    = ["prod-shell"]
  logins     = ["dev"]
  access     = "grant"
  approval {
    approvers    = ["approvers"]
    approvals    = 1
    max_duration = "1h"
  }
}
