//go:build unix

package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in data_dir that the running Ops holds locked.
const LockFile = "ops.lock"

// ErrDataDirInUse is Run on a data directory another Ops holds.
var ErrDataDirInUse = errors.New("data directory in use")

// lockDataDir takes an exclusive lock on dir before anything in it is
// opened: two processes on one directory corrupt each other's streams
// and lose acknowledged events. The lock (flock) ends with the process,
// however it ends; the file keeps the holder's PID for the message a
// second process prints.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			holder := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(holder); perr != nil || holder == "" {
				holder = "unknown"
			}
			return nil, fmt.Errorf("%w: another Ops (pid %s) is using %s; stop it, or give this one its own --data-dir", ErrDataDirInUse, holder, dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	_ = f.Sync()
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
