package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/runner"
)

// CodeRevocationPending is the code of a 202 answer: the revocation is recorded, but a
// read model that grants access has not applied it yet.
const CodeRevocationPending = "revocation_pending"

// pendingRevocation is the body of a 202 answer to a revoking command.
type pendingRevocation struct {
	Code     string   `json:"code"`
	Detail   string   `json:"detail"`
	Position string   `json:"position"`
	Pending  []string `json:"pendingReadModels"`
}

// Read models that grant access, by what a revocation takes away.
var (
	grantsClient   = []string{models.VoucherModel, models.KeysModel}
	grantsKeychain = []string{models.KeysModel}
	grantsPurpose  = []string{models.VoucherModel}
)

// grantsOf returns the read models that grant access through an owner's keys.
func grantsOf(o commands.Owner) []string {
	if o.Name() == commands.Keychains.Name() {
		return grantsKeychain
	}
	return grantsClient
}

// awaitRevocation holds the answer of a command that revokes access (a key, a client, a
// purpose link, a purpose, an e-service) until every read model in grants has applied
// it, so that "revoked" holds from the moment the API says so; the caller then answers
// as usual. If that takes longer than Deps.RevocationWait, it answers 202 Accepted with
// the position itself and returns true: the change is recorded and will take effect,
// but may not have yet. A read model with no generation to serve (being built) grants
// nothing, so it does not hold the answer back: the generation it will serve is built
// from a log that holds the revocation.
func (s *Server) awaitRevocation(c echo.Context, res commands.Result, grants ...string) (bool, error) {
	if res.Changed && s.deps.Reads != nil && !res.Position.IsZero() {
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.deps.RevocationWait)
		defer cancel()
		var pending []string
		for _, model := range grants {
			if _, err := s.deps.Reads.At(ctx, model, res.Position); err != nil && !errors.Is(err, runner.ErrNotReady) {
				pending = append(pending, model)
				s.deps.Logger.WarnContext(c.Request().Context(), "revocation not applied within the bound",
					"read_model", model, "position", res.Position.String(), "error", err.Error())
			}
		}
		if len(pending) > 0 {
			h := c.Response().Header()
			h.Set(HeaderPosition, res.Position.String())
			h.Set("ETag", etag(res.Version))
			return true, c.JSON(http.StatusAccepted, pendingRevocation{Code: CodeRevocationPending,
				Detail: "the revocation is recorded but not yet applied by every read model that grants access; " +
					"it takes effect when they reach the position (read with Keyledger-Min-Position to wait for it)",
				Position: res.Position.String(), Pending: pending})
		}
	}
	return false, nil
}

// awaitGrant holds the answer of a command that grants access (a key uploaded, a
// purpose linked or activated, an e-service activated, a client created with keys) until
// the read models in grants have applied it, bounded by Deps.RevocationWait, so that a
// caller who gets the answer can use the grant at once (upload a key, then ask for a
// voucher). Unlike a revocation, a grant not applied in time changes nothing in the
// answer: it takes effect within moments, and the answer's Keyledger-Position says when.
func (s *Server) awaitGrant(c echo.Context, res commands.Result, grants ...string) {
	if !res.Changed || s.deps.Reads == nil || res.Position.IsZero() {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.deps.RevocationWait)
	defer cancel()
	for _, model := range grants {
		if _, err := s.deps.Reads.At(ctx, model, res.Position); err != nil && !errors.Is(err, runner.ErrNotReady) {
			s.deps.Logger.DebugContext(c.Request().Context(), "grant not applied within the bound",
				"read_model", model, "position", res.Position.String(), "error", err.Error())
		}
	}
}
