package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Names of the voucher-audit index (see the voucher model's names for their roles).
const (
	AuditModel   = "audit"
	AuditVersion = "audit.v1"
	AuditGroup   = "projection.audit.v1"
)

// The audit log's wire names. They are declared here, not in package voucher (which
// writes the log and re-exports them), because voucher imports this package: the read
// model must name the streams it reads without importing their writer.
const (
	// AuditStreamPrefix starts the name of every voucher-audit stream (one per UTC day,
	// "voucheraudit-20261124"). No aggregate's stream prefix ("client-", "kid-", …) is a
	// prefix of it, and it is a prefix of no aggregate stream, so a subscription filter on
	// it selects the audit log alone. Renaming it orphans the audit written so far.
	AuditStreamPrefix = "voucheraudit-"
	// AuditEventType is the store type of an issued voucher's audit event, whose data is
	// voucher.AuditRecord's JSON.
	AuditEventType = "voucher.issued.v1"
)

// VoucherIssued is the part of an audit event's data (voucher.AuditRecord) that the
// index reads: the handler decodes this and ignores the rest. Its JSON names must stay
// those of voucher.AuditRecord (a test in package voucher checks it).
type VoucherIssued struct {
	VoucherJTI string `json:"voucherJti"`
	ClientID   string `json:"clientId"`
	Tenant     string `json:"tenant"`
	KID        string `json:"kid"`
}

// EventType is the audit event's store type.
func (VoucherIssued) EventType() string { return AuditEventType }

// Audit is the voucher-audit index: the group AuditGroup reads the audit streams and
// lists each issued voucher under its client and under its (client, kid), newest first.
//
// The index holds references, not records: a member is the event's log position (for
// the order), its stream and its stream version (to read it back), about 50 bytes, so
// that Redis stays small however many vouchers are issued; ListVoucherAudit reads the
// records from the event store. Nothing is ever removed: the index grows with the audit
// log (one member per voucher in each of its two lists).
var Audit = Definition{
	Model:    AuditModel,
	Version:  AuditVersion,
	Group:    AuditGroup,
	Filter:   eventstore.Filter{StreamPrefixes: []string{AuditStreamPrefix}},
	Handlers: auditHandlers,
}

// Index names: '/' separates the parts, since ids may hold ':' but not '/'. The tenant
// is part of the name, so another tenant's list of the same client is another (empty)
// index.
func auditByClient(tenant, clientID string) string {
	return "audit-client/" + tenant + "/" + clientID
}

func auditByKID(tenant, clientID, kid string) string {
	return "audit-kid/" + tenant + "/" + clientID + "/" + kid
}

// ValidAuditID reports whether s may name a tenant, client or key in the audit index:
// 1 to 256 bytes of printable ASCII without '/' (the index names' separator) or space.
// The audit writer refuses records whose ids fail it, so the index never has to.
func ValidAuditID(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return false
		}
	}
	return true
}

// auditRef is what a member of an audit index refers to.
type auditRef struct {
	pos     eventstore.Position
	stream  string
	version uint64
}

// member encodes the reference so that members sort newest first: the position's
// commit and prepare parts, each subtracted from 2^64-1, as 16 hex digits (a later
// position sorts first), then ':' stream suffix ':' version. Only printable ASCII, so a
// cursor holds it verbatim.
func (r auditRef) member() string {
	var b strings.Builder
	b.Grow(34 + len(r.stream) + 20)
	for _, v := range []uint64{^r.pos.Commit, ^r.pos.Prepare} {
		s := strconv.FormatUint(v, 16)
		b.WriteString(strings.Repeat("0", 16-len(s)))
		b.WriteString(s)
	}
	b.WriteByte(':')
	b.WriteString(strings.TrimPrefix(r.stream, AuditStreamPrefix))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(r.version, 10))
	return b.String()
}

func parseAuditMember(m string) (auditRef, error) {
	bad := fmt.Errorf("%w: audit index member %q", readmodel.ErrCorrupt, m)
	if len(m) < 36 || m[32] != ':' {
		return auditRef{}, bad
	}
	commit, err1 := strconv.ParseUint(m[:16], 16, 64)
	prepare, err2 := strconv.ParseUint(m[16:32], 16, 64)
	rest := m[33:]
	i := strings.LastIndexByte(rest, ':')
	if err1 != nil || err2 != nil || i <= 0 {
		return auditRef{}, bad
	}
	version, err := strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil {
		return auditRef{}, bad
	}
	return auditRef{pos: eventstore.Position{Commit: ^commit, Prepare: ^prepare},
		stream: AuditStreamPrefix + rest[:i], version: version}, nil
}

func auditHandlers(deps Deps, ns readmodel.Namespace) []cqrs.GroupEventHandler {
	p := projector{store: deps.Store, ns: ns}
	return []cqrs.GroupEventHandler{
		on(p, func(_ context.Context, ev source.Event, e *VoucherIssued, b *readmodel.Batch) error {
			for _, id := range []string{e.Tenant, e.ClientID, e.KID} {
				if !ValidAuditID(id) {
					return inconsistent("audit event %s has tenant %q, client %q, kid %q: each must be 1 to 256 printable characters without '/'",
						ev.ID, e.Tenant, e.ClientID, e.KID)
				}
			}
			if len(ev.Stream) == len(AuditStreamPrefix) {
				return inconsistent("audit event %s is in stream %q, which has nothing after the prefix", ev.ID, ev.Stream)
			}
			m := auditRef{pos: ev.Position, stream: ev.Stream, version: ev.Version}.member()
			b.IndexAdd(auditByClient(e.Tenant, e.ClientID), m)
			b.IndexAdd(auditByKID(e.Tenant, e.ClientID, e.KID), m)
			return nil
		}),
	}
}

// AuditQuery asks for the audit of one client's vouchers, or of those signed with one of
// its keys.
type AuditQuery struct {
	// Tenant is the caller's tenant (required): only the audit of vouchers issued to a
	// client of this tenant is listed; any other client's list is empty.
	Tenant string
	// ClientID is the client (required).
	ClientID string
	// KID, when set, keeps the vouchers whose assertion the client signed with this key.
	KID string
	// Limit is the page size: 0 for DefaultLimit, at most MaxLimit.
	Limit int
	// Cursor is the previous page's NextCursor ("" for the first page); it is honoured
	// only with the same tenant, client and kid.
	Cursor string
}

// AuditEntry is one issued voucher's audit event. It is not a DTO: the API shapes its
// own answer.
type AuditEntry struct {
	// Stream and Version locate the event in the log.
	Stream  string
	Version uint64
	// Position is the event's global position, RecordedAt the time the store recorded it.
	Position   eventstore.Position
	RecordedAt time.Time
	// Record is the event's data verbatim: voucher.AuditRecord's JSON (voucher.ListAudit
	// decodes it).
	Record json.RawMessage
}

// auditReadConcurrency bounds the event-store reads one page runs at once.
const auditReadConcurrency = 8

// ListVoucherAudit lists the audit events of q's client (and key), newest first (by log
// position), one page at a time: one Range on the index, then one event-store read per
// item (ReadStream of one event, at most auditReadConcurrency at a time).
//
// It answers a *QueryError (code invalid_limit, invalid_cursor or invalid_filter for a
// missing tenant or client) for a request it refuses. The index names the tenant, so
// another tenant's client has an empty list; every event read back is checked against
// the query (type, version, tenant, client, kid) as well, and one that does not match —
// or a reference to an event the log does not hold (a log replaced under a kept read
// model) — fails the whole call with readmodel.ErrCorrupt rather than be shown or
// silently dropped. Event-store failures are returned wrapped (eventstore.ErrUnavailable,
// …).
//
// ns must be a generation of the audit model that has reached whatever position the
// caller needs (runner.Reader.At): the index only lists events it has applied.
func ListVoucherAudit(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, events eventstore.Store, q AuditQuery) (Page[AuditEntry], error) {
	page := Page[AuditEntry]{Items: []AuditEntry{}}
	switch {
	case !ValidAuditID(q.Tenant):
		return page, &QueryError{Code: CodeInvalidFilter, Param: "tenant", Detail: "a tenant is required"}
	case !ValidAuditID(q.ClientID):
		return page, &QueryError{Code: CodeInvalidFilter, Param: "clientId", Detail: "a well-formed client id is required"}
	case q.KID != "" && !ValidAuditID(q.KID):
		return page, &QueryError{Code: CodeInvalidFilter, Param: "kid", Detail: "not a well-formed key id"}
	}
	limit, err := checkLimit(q.Limit)
	if err != nil {
		return page, err
	}
	lq := listQuery{list: "voucher-audit", index: auditByClient(q.Tenant, q.ClientID), filters: []string{q.Tenant, q.ClientID, q.KID}}
	if q.KID != "" {
		lq.index = auditByKID(q.Tenant, q.ClientID, q.KID)
	}
	after := ""
	if q.Cursor != "" {
		if after, err = decodeCursor(lq, q.Cursor); err != nil {
			return page, err
		}
	}
	members, err := store.Range(ctx, ns, lq.index, after, limit+1)
	if err != nil {
		return page, err
	}
	more := len(members) > limit
	members = members[:min(len(members), limit)]
	refs := make([]auditRef, len(members))
	for i, m := range members {
		if refs[i], err = parseAuditMember(m); err != nil {
			return page, err
		}
	}
	items, err := readAuditEvents(ctx, events, refs, q)
	if err != nil {
		return page, err
	}
	page.Items = items
	if more {
		page.NextCursor = encodeCursor(lq, members[len(members)-1])
	}
	return page, nil
}

// readAuditEvents reads the referenced events, a few at a time, and checks each against
// its reference and the query.
func readAuditEvents(ctx context.Context, events eventstore.Store, refs []auditRef, q AuditQuery) ([]AuditEntry, error) {
	out := make([]AuditEntry, len(refs))
	errs := make([]error, len(refs))
	sem := make(chan struct{}, auditReadConcurrency)
	var wg sync.WaitGroup
	for i, ref := range refs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = readAuditEvent(ctx, events, ref, q)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readAuditEvent(ctx context.Context, events eventstore.Store, ref auditRef, q AuditQuery) (AuditEntry, error) {
	evs, err := events.ReadStream(ctx, ref.stream, eventstore.Forwards, ref.version, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		evs, err = nil, nil
	}
	if err != nil {
		return AuditEntry{}, fmt.Errorf("read audit event %s@%d: %w", ref.stream, ref.version, err)
	}
	if len(evs) == 0 || evs[0].Version != ref.version {
		return AuditEntry{}, fmt.Errorf("%w: the audit index refers to %s@%d, which the event store does not hold", readmodel.ErrCorrupt, ref.stream, ref.version)
	}
	ev := evs[0]
	var rec VoucherIssued
	if ev.Type != AuditEventType {
		return AuditEntry{}, fmt.Errorf("%w: the audit index refers to %s@%d, a %s event", readmodel.ErrCorrupt, ref.stream, ref.version, ev.Type)
	}
	if err := json.Unmarshal(ev.Data, &rec); err != nil {
		return AuditEntry{}, fmt.Errorf("%w: audit event %s@%d: %v", readmodel.ErrCorrupt, ref.stream, ref.version, err)
	}
	if rec.Tenant != q.Tenant || rec.ClientID != q.ClientID || (q.KID != "" && rec.KID != q.KID) {
		return AuditEntry{}, fmt.Errorf("%w: the audit index lists %s@%d under another client or key than the event's", readmodel.ErrCorrupt, ref.stream, ref.version)
	}
	return AuditEntry{Stream: ev.Stream, Version: ev.Version, Position: ref.pos, RecordedAt: ev.RecordedAt, Record: ev.Data}, nil
}
