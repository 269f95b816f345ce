package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d bad configs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range strings.Split(string(b), "\n") {
				if w, ok := strings.CutPrefix(l, "# want: "); ok {
					want = append(want, w)
				}
			}
			if len(want) == 0 {
				t.Fatal("no '# want:' line")
			}
			_, err = Load(Options{File: f})
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLayers(t *testing.T) {
	c, err := Load(Options{
		File: "testdata/full.good.yaml",
		Env:  []string{"OPS_HTTP_LISTEN=127.0.0.1:9999", "OPS_BUS_SYNC=always", "PATH=/bin", "OPS_SERVER=x"},
		Set:  []string{"http.listen=127.0.0.1:8888", "log.modules.api=debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:8888" {
		t.Errorf("flag did not win over env: %s", c.HTTP.Listen)
	}
	if !c.Bus.Sync.Always {
		t.Errorf("env did not win over file: %v", c.Bus.Sync)
	}
	if c.Bus.Retention.MaxAge.D() != 90*24*time.Hour || c.Bus.Retention.MaxBytes != 50<<30 {
		t.Errorf("retention %v %v", c.Bus.Retention.MaxAge, c.Bus.Retention.MaxBytes)
	}
	if c.Events.MaxBytes != 128<<10 || c.HTTP.MaxBodyBytes != 16<<20 || c.HTTP.WriteTimeout.D() != 2*time.Minute {
		t.Errorf("sizes %v %v", c.Events.MaxBytes, c.HTTP.MaxBodyBytes)
	}
	if c.Log.Modules["bus"] != "warn" || c.Log.Modules["api"] != "debug" {
		t.Errorf("modules %v", c.Log.Modules)
	}
	if c.HTTP.ReadHeaderTimeout.D() != 10*time.Second {
		t.Errorf("default lost: %v", c.HTTP.ReadHeaderTimeout)
	}
}

func TestNoFileGivesDefaults(t *testing.T) {
	c, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "./data" || c.HTTP.Listen != "127.0.0.1:7070" || !c.Bus.Sync.Always || c.Bus.URL != "" || c.Bus.Listen != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestEnvErrors(t *testing.T) {
	_, err := Load(Options{Env: []string{"OPS_HTTP_LISTN=x", "OPS_BUS_SYNC=never", "OPS_BUS_REPLICAS=0"}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"env OPS_HTTP_LISTN: not a known setting (did you mean OPS_HTTP_LISTEN?)", "bus.sync: want \"always\""} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
	// --set typos are answered the same way.
	_, err = Load(Options{Set: []string{"http.listn=:1", "proxy.fastpath=false"}})
	for _, w := range []string{"did you mean http.listen?", "did you mean proxy.fast_path?"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}

func TestEveryLeafHasEnvName(t *testing.T) {
	c := Default()
	seen := map[string]string{}
	for _, l := range Leaves(&c) {
		if p, dup := seen[l.Env]; dup {
			t.Errorf("%s and %s share %s", p, l.Path, l.Env)
		}
		seen[l.Env] = l.Path
	}
	for _, want := range []string{"OPS_DATA_DIR", "OPS_HTTP_LISTEN", "OPS_BUS_SYNC", "OPS_BUS_URL", "OPS_BUS_RETENTION_MAX_AGE"} {
		if _, ok := seen[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
}

func TestHashChangesWithConfig(t *testing.T) {
	a, b := Default(), Default()
	if a.Hash() != b.Hash() {
		t.Fatal("same config, different hash")
	}
	b.HTTP.Listen = "127.0.0.1:1"
	if a.Hash() == b.Hash() {
		t.Fatal("different config, same hash")
	}
}

func FuzzConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("a: &x {b: *x}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if errs := c.Validate(); len(errs) > 0 {
			t.Fatalf("Parse returned an invalid config: %v", errs)
		}
	})
}

func TestTimeWindow(t *testing.T) {
	at := func(s string) time.Time { // 2026-12-07 is a Monday
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		window, at string
		want       bool
	}{
		{"mon-fri 08:00-18:00", "2026-12-07 08:00", true},
		{"mon-fri 08:00-18:00", "2026-12-07 18:00", false},
		{"mon-fri 08:00-18:00", "2026-12-12 10:00", false}, // Saturday
		{"sat,sun", "2026-12-13 03:00", true},
		{"sat,sun", "2026-12-11 03:00", false},
		{"22:00-06:00", "2026-12-07 23:30", true},
		{"22:00-06:00", "2026-12-07 05:59", true},
		{"22:00-06:00", "2026-12-07 06:00", false},
		{"fri 22:00-06:00", "2026-12-12 02:00", true},  // Saturday night, started Friday
		{"fri 22:00-06:00", "2026-12-11 02:00", false}, // Friday early morning started Thursday
		{"fri-mon", "2026-12-07 12:00", true},          // a range through Sunday
		{"fri-mon", "2026-12-09 12:00", false},
	}
	for _, c := range cases {
		w, err := ParseTimeWindow(c.window)
		if err != nil {
			t.Fatalf("%s: %v", c.window, err)
		}
		if got := w.Contains(at(c.at)); got != c.want {
			t.Errorf("%s at %s: %v, want %v", c.window, c.at, got, c.want)
		}
	}
}
