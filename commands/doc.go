// Package commands holds one file per command (the command type and its handler), the
// load → decide → append helper with its single retry-on-conflict loop, and the
// uniqueness reservations. Handlers append to the event store; nothing else is written.
package commands
