// Package identity says who makes a request and what they may do.
//
// Providers establish identity: local users (bcrypt/argon2id hashes in
// config or in the OPS_USERS bucket), LDAP/Active Directory (search, then
// bind as the user), and Kerberos SPNEGO (a service keytab). API tokens and
// browser sessions carry an established identity to later requests; both
// live in the bus, so they work on every node, and a revoked token or ended
// session is refused on the next request.
//
// Roles are sets of permissions (area:action); every API route declares the
// permission it needs, and Require refuses with 401 (who are you?) or 403
// (not allowed) before the handler runs. Nothing is open unless a route says
// so: health, the collector (write keys) and the first-party tracker.
//
// Invariants: a password is never logged or put in an event; a token's
// secret is shown once and stored only as a SHA-256 hash; a session cookie
// is sealed (AES-GCM) and names a server-side record, so tampering and
// logout both end it.
package identity
