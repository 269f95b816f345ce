package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestLevelChangesAtRunTime(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "text", "info", map[string]string{"bus": "warn"})
	if err != nil {
		t.Fatal(err)
	}
	bus, api := l.Logger("bus"), l.Logger("api")
	bus.Info("hidden")
	api.Debug("hidden too")
	api.Info("shown")
	if err := l.Set("bus", "debug"); err != nil {
		t.Fatal(err)
	}
	bus.Debug("now shown")
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "msg=shown module=api") || !strings.Contains(out, `msg="now shown" module=bus`) {
		t.Fatalf("output:\n%s", out)
	}
	if err := l.Set("bus", "loud"); err == nil {
		t.Fatal("bad level accepted")
	}
}
