//go:build !unix

package app

import "errors"

// LockFile is the file in data_dir that the running Ops holds locked.
const LockFile = "ops.lock"

// ErrDataDirInUse is Run on a data directory another Ops holds.
var ErrDataDirInUse = errors.New("data directory in use")

// lockDataDir does nothing here: there is no flock. Two processes must
// not share a data directory.
func lockDataDir(string) (func(), error) { return func() {}, nil }
