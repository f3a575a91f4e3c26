package readmodel_test

import (
	"testing"

	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/readmodel/readmodeltest"
)

func TestMemory(t *testing.T) {
	readmodeltest.Run(t, func(t *testing.T) readmodel.Store { return readmodel.NewMemory() })
}
