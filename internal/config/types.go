package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Setter is implemented by value types that parse themselves from a string
// (a YAML scalar, an environment variable or a flag).
type Setter interface {
	Set(s string) error
}

// Duration is a time.Duration that also accepts days ("90d") and weeks ("2w").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string {
	v := time.Duration(d)
	if v != 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ParseDuration parses Go durations plus the units d (24h) and w (7d), and "0".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 5m, 24h, 90d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// ByteSize is a size in bytes that accepts units: 512KiB, 10MB, 1GiB, 0.
type ByteSize int64

func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = ByteSize(v)
	return nil
}

func (b ByteSize) String() string {
	v := int64(b)
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(v, 10)
}

func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// ParseByteSize parses a plain number of bytes or one with a unit
// (B, KB, MB, GB, TB decimal; KiB, MiB, GiB, TiB binary).
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		s string
		n float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := 1.0
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.s); ok {
			num, mult = strings.TrimSpace(n), u.n
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q (examples: 65536, 64KiB, 10MB, 1GiB)", s)
	}
	return int64(f * mult), nil
}

// Sync is the bus durability policy: Always (fsync before every
// acknowledgement) or an interval at which the store is fsynced.
type Sync struct {
	Always   bool
	Interval time.Duration
}

func (s *Sync) Set(v string) error {
	if strings.TrimSpace(v) == "always" {
		*s = Sync{Always: true}
		return nil
	}
	d, err := ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("want \"always\" or a positive duration such as 1s, got %q", v)
	}
	*s = Sync{Interval: d}
	return nil
}

func (s Sync) String() string {
	if s.Always {
		return "always"
	}
	return s.Interval.String()
}

func (s Sync) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

var (
	_ Setter = (*Duration)(nil)
	_ Setter = (*ByteSize)(nil)
	_ Setter = (*Sync)(nil)
)

// UnmarshalText makes the types round-trip through JSON (nodes created
// through the API are stored as JSON).
func (d *Duration) UnmarshalText(b []byte) error { return d.Set(string(b)) }

// UnmarshalText reads what MarshalText wrote.
func (b *ByteSize) UnmarshalText(t []byte) error { return b.Set(string(t)) }

// UnmarshalText reads what MarshalText wrote.
func (s *Sync) UnmarshalText(b []byte) error { return s.Set(string(b)) }
