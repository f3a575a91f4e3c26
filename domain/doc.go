// Package domain holds Keyledger's aggregates (one sub-package each), their events and
// invariants, key parsing and thumbprints. It is pure Go: no I/O, no clock or random
// source of its own, and no infrastructure import (TestDomainImportsNoInfrastructure
// fails the build of the suite otherwise).
package domain
