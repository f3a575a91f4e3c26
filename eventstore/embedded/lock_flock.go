//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package embedded

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/keyledger/keyledger/eventstore"
)

// lockDir takes an exclusive, non-blocking flock on the lock file. The store keeps its
// version cache and sequence counter in memory, so a second writer on the same file
// would corrupt the log's order; the lock turns that into an error at Open.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w: %w", path, eventstore.ErrUnavailable, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock file %s is held: the data directory is in use by another store: %w", path, eventstore.ErrUnavailable)
		}
		return nil, fmt.Errorf("lock file %s: %w: %w", path, eventstore.ErrUnavailable, err)
	}
	return f, nil
}

func unlockDir(f *os.File) error {
	// Closing the descriptor releases the flock.
	return f.Close()
}
