# A policy for the decision tests: humans of the SRE group, CI agents and
# AI agents with standing and just-in-time access.

identity "sre" {
  providers = ["corp"]
  claims    = { groups = ["sre"] }
}

identity "ci-agents" {
  providers = ["gha"]
  claims    = { repository = ["bank/*"], ref = ["refs/heads/main"] }
}

identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
  sponsors  = ["alice", "bob"]
}

identity "approvers" {
  providers = ["corp"]
  subjects  = ["alice", "bob", "carol"]
}

role "sre-web" {
  identities      = ["sre"]
  targets         = ["web-*"]
  logins          = ["ops"]
  pty             = true
  shell           = true
  file_transfer   = true
  port_forwarding = ["localhost:5432", "10.0.0.*:443"]
  max_session     = "1h"
  idle_timeout    = "10m"
  masking         = "pci"
}

role "deploy-agent" {
  identities       = ["ci-agents"]
  targets          = ["web-*", "db-prod"]
  logins           = ["deploy"]
  source_addresses = ["10.1.0.0/16"]
  max_ttl          = "5m"
  commands {
    allow = ["systemctl status *", "systemctl restart web", "journalctl -u * **", "grep **", "echo **"]
    deny  = ["rm ** -rf **", "systemctl ** stop **"]
  }
}

# Agents may read the database at any time, but DROP TABLE is refused as
# soon as they hold a grant of agent-db (whose deny then applies).
role "agent-read" {
  identities = ["agents"]
  targets    = ["db-prod"]
  logins     = ["postgres"]
  commands {
    allow = ["psql **"]
  }
}

role "agent-db" {
  identities = ["agents"]
  targets    = ["db-prod", "db-staging"]
  logins     = ["postgres", "dba"]
  access     = "grant"
  pty        = true
  commands {
    allow = ["psql **", "pg_dump **"]
    deny  = ["psql ** -c 're:(?i).*drop\\s+table.*' **"]
  }
  approval {
    approvers    = ["approvers"]
    approvals    = 2
    max_duration = "30m"
  }
}

role "agent-shell" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["sandbox"]
  logins  = ["agent"]
  access  = "grant"
  shell   = true
  approval {
    approvers = ["approvers"]
  }
}

role "break-glass" {
  identities = ["sre"]
  logins     = ["root"]
  max_ttl    = "2m"
}
