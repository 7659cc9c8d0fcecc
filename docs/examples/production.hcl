# A production-shaped bastion: the bank's identity provider for people
# (device flow) and the CI platform's for agents, an sshd target that
# trusts the bastion's target CA, standing roles for people, a grant-only
# role for agents with approval, command rules and masking, and two
# witnesses that keep the journal's checkpoints outside this host.
#
#   bastion policy check --config /etc/bastion/bastion.hcl
#   bastion serve --config /etc/bastion/bastion.hcl
#
# Every name, address and key below is an example: replace them. See
# docs/front-door.md (ssh, targets), docs/policy.md (identities, roles),
# docs/grants.md, docs/masking.md and docs/witnesses.md.

home    = "/var/lib/bastion"
journal = "journal.db"

api {
  listen    = "0.0.0.0:8443"
  hostnames = ["bastion.bank.example"]
  # A certificate clients' roots vouch for; without these two lines serve
  # makes a self-signed one and prints its fingerprint to pin.
  # tls_cert = "/etc/bastion/tls/bastion.crt"
  # tls_key  = "/etc/bastion/tls/bastion.key"
}

ssh {
  listen       = "0.0.0.0:2222"
  host_names   = ["bastion.bank.example"]
  idle_timeout = "30m"
  max_duration = "8h"
}

certificates {
  max_ttl = "30m"
  # By default login trusts the host CA only for the bastion's names
  # ([bastion.bank.example]:2222 here) and its targets' (for ssh -J):
  # known_hosts_pattern = "bastion.bank.example,*.prod.bank.example"
}

# People: the bank's OpenID provider, with the device flow for the CLI.
identity_provider "corp" {
  issuer           = "https://login.bank.example"
  audiences        = ["bastion"]
  groups_claim     = "groups"
  device_client_id = "bastion-cli"
}

# Agents: the CI platform's workload tokens; the repository owner is the
# team the agent acts for.
identity_provider "agents" {
  issuer        = "https://token.actions.example"
  audiences     = ["https://bastion.bank.example"]
  sponsor_claim = "repository_owner"
}

# A database host running sshd with
#   TrustedUserCAKeys /etc/ssh/bastion_target_ca.pub
# (the target CA's key, from GET /v1/ca). Its host key is vouched for by
# the bank's host CA.
target "db1" {
  ssh     = "db1.bank.example:22"
  host_ca = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILZgLFllCUvZzKSjxdynl63ZY3bewG9x3KVcZ5JuUyiU bank-host-ca"
}

grants {
  pending_ttl = "1h"
  webhook_url = "https://chat.bank.example/hooks/bastion"
}

witness "w1" {
  url = "https://witness.example.org/w1"
  key = "witness.example.org/w1+d70dff8b+BAUYSr72zkouzeOgHq3RjHFZ1zP3O7F/XAqxBpmKQFE0"
}

witness "w2" {
  url = "https://witness.example.net/w2"
  key = "witness.example.net/w2+da3b99d7+BDrW8sf/W3GAg1W0TnLP3Bfb/Htp/IWHYWPgaopgKUHl"
}

witnesses {
  threshold   = 1
  stale_after = "10m"
}

# The policy: who may have which logins on which targets.

identity "sre" {
  providers = ["corp"]
  claims    = { groups = ["sre"] }
}

identity "sre-leads" {
  providers = ["corp"]
  subjects  = ["alice@bank.example", "bob@bank.example", "carol@bank.example"]
}

identity "db-agents" {
  providers = ["agents"]
  subjects  = ["repo:bank/db-agent:*"]
  sponsors  = ["bank"]
}

operators = ["sre-leads"]
auditors  = ["sre-leads"]

# People of the SRE group: standing access, a shell, for short lifetimes.
role "sre-db" {
  identities = ["sre"]
  targets    = ["db1"]
  logins     = ["ops"]
  pty        = true
  shell      = true
  max_ttl    = "15m"
}

# Agents: nothing until a grant two leads approve; then psql and pg_dump
# only, exec only, with card numbers masked in what they read.
role "agent-db" {
  identities = ["db-agents"]
  targets    = ["db1"]
  logins     = ["postgres"]
  access     = "grant"
  max_ttl    = "5m"
  masking    = "pci"
  commands {
    allow = ["psql **", "pg_dump --schema-only **"]
    deny  = ["psql ** -c 're:(?i).*\\b(drop|truncate)\\s+table\\b.*' **", "psql ** -f **"]
  }
  approval {
    approvers    = ["sre-leads"]
    approvals    = 2
    max_duration = "30m"
  }
}
