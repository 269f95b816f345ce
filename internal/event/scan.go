package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A small JSON scanner for the envelope: it walks the top level of an event
// object (or of a batch array) and hands out the raw bytes of each value, so
// decoding an event costs one pass and a handful of allocations instead of a
// map of RawMessages. Nested values (data) are checked with json.Valid.
// FuzzParseEvent checks it against encoding/json.

var errSyntax = errors.New("invalid JSON")

type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s (at byte %d)", e.msg, e.off) }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"' and
// whether it contains escapes or bytes outside printable ASCII.
func skipString(b []byte, i int) (int, bool, error) {
	slow := false
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			return j + 1, slow, nil
		case c == '\\':
			slow = true
			j++
			if j >= len(b) {
				break
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return 0, false, &syntaxError{j, "short \\u escape"}
				}
				for k := 1; k <= 4; k++ {
					if !isHex(b[j+k]) {
						return 0, false, &syntaxError{j + k, "bad \\u escape"}
					}
				}
				j += 4
			default:
				return 0, false, &syntaxError{j, "bad escape"}
			}
		case c < 0x20:
			return 0, false, &syntaxError{j, "control character in string"}
		case c >= 0x80:
			slow = true
		}
	}
	return 0, false, &syntaxError{len(b), "unterminated string"}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skipValue returns the index after the JSON value starting at b[i]. Nested
// objects and arrays are skipped by bracket matching; callers that keep
// them must validate them (json.Valid).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, &syntaxError{i, "unexpected end of JSON"}
	}
	switch c := b[i]; {
	case c == '"':
		j, _, err := skipString(b, i)
		return j, err
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				k, _, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = k - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, &syntaxError{len(b), "unexpected end of JSON"}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(b, i)
	default:
		return 0, &syntaxError{i, fmt.Sprintf("invalid character %q looking for a value", c)}
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, &syntaxError{i, "invalid literal"}
	}
	return i + len(lit), nil
}

func skipNumber(b []byte, i int) (int, error) {
	j := i
	if b[j] == '-' {
		j++
	}
	digits := func() int {
		s := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j - s
	}
	if j < len(b) && b[j] == '0' {
		j++
	} else if digits() == 0 {
		return 0, &syntaxError{j, "invalid number"}
	}
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return 0, &syntaxError{j, "invalid number"}
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return 0, &syntaxError{j, "invalid number"}
		}
	}
	return j, nil
}

// unquote decodes a JSON string value; the common case (plain ASCII, no
// escapes) needs no decoder.
func unquote(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		return "", errSyntax
	}
	end, slow, err := skipString(v, 0)
	if err != nil || end != len(v) {
		return "", errSyntax
	}
	if !slow {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", err
	}
	return s, nil
}

// scanObject calls fn with each top-level key and the raw bytes of its value.
func scanObject(b []byte, fn func(key string, val []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) {
		return &syntaxError{i, "unexpected end of JSON"}
	}
	if b[i] != '{' {
		return &syntaxError{i, "expected a JSON object"}
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return &syntaxError{i, "expected a string key"}
		}
		end, _, err := skipString(b, i)
		if err != nil {
			return err
		}
		key, err := unquote(b[i:end])
		if err != nil {
			return &syntaxError{i, "bad key"}
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return &syntaxError{i, "expected ':' after a key"}
		}
		i = skipSpace(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(key, b[i:vend]); err != nil {
			return err
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return &syntaxError{i, "unexpected end of JSON"}
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return &syntaxError{i, "expected ',' or '}'"}
		}
	}
}

// scanArray calls fn with the raw bytes of each element of a JSON array.
func scanArray(b []byte, fn func(i int, elem []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return &syntaxError{i, "expected a JSON array"}
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return trailing(b, i+1)
	}
	for n := 0; ; n++ {
		end, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(n, b[i:end]); err != nil {
			return err
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return &syntaxError{i, "unexpected end of JSON"}
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return trailing(b, i+1)
		default:
			return &syntaxError{i, "expected ',' or ']'"}
		}
	}
}

func trailing(b []byte, i int) error {
	if i = skipSpace(b, i); i != len(b) {
		return &syntaxError{i, "data after the top-level value"}
	}
	return nil
}

// appendString appends s as a JSON string. Printable ASCII without quotes
// or backslashes is copied as is; anything else goes through encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func parseExtension(v []byte) (any, error) {
	switch v[0] {
	case '"':
		return unquote(v)
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return strconv.ParseFloat(string(v), 64)
	}
	return nil, errSyntax
}

var _ = utf8.RuneError

// ScanObject calls fn with each top-level key of a JSON object and the raw
// bytes of its value, in one pass. Nested values are skipped by bracket
// matching, not validated: check the whole input with json.Valid when that
// matters.
func ScanObject(b []byte, fn func(key string, val []byte) error) error { return scanObject(b, fn) }

// Unquote decodes a JSON string value.
func Unquote(v []byte) (string, error) { return unquote(v) }

// AppendString appends s as a JSON string.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }
