// Package canon decides the one form of a request's path and host that
// everything at the edge matches on: routes, ACLs, rate limits, policy
// path blocks and the cache key, and that the upstream is sent. A
// request whose path or host has no canonical form is refused (400)
// rather than guessed at.
//
// Invariants: Path is idempotent (Path(Path(p)) == Path(p)); a canonical
// path has no empty, "." or ".." segment, no percent-encoded unreserved
// character, upper-case hex in every escape, and no escaped '/' or '\'
// unless the caller keeps them (KeepEncodedSlash); Host is lower case
// ASCII (IDNA) without a trailing dot or port.
package canon
