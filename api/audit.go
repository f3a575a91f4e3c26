package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/voucher"
)

func (s *Server) auditRoutes() {
	s.handle(http.MethodGet, "/v1/clients/:id/history/vouchers", TenantReader, s.voucherAudit)
	s.handle(http.MethodGet, "/v1/clients/:id/keys/:kid/history/vouchers", TenantReader, s.voucherAudit)
}

// voucherAuditItem is one issued voucher as its audit event recorded it.
type voucherAuditItem struct {
	Position   string    `json:"position"`
	RecordedAt time.Time `json:"recordedAt"`
	voucher.AuditRecord
}

// voucherAudit lists the vouchers issued to a client of the caller's tenant (or those
// obtained with one of its keys), newest first. A client of another tenant, or one that
// never obtained a voucher, has an empty list.
func (s *Server) voucherAudit(c echo.Context) error {
	q, err := s.read(c, models.AuditModel, listParams()...)
	if err != nil {
		return err
	}
	// Another tenant's client does not exist for the caller; a deleted client's audit
	// stays readable.
	first, err := s.deps.Commands.Store().ReadStream(q.ctx(), client.StreamName(c.Param("id")), eventstore.Forwards, 0, 1)
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		return err
	}
	if len(first) == 0 || first[0].Meta.Tenant != actorFrom(c).Tenant {
		return domain.ErrNotFound
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	page, err := voucher.ListAudit(q.ctx(), q.store, q.ns, s.deps.Commands.Store(), models.AuditQuery{
		Tenant: actorFrom(c).Tenant, ClientID: c.Param("id"), KID: c.Param("kid"), Limit: limit, Cursor: c.QueryParam("cursor")})
	if err != nil {
		return err
	}
	out := models.Page[voucherAuditItem]{Items: make([]voucherAuditItem, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, e := range page.Items {
		out.Items = append(out.Items, voucherAuditItem{Position: e.Position.String(), RecordedAt: e.RecordedAt, AuditRecord: e.Record})
	}
	return c.JSON(http.StatusOK, out)
}
