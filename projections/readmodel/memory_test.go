package readmodel_test

import (
	"errors"
	"testing"

	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/readmodel/readmodeltest"
)

func TestMemory(t *testing.T) {
	readmodeltest.Run(t, func(t *testing.T) readmodel.Store { return readmodel.NewMemory() })
}

// TestFencedRefusesEmbeddingWrapper: a wrapper that embeds a *Memory (and so its
// unexported methods) cannot be fenced, which would bypass the wrapper's own writes.
func TestFencedRefusesEmbeddingWrapper(t *testing.T) {
	wrapper := struct{ *readmodel.Memory }{readmodel.NewMemory()}
	if _, err := readmodel.Fenced(wrapper, "clients", 1); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("Fenced(wrapper of *Memory): %v, want ErrInvalid", err)
	}
	if _, err := readmodel.Fenced((*readmodel.Memory)(nil), "clients", 1); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("Fenced(nil *Memory): %v, want ErrInvalid", err)
	}
	if _, err := readmodel.Fenced((*readmodel.Redis)(nil), "clients", 1); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("Fenced(nil *Redis): %v, want ErrInvalid", err)
	}
}
