package testutil

import (
	"os"
	"testing"
)

// SkipMissingEnv, set to 1, lets a developer's machine skip tests whose
// system packages (or privileges) are missing. `make test` installs the
// packages and .ci/run never sets it, so in CI a missing one fails.
const SkipMissingEnv = "OPS_TEST_SKIP_MISSING"

// Require stops the test when have is false: it fails, naming what is
// missing and the command that provides it, unless SkipMissingEnv is set,
// in which case it skips with the same message.
func Require(t testing.TB, have bool, what, fix string) {
	t.Helper()
	if have {
		return
	}
	msg := what + " is missing: " + fix + " (make test installs it; set " + SkipMissingEnv + "=1 to skip instead on a developer machine)"
	if os.Getenv(SkipMissingEnv) == "1" {
		t.Skip(msg)
	}
	t.Fatal(msg)
}
