package pump

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: what "bastion record" records with, the pump and the
// local runners, depends on no SSH library, not on the SSH front door
// (bastion/front) and not on the server (bastion), so that recording a
// local command never needs them.
func TestDependencies(t *testing.T) {
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		goBin = root + "/bin/go"
	}
	if _, err := exec.LookPath(goBin); err != nil {
		t.Fatalf("go list needs the go command: %v", err)
	}
	forbidden := []string{
		"golang.org/x/crypto/ssh",
		"github.com/gliderlabs/ssh",
		"github.com/bastionhq/bastion/bastion",
		"github.com/bastionhq/bastion/bastion/front",
	}
	for _, pkg := range []string{"github.com/bastionhq/bastion/bastion/pump", "github.com/bastionhq/bastion/bastion/local"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 || deps[len(deps)-1] != pkg {
			t.Fatalf("go list -deps %s printed %q, which does not end with the package", pkg, out)
		}
		for _, d := range deps {
			for _, f := range forbidden {
				if d == f || strings.HasPrefix(d, f+"/") && f != "github.com/bastionhq/bastion/bastion" {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
}
