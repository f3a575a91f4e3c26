package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keyledger/keyledger/eventstore"
)

// storageErr translates an error from SQLite into the port's errors, naming the data
// file: a full disk or file-size limit becomes ErrStorageFull, a damaged or foreign file
// ErrCorrupt, anything else (I/O, permissions, locks) ErrUnavailable. The SQLite error
// stays in the chain for logs and errors.As.
func (s *Store) storageErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	var what string
	var se *sqlite.Error
	switch {
	case errors.As(err, &se):
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			sentinel, what = eventstore.ErrStorageFull, "no space left for"
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			sentinel, what = eventstore.ErrCorrupt, "damaged"
		default:
			sentinel, what = eventstore.ErrUnavailable, "failed"
		}
	case isDBClosed(err):
		return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	default:
		sentinel, what = eventstore.ErrUnavailable, "failed"
	}
	return fmt.Errorf("%s: data file %s %s: %w: %w", op, s.path, what, sentinel, err)
}

// readErr is storageErr for reads: a read cut short by its context reports the context's
// error, and one cut short by Close reports ErrClosed, so that neither is mistaken for a
// storage failure (nor, ever, for the end of the data).
func (s *Store) readErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isInterrupt(err)) {
		return ctx.Err()
	}
	if s.isClosed() {
		return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	return s.storageErr(op, err)
}

func isDBClosed(err error) bool {
	// database/sql does not export its "database is closed" error.
	return err != nil && strings.Contains(err.Error(), "sql: database is closed")
}

func isInterrupt(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_INTERRUPT
}
