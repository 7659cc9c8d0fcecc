package bastion

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/policy"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("/etc/bastion/bastion.hcl", []byte(`
home    = "state"
journal = "/var/lib/bastion/journal.db"
api {
  listen    = "0.0.0.0:8443"
  hostnames = ["bastion.bank.example"]
  rate_per_identity = 2
}
certificates {
  max_ttl      = "30m"
  min_rsa_bits = 3072
  backdate     = "10s"
  known_hosts_pattern = "bastion.bank.example,*.prod.bank.example"
}
identity_provider "corp" {
  issuer           = "https://login.bank.example"
  audiences        = ["bastion"]
  sponsor_claim    = "owner"
  device_client_id = "bastion-cli"
}
role "ci" {
  match {
    providers = ["corp"]
    claims    = { repository = ["bank/*"] }
  }
  logins  = ["deploy"]
  max_ttl = "10m"
  sponsor = "team-payments"
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Home != "/etc/bastion/state" || cfg.Journal != "/var/lib/bastion/journal.db" || cfg.API.Listen != "0.0.0.0:8443" ||
		cfg.API.RatePerIdentity != 2 || cfg.Certificates.MaxTTL != 30*time.Minute || cfg.Certificates.MinRSABits != 3072 ||
		cfg.Certificates.Backdate != 10*time.Second || cfg.Certificates.KRLFile != DefaultKRLFile ||
		cfg.Certificates.KnownHostsPattern != "bastion.bank.example,*.prod.bank.example" {
		t.Fatalf("config: %+v", cfg)
	}
	if len(cfg.Providers) != 1 || cfg.Providers[0].SponsorClaim != "owner" || cfg.Providers[0].DeviceClientID != "bastion-cli" {
		t.Fatalf("providers: %+v", cfg.Providers)
	}
	if len(cfg.Policy.Roles) != 1 || cfg.Policy.Roles[0].MaxTTL != 10*time.Minute || cfg.Policy.Roles[0].Sponsor != "team-payments" || cfg.Policy.Roles[0].Match.Claims["repository"][0] != "bank/*" {
		t.Fatalf("roles: %+v", cfg.Policy.Roles)
	}
	empty, err := ParseConfig("x.hcl", nil)
	if err != nil || empty.API.Listen != DefaultAPIListen || empty.Certificates.MaxTTL != time.Hour {
		t.Fatalf("empty config: %+v %v", empty, err)
	}
}

func TestConfigErrorsHavePositions(t *testing.T) {
	t.Parallel()
	provider := "identity_provider \"corp\" {\n  issuer = \"https://login.bank.example\"\n  audiences = [\"bastion\"]\n}\n"
	for _, c := range []struct {
		name, src, want string
	}{
		{"syntax", "api {\n  listen = \n}\n", `^b\.hcl:2:\d+: `},
		{"unknown block", "ssh_target \"x\" {}\n", `^b\.hcl:1:1: (error: )?Unsupported block type`},
		{"unknown attribute", "api {\n  port = 1\n}\n", `^b\.hcl:2:3: Unsupported argument`},
		{"wrong type", "api {\n  listen = [\"a\"]\n}\n", `^b\.hcl:2:\d+: `},
		{"bad listen", "api {\n  listen = \"8443\"\n}\n", `^b\.hcl:2:3: api listen = "8443" is not HOST:PORT`},
		{"tls half", "api {\n  tls_cert = \"a.pem\"\n}\n", `^b\.hcl:1:1: api needs both tls_cert and tls_key`},
		{"bad ttl", "certificates {\n  max_ttl = \"1 hour\"\n}\n", `^b\.hcl:2:3: max_ttl = "1 hour" is not a positive duration`},
		{"bad known_hosts pattern", "certificates {\n  known_hosts_pattern = \"a b\"\n}\n", `^b\.hcl:2:3: known_hosts_pattern`},
		{"weak rsa", "certificates {\n  min_rsa_bits = 1024\n}\n", `min_rsa_bits = 1024 is below 2048`},
		{"http issuer", "identity_provider \"x\" {\n  issuer = \"http://login.bank.example\"\n  audiences = [\"b\"]\n}\n", `^b\.hcl:1:1: identity_provider "x": `},
		{"no audience", "identity_provider \"x\" {\n  issuer = \"https://a.example\"\n  audiences = []\n}\n", `^b\.hcl:1:1: identity_provider "x": `},
		{"hmac", "identity_provider \"x\" {\n  issuer = \"https://a.example\"\n  audiences = [\"b\"]\n  algorithms = [\"HS256\"]\n}\n", `HS256`},
		{"duplicate provider", provider + provider, `^b\.hcl:5:1: identity_provider "corp" is defined twice`},
		{"role for unknown provider", provider + "role \"r\" {\n  match { providers = [\"gh\"] }\n  logins = [\"x\"]\n}\n", `^b\.hcl:6:\d+: (error: )?role "r" matches provider "gh", which is not configured`},
		{"role matches nobody", "role \"r\" {\n  logins = [\"x\"]\n}\n", `^b\.hcl:1:1: (error: )?role "r": matches nobody`},
		{"role without providers", provider + "role \"r\" {\n  match { subjects = [\"a\"] }\n  logins = [\"x\"]\n}\n", `^b\.hcl:6:\d+: (error: )?role "r": a matcher must name the providers`},
		{"role above cap", provider + "role \"r\" {\n  match { providers = [\"corp\"] }\n  logins = [\"x\"]\n  max_ttl = \"2h\"\n}\n", `max_ttl 2h0m0s is above the certificates' max_ttl 1h0m0s`},
		{"bad permit", provider + "role \"r\" {\n  match { providers = [\"corp\"] }\n  logins = [\"x\"]\n  permit = [\"permit-all\"]\n}\n", `unknown extension "permit-all"`},
	} {
		_, err := ParseConfig("b.hcl", []byte(c.src))
		var ce *ConfigError
		var pe *policy.Error
		if !errors.As(err, &ce) && !errors.As(err, &pe) {
			t.Errorf("%s: %v, want a ConfigError or a policy.Error", c.name, err)
			continue
		}
		if !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("%s: %q does not match %q", c.name, err, c.want)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !regexp.MustCompile(`^b\.hcl:\d+:\d+: `).MatchString(line) {
				t.Errorf("%s: line %q has no file:line:col", c.name, line)
			}
		}
	}
}

// TestAlertsConfig: the alerts block sets the slow-commit threshold and
// its webhook; both are checked.
func TestAlertsConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("b.hcl", []byte("alerts {\n  slow_commit = \"2s\"\n  webhook_url = \"https://hooks.example/x\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Alerts.SlowCommit != 2*time.Second || cfg.Alerts.WebhookURL != "https://hooks.example/x" {
		t.Fatalf("alerts: %+v", cfg.Alerts)
	}
	for _, bad := range []string{`slow_commit = "0s"`, `slow_commit = "soon"`, `webhook_url = "http://hooks.example/x"`} {
		if _, err := ParseConfig("b.hcl", []byte("alerts {\n  "+bad+"\n}\n")); err == nil || !strings.Contains(err.Error(), "b.hcl:") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestKnownHostsPattern: by default the host CA is trusted for the names
// the bastion presents host certificates for, as ssh looks them up, never
// for every host; a configured pattern, "*" included, is used as it is.
func TestKnownHostsPattern(t *testing.T) {
	t.Parallel()
	const targets = `
target "db1" {
  ssh      = "10.0.0.5:22"
  host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
}
target "shell" {
  command = ["/bin/sh"]
}
`
	for _, tt := range []struct {
		name, config, sshAddr, want string
	}{
		{"no front door", ``, "", ""},
		{"loopback, port chosen at start", "ssh {\n  listen = \"127.0.0.1:0\"\n}\n" + targets, "127.0.0.1:40022",
			"[127.0.0.1]:40022,[localhost]:40022,db1,shell"},
		{"loopback, configured port", "ssh {}\n" + targets, "", "[127.0.0.1]:2222,[localhost]:2222,db1,shell"},
		{"host names on port 22", "ssh {\n  listen = \"0.0.0.0:22\"\n  host_names = [\"bastion.bank.example\", \"10.1.2.3\"]\n}\n" + targets, "",
			"bastion.bank.example,10.1.2.3,db1,shell"},
		{"host names and an address", "ssh {\n  listen = \"10.1.2.3:2222\"\n  host_names = [\"bastion.bank.example\"]\n}\n", "",
			"[bastion.bank.example]:2222,[10.1.2.3]:2222"},
		{"configured", "ssh {}\ncertificates {\n  known_hosts_pattern = \"*.bank.example\"\n}\n" + targets, "", "*.bank.example"},
		{"configured star", "ssh {}\ncertificates {\n  known_hosts_pattern = \"*\"\n}\n", "", "*"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("b.hcl", []byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.KnownHostsPattern(tt.sshAddr); got != tt.want {
				t.Errorf("pattern %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDevConfig: the configuration of "serve --dev" without a file has a
// front door on loopback and the local shell target.
func TestDevConfig(t *testing.T) {
	t.Parallel()
	cfg, err := DevConfig("", `/bin/we"ird $${x} sh`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != "" || cfg.SSH == nil || cfg.SSH.Listen != front.DefaultSSHListen || len(cfg.Targets) != 1 ||
		cfg.Targets[0].Name != DevTargetName || strings.Join(cfg.Targets[0].Command, " ") != `/bin/we"ird $${x} sh` || cfg.Targets[0].Exec != front.ExecShell {
		t.Fatalf("dev config: %+v %+v", cfg, cfg.Targets)
	}
	if cfg, err = DevConfig("127.0.0.1:0", ""); err != nil || cfg.SSH.Listen != "127.0.0.1:0" || cfg.Targets[0].Command[0] != "/bin/sh" {
		t.Fatalf("dev config on another port: %v %+v", err, cfg)
	}
}

// TestWebClientConfig: an identity provider's web client settings, the
// secret read from a file only its owner may read, and their mistakes.
func TestWebClientConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "console.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.secret")
	if err := os.WriteFile(open, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.secret")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	block := func(attrs string) string {
		return "identity_provider \"corp\" {\n  issuer = \"https://login.bank.example\"\n  audiences = [\"bastion\"]\n" + attrs + "}\n"
	}
	cfg, err := ParseConfig(filepath.Join(dir, "b.hcl"), []byte(block(`  web_client_id = "bastion-console"
  web_client_secret_file = "console.secret"
  web_redirect_url = "https://bastion.bank.example:8443/ui/callback"
`)))
	if err != nil {
		t.Fatal(err)
	}
	want := WebClientConfig{ClientID: "bastion-console", SecretFile: secret, Secret: "s3cret", RedirectURL: "https://bastion.bank.example:8443/ui/callback"}
	if cfg.Providers[0].Web != want {
		t.Errorf("web client %+v, want %+v", cfg.Providers[0].Web, want)
	}
	cfg, err = ParseConfig("b.hcl", []byte(block("  web_client_id = \"ui\"\n  web_redirect_url = \"http://127.0.0.1:8443/ui/callback\"\n")))
	if err != nil || cfg.Providers[0].Web != (WebClientConfig{ClientID: "ui", RedirectURL: "http://127.0.0.1:8443/ui/callback"}) {
		t.Errorf("public client on loopback: %+v %v", cfg, err)
	}
	if cfg, err := ParseConfig("b.hcl", []byte(block(""))); err != nil || cfg.Providers[0].Web != (WebClientConfig{}) {
		t.Errorf("no web client: %v", err)
	}
	for _, c := range []struct{ name, attrs, want string }{
		{"no redirect", "  web_client_id = \"ui\"\n", `b\.hcl:4:3: identity_provider "corp": web_client_id needs web_redirect_url`},
		{"redirect without client", "  web_redirect_url = \"https://a.example/cb\"\n", `b\.hcl:4:3: identity_provider "corp": web_redirect_url needs web_client_id`},
		{"secret without client", "  web_client_secret_file = \"x\"\n", `web_client_secret_file needs web_client_id`},
		{"empty client", "  web_client_id = \"\"\n  web_redirect_url = \"https://a.example/cb\"\n", `web_client_id = "" is not a client ID`},
		{"http redirect", "  web_client_id = \"ui\"\n  web_redirect_url = \"http://bastion.bank.example/ui/callback\"\n", `b\.hcl:5:3: .*want https, or http on a loopback address`},
		{"relative redirect", "  web_client_id = \"ui\"\n  web_redirect_url = \"/ui/callback\"\n", `web_redirect_url: redirect URL "/ui/callback": want an absolute URL`},
		{"fragment", "  web_client_id = \"ui\"\n  web_redirect_url = \"https://a.example/cb#x\"\n", `without user information or fragment`},
		{"secret readable by others", "  web_client_id = \"ui\"\n  web_redirect_url = \"https://a.example/cb\"\n  web_client_secret_file = \"" + open + "\"\n", `b\.hcl:6:3: .*readable by others .*chmod 600`},
		{"empty secret", "  web_client_id = \"ui\"\n  web_redirect_url = \"https://a.example/cb\"\n  web_client_secret_file = \"" + empty + "\"\n", `want the client secret on one line`},
		{"missing secret", "  web_client_id = \"ui\"\n  web_redirect_url = \"https://a.example/cb\"\n  web_client_secret_file = \"" + filepath.Join(dir, "none") + "\"\n", `no such file`},
	} {
		_, err := ParseConfig("b.hcl", []byte(block(c.attrs)))
		var ce *ConfigError
		if !errors.As(err, &ce) || !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the secret: %v", c.name, err)
		}
	}
}
