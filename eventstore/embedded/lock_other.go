//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package embedded

import (
	"fmt"
	"os"

	"github.com/keyledger/keyledger/eventstore"
)

// lockDir only creates the lock file on platforms without flock: there, two stores on
// one directory are not prevented, and the caller must make sure it never happens.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w: %w", path, eventstore.ErrUnavailable, err)
	}
	return f, nil
}

func unlockDir(f *os.File) error { return f.Close() }
