package bastion

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
)

// maskedValues are raw values that must never reach the agent or the
// journal, in a file a target cats. The card numbers pass Luhn; the AWS
// key is AWS's documentation example.
var maskedValues = []string{
	"4111 1111 1111 1111",
	"5500-0000-0000-0004",
	"378282246310005",
	"AKIAIOSFODNN7EXAMPLE",
	"hunter2-correct-horse",
	"ACCT-12345678",
	// Interrupted by color changes, and in a window title. The card's
	// groups are searched for with what surrounds them: four digits alone
	// turn up by chance among a journal's times, sizes and indexes.
	"debit 4000", "\x1b[31m0566", "\x1b[0m5566", "title-pw-hunter3",
}

const maskedFile = `statement for account 7
visa 4111 1111 1111 1111 exp 12/29
mastercard 5500-0000-0000-0004
amex 378282246310005
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
db password=hunter2-correct-horse
order 12345 shipped
ledger ACCT-12345678 balanced
` +
	// Interrupted by color changes, and in a window title.
	"debit 4000\x1b[31m0566\x1b[0m5566\x1b[1m5556\x1b[0m\n" +
	"\x1b]0;db password=title-pw-hunter3\x07title set\n"

// TestMaskingEndToEnd is issue 7's must-show with the real OpenSSH client:
// cat of a file of card numbers (and a key, and a password; one card
// interrupted by color changes, a password in a window title) on a target
// shows them masked, both through a command target and through a real
// sshd target; the journal's database files hold none of the raw values,
// searched byte-wise; each masking is a mask frame; what is typed at a
// password prompt is recorded as a redaction marker.
func TestMaskingEndToEnd(t *testing.T) {
	t.Parallel()
	needTool(t, "ssh")
	dir := t.TempDir()
	file := filepath.Join(dir, "statement.txt")
	if err := os.WriteFile(file, []byte(maskedFile), 0o644); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "target_ca.pub")
	if err := os.WriteFile(caFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sd := startSSHD(t, "TrustedUserCAKeys "+caFile)
	hostPub, err := os.ReadFile(filepath.Join(sd.dir, "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	login := currentLogin(t)
	// The policy's own profile: every built-in detector and a custom rule.
	config := strings.Replace(frontConfig, "file_transfer = true", "file_transfer = true\n  masking = \"bank\"\n  redact_password_input = true", 1) +
		"masking_profile \"bank\" {\n  detectors = [\"all\"]\n  custom \"account\" {\n    pattern = \"ACCT-[0-9]{8}\"\n  }\n}\n" +
		"target \"words\" {\n  command = [\"/bin/echo\"]\n  exec = \"args\"\n}\n" +
		"target \"db1\" {\n  ssh = \"" + sd.addr + "\"\n  host_key = \"" + strings.Join(strings.Fields(string(hostPub))[:2], " ") + "\"\n}\n"
	fx := startFrontWith(t, login, config)
	if err := os.WriteFile(caFile, []byte(strings.Join(fx.ts.auth.Target.AuthorizedKeys(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, target := range []string{"box", "db1"} {
		for _, opts := range [][]string{nil, {"-tt"}} {
			out, errOut, code := fx.sshIO(t, login+"@"+target, "cat "+file, nil, opts...)
			if code != 0 {
				t.Fatalf("%s %v: exit %d, stderr %q", target, opts, code, errOut)
			}
			for _, v := range maskedValues {
				if bytes.Contains(out, []byte(v)) {
					t.Errorf("%s %v: %q reached the agent:\n%s", target, opts, v, out)
				}
			}
			for _, keep := range []string{"1111", "0004", "0005", "order 12345 shipped", "statement for account 7"} {
				if !bytes.Contains(out, []byte(keep)) {
					t.Errorf("%s %v: %q is missing from the output:\n%s", target, opts, keep, out)
				}
			}
		}
	}

	// A card the command's quoting hides from the masker, to a target
	// that splits the command into words: the target gets the card (its
	// echo of it is masked as a card), the journal neither the card nor
	// the command as written.
	const quoted = "4111''111111111111"
	out, errOut, code := fx.sshIO(t, login+"@words", quoted, nil)
	if code != 0 || string(out) != "************1111\n" {
		t.Fatalf("words: exit %d, %q %q", code, out, errOut)
	}
	masked := append(maskedValues, quoted)

	// A password prompt: what is typed is not recorded.
	const typed = "s3cr3t-typed-at-prompt"
	prompt := `stty -echo; printf 'Password: '; read -r p; stty echo; echo; echo "got ${#p} chars"`
	cmd := exec.Command(needTool(t, "ssh"), append(fx.frontArgs(login+"@box", "-tt"), prompt)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var pout, perr syncBuffer
	cmd.Stdout, cmd.Stderr = &pout, &perr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Typed once the prompt shows, as a person would.
	for deadline := time.Now().Add(endBound); !strings.Contains(pout.String(), "Password: "); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no prompt: %q %q", pout.String(), perr.String())
		}
	}
	io.WriteString(stdin, typed+"\r")
	if err := cmd.Wait(); err != nil || !strings.Contains(pout.String(), "got 22 chars") {
		t.Fatalf("prompt: %v, %q %q", err, pout.String(), perr.String())
	}

	// The journal: mask frames, and none of the values.
	hits := map[string]int{}
	for _, s := range fx.sessions(t) {
		for _, f := range s.frames {
			if recorder.Kind(f.Kind) != recorder.KindMask {
				continue
			}
			a, err := recorder.ParseAttrsPayload(f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			hits[a["detector"]]++
		}
	}
	for _, d := range []string{"card", "aws-key-id", "password", "account", "password-prompt"} {
		if hits[d] == 0 {
			t.Errorf("no mask frame for %s: %v", d, hits)
		}
	}
	fx.verify(t)
	files, _ := filepath.Glob(filepath.Join(fx.ts.home, "journal.db*"))
	if len(files) == 0 {
		t.Fatal("no journal files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range append(masked, typed) {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s holds %q", filepath.Base(f), v)
			}
		}
	}
}
