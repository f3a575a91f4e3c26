package models

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// Page sizes of the directory's lists.
const (
	// DefaultLimit is the page size when the caller gives none (limit 0).
	DefaultLimit = 50
	// MaxLimit is the largest page a caller may ask for.
	MaxLimit = 200
	// maxScan bounds the index members one List call reads when filters that no index
	// answers drop entries: a page may then come back with fewer items than asked (even
	// none) and a NextCursor that continues the scan.
	maxScan = 1000
	// filterChunk is how many members one index read asks for while filtering.
	filterChunk = 200
)

// ErrInvalidQuery is matched (errors.Is) by every QueryError.
var ErrInvalidQuery = errors.New("models: invalid query")

// Stable codes of QueryError: the API answers them as the problem's code (400).
const (
	CodeInvalidLimit  = "invalid_limit"
	CodeInvalidCursor = "invalid_cursor"
	CodeInvalidFilter = "invalid_filter"
)

// QueryError is a list request the directory refuses: a limit out of range, a filter
// value that cannot match by construction (an unknown purpose role), or a cursor that is
// malformed or was not issued for this very list (another list, tenant or filter).
// Nothing was read.
type QueryError struct {
	// Code is one of the Code constants above.
	Code string
	// Param is the request parameter at fault ("limit", "cursor", "role").
	Param  string
	Detail string
}

func (e *QueryError) Error() string { return e.Param + ": " + e.Detail }

// Is makes errors.Is(err, ErrInvalidQuery) true.
func (e *QueryError) Is(target error) bool { return target == ErrInvalidQuery }

// RecordMeta says what a record reflects: its aggregate's stream version (the API's
// ETag) and the log position of the event that wrote it.
type RecordMeta struct {
	Version  uint64
	Position eventstore.Position
}

// Page is one page of a list. NextCursor is empty on the last page; otherwise pass it
// back, with the same filters, for the next one. A page may hold fewer items than the
// limit (see maxScan) and still have a NextCursor.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// PurposeRole narrows a tenant's purposes to those it consumes or those it produces.
type PurposeRole string

// Purpose roles.
const (
	PurposeConsumer PurposeRole = "consumer"
	PurposeProducer PurposeRole = "producer"
)

// ClientFilter narrows ListClients; zero fields do not filter. NamePrefix matches the
// start of the name, case-insensitively.
type ClientFilter struct {
	Kind         client.Kind
	MemberUserID string
	PurposeID    string
	NamePrefix   string
}

// KeychainFilter narrows ListKeychains; zero fields do not filter.
type KeychainFilter struct {
	MemberUserID string
	NamePrefix   string
}

// EServiceFilter narrows ListEServices; zero fields do not filter.
type EServiceFilter struct {
	// Producer keeps the e-services of one producer tenant.
	Producer   string
	NamePrefix string
}

// PurposeFilter narrows ListPurposes; zero fields do not filter. TitlePrefix matches
// the start of the title, case-insensitively.
type PurposeFilter struct {
	Role        PurposeRole
	TitlePrefix string
}

// UserFilter narrows ListUsers; zero fields do not filter.
type UserFilter struct {
	NamePrefix string
}

// GetUser reads a user registered in tenantID.
func GetUser(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID, id string) (UserView, RecordMeta, bool, error) {
	return getRecord[UserView](ctx, store, ns, dirUserKey(tenantID, id), func(r dirRecord[UserView]) bool { return r.Tenant == tenantID })
}

// ListUsers lists the users of tenantID, by name then id.
func ListUsers(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID string, f UserFilter, cursor string, limit int) (Page[UserView], error) {
	q := listQuery{list: "users", index: idxUsers(tenantID), prefix: f.NamePrefix,
		key: func(id string) string { return dirUserKey(tenantID, id) }}
	return listPage[UserView](ctx, store, ns, q, nil, cursor, limit)
}

// GetTenant reads a tenant with its first administrator as registered now. Who may see
// it is the caller's decision (the operator any, a user their own).
func GetTenant(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, id string) (TenantView, RecordMeta, bool, error) {
	v, meta, ok, err := getRecord[TenantView](ctx, store, ns, dirTenantKey(id), nil)
	if err != nil || !ok {
		return v, meta, ok, err
	}
	admins, err := adminsOf(ctx, store, ns, []TenantView{v})
	return admins[0], meta, true, err
}

// ListTenants lists every tenant, by name then id, each with its first administrator as
// registered now (for the operator).
func ListTenants(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, namePrefix, cursor string, limit int) (Page[TenantView], error) {
	q := listQuery{list: "tenants", index: idxTenants, prefix: namePrefix, key: dirTenantKey}
	p, err := listPage[TenantView](ctx, store, ns, q, nil, cursor, limit)
	if err != nil {
		return p, err
	}
	p.Items, err = adminsOf(ctx, store, ns, p.Items)
	return p, err
}

// adminsOf replaces each tenant's administrator, as named at the tenant's creation, by
// that user as registered now, where they still are; one GetMany for all.
func adminsOf(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, ts []TenantView) ([]TenantView, error) {
	if len(ts) == 0 {
		return ts, nil
	}
	keys := make([]string, len(ts))
	for i, t := range ts {
		keys[i] = dirUserKey(t.ID, t.Admin.ID)
	}
	vals, err := store.GetMany(ctx, ns, keys)
	if err != nil {
		return nil, err
	}
	for i, val := range vals {
		if val == nil {
			continue
		}
		r, err := decodeRecord[UserView](keys[i], val)
		if err != nil {
			return nil, err
		}
		ts[i].Admin = r.View
	}
	return ts, nil
}

// GetClient reads a client of tenantID; another tenant's client is not found.
func GetClient(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID, id string) (ClientView, RecordMeta, bool, error) {
	return getRecord[ClientView](ctx, store, ns, dirClientKey(id), func(r dirRecord[ClientView]) bool { return r.Tenant == tenantID })
}

// ListClients lists the clients of tenantID, by name then id. It reads the most
// selective index the filter names (purpose, then member, then kind) and checks the
// other fields on the clients read.
func ListClients(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID string, f ClientFilter, cursor string, limit int) (Page[ClientView], error) {
	q := listQuery{list: "clients", index: idxClients(tenantID), prefix: f.NamePrefix,
		filters: []string{string(f.Kind), f.MemberUserID, f.PurposeID}, key: dirClientKey}
	var checks []func(ClientView) bool
	indexed := false
	if f.PurposeID != "" {
		q.index, indexed = idxClientsByPurpose(tenantID, f.PurposeID), true
	}
	if f.MemberUserID != "" {
		if indexed {
			checks = append(checks, func(c ClientView) bool { return hasMember(c.Members, f.MemberUserID) })
		} else {
			q.index, indexed = idxClientsByMember(tenantID, f.MemberUserID), true
		}
	}
	if f.Kind != "" {
		if indexed {
			checks = append(checks, func(c ClientView) bool { return c.Kind == f.Kind })
		} else {
			q.index = idxClientsByKind(tenantID, f.Kind)
		}
	}
	return listPage(ctx, store, ns, q, allOf(checks), cursor, limit)
}

// GetKeychain reads a keychain of tenantID; another tenant's keychain is not found.
func GetKeychain(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID, id string) (KeychainView, RecordMeta, bool, error) {
	return getRecord[KeychainView](ctx, store, ns, dirKeychainKey(id), func(r dirRecord[KeychainView]) bool { return r.Tenant == tenantID })
}

// ListKeychains lists the keychains of tenantID, by name then id.
func ListKeychains(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID string, f KeychainFilter, cursor string, limit int) (Page[KeychainView], error) {
	q := listQuery{list: "keychains", index: idxKeychains(tenantID), prefix: f.NamePrefix,
		filters: []string{f.MemberUserID}, key: dirKeychainKey}
	if f.MemberUserID != "" {
		q.index = idxKeychainsByMember(tenantID, f.MemberUserID)
	}
	return listPage[KeychainView](ctx, store, ns, q, nil, cursor, limit)
}

// GetClientKey reads one key of a client of tenantID with its JWK, in one round trip.
// It fails with domain.ErrNotFound when the tenant has no such client and with
// keyring.ErrKeyNotFound when the client has no such key.
func GetClientKey(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID, id, kid string) (KeyView, RecordMeta, error) {
	return getOwnerKey(ctx, store, ns, OwnerClient, dirClientKey(id), tenantID, id, kid,
		func(c ClientView) []KeyView { return c.Keys })
}

// GetKeychainKey is GetClientKey for a keychain.
func GetKeychainKey(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID, id, kid string) (KeyView, RecordMeta, error) {
	return getOwnerKey(ctx, store, ns, OwnerKeychain, dirKeychainKey(id), tenantID, id, kid,
		func(k KeychainView) []KeyView { return k.Keys })
}

func getOwnerKey[T any](ctx context.Context, store readmodel.Store, ns readmodel.Namespace, kind OwnerKind, key, tenantID, id, kid string,
	keysOf func(T) []KeyView) (KeyView, RecordMeta, error) {
	jwkKey := dirJWKKey(kind, id, kid)
	vals, err := store.GetMany(ctx, ns, []string{key, jwkKey})
	if err != nil {
		return KeyView{}, RecordMeta{}, err
	}
	if vals[0] == nil {
		return KeyView{}, RecordMeta{}, domain.ErrNotFound
	}
	r, err := decodeRecord[T](key, vals[0])
	if err != nil {
		return KeyView{}, RecordMeta{}, err
	}
	if r.Tenant != tenantID {
		return KeyView{}, RecordMeta{}, domain.ErrNotFound
	}
	meta, err := r.meta(key)
	if err != nil {
		return KeyView{}, meta, err
	}
	i := slices.IndexFunc(keysOf(r.View), func(k KeyView) bool { return k.KID == kid })
	if i < 0 || vals[1] == nil {
		return KeyView{}, meta, keyring.ErrKeyNotFound
	}
	kv := keysOf(r.View)[i]
	kv.JWK = json.RawMessage(vals[1])
	return kv, meta, nil
}

// GetEService reads an e-service of the public catalogue (any tenant may).
func GetEService(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, id string) (EServiceView, RecordMeta, bool, error) {
	return getRecord[EServiceView](ctx, store, ns, dirEServiceKey(id), nil)
}

// ListEServices lists the catalogue, by name then id: every e-service, or one
// producer's.
func ListEServices(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, f EServiceFilter, cursor string, limit int) (Page[EServiceView], error) {
	q := listQuery{list: "eservices", index: idxEServices, prefix: f.NamePrefix, filters: []string{f.Producer}, key: dirEServiceKey}
	if f.Producer != "" {
		q.index = idxEServicesByProducer(f.Producer)
	}
	return listPage[EServiceView](ctx, store, ns, q, nil, cursor, limit)
}

// GetPurpose reads a purpose that tenantID consumes or produces; any other is not
// found.
func GetPurpose(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID, id string) (PurposeView, RecordMeta, bool, error) {
	return getRecord[PurposeView](ctx, store, ns, dirPurposeKey(id), func(r dirRecord[PurposeView]) bool {
		return r.View.Consumer == tenantID || r.View.Producer == tenantID
	})
}

// ListPurposes lists the purposes tenantID consumes or produces (or, with a Role, only
// those), by title then id.
func ListPurposes(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, tenantID string, f PurposeFilter, cursor string, limit int) (Page[PurposeView], error) {
	q := listQuery{list: "purposes", index: idxPurposes(tenantID), prefix: f.TitlePrefix, filters: []string{string(f.Role)}, key: dirPurposeKey}
	switch f.Role {
	case "":
	case PurposeConsumer, PurposeProducer:
		q.index = idxPurposesAs(tenantID, f.Role)
	default:
		return Page[PurposeView]{}, &QueryError{Code: CodeInvalidFilter, Param: "role", Detail: `"consumer" or "producer"`}
	}
	return listPage[PurposeView](ctx, store, ns, q, nil, cursor, limit)
}

func hasMember(ms []MemberView, userID string) bool {
	return slices.ContainsFunc(ms, func(m MemberView) bool { return m.UserID == userID })
}

// allOf is the conjunction of checks (nil when there is none).
func allOf[T any](checks []func(T) bool) func(T) bool {
	if len(checks) == 0 {
		return nil
	}
	return func(v T) bool {
		for _, c := range checks {
			if !c(v) {
				return false
			}
		}
		return true
	}
}

// getRecord reads one record; visible, when not nil, says whether the caller may see it
// (a record it may not see is not found).
func getRecord[T any](ctx context.Context, store readmodel.Store, ns readmodel.Namespace, key string, visible func(dirRecord[T]) bool) (T, RecordMeta, bool, error) {
	var zero T
	data, ok, err := store.Get(ctx, ns, key)
	if err != nil || !ok {
		return zero, RecordMeta{}, false, err
	}
	r, err := decodeRecord[T](key, data)
	if err != nil {
		return zero, RecordMeta{}, false, err
	}
	if visible != nil && !visible(r) {
		return zero, RecordMeta{}, false, nil
	}
	meta, err := r.meta(key)
	if err != nil {
		return zero, RecordMeta{}, false, err
	}
	return r.View, meta, true, nil
}

func decodeRecord[T any](key string, data []byte) (dirRecord[T], error) {
	var r dirRecord[T]
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%w: %s: %v", readmodel.ErrCorrupt, key, err)
	}
	return r, nil
}

func (r dirRecord[T]) meta(key string) (RecordMeta, error) {
	pos, err := eventstore.ParsePosition(r.Position)
	if err != nil {
		return RecordMeta{}, fmt.Errorf("%w: %s: %v", readmodel.ErrCorrupt, key, err)
	}
	return RecordMeta{Version: r.Version, Position: pos}, nil
}

// listQuery is one list request as the generic pager sees it.
type listQuery struct {
	// list names the list ("clients"); with index, prefix and filters it identifies the
	// request a cursor belongs to.
	list string
	// index is the index read; its members are sortMembers.
	index string
	// prefix keeps the members whose name starts with it (case-insensitively).
	prefix string
	// filters are the request's other filter values, in a fixed order.
	filters []string
	// key is the record key of an id.
	key func(id string) string
}

// fingerprint identifies the request, so that a cursor is honoured only by the request
// it was issued for. It is a hash: a cursor does not disclose the filters.
func (q listQuery) fingerprint() string {
	h := sha256.New()
	for _, part := range append([]string{q.list, q.index, sortKey(q.prefix)}, q.filters...) {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// cursorVersion is the layout version of cursors: a cursor of another layout is refused.
const cursorVersion = 1

type cursorData struct {
	V     int    `json:"v"`
	Query string `json:"q"`
	After string `json:"a"`
}

func encodeCursor(q listQuery, after string) string {
	b, _ := json.Marshal(cursorData{V: cursorVersion, Query: q.fingerprint(), After: after})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the member a cursor continues after.
func decodeCursor(q listQuery, cursor string) (string, error) {
	bad := func(detail string) error {
		return &QueryError{Code: CodeInvalidCursor, Param: "cursor", Detail: detail}
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", bad("not a cursor this API issued")
	}
	var c cursorData
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.V != cursorVersion || c.After == "" {
		return "", bad("not a cursor this API issued")
	}
	if c.Query != q.fingerprint() {
		return "", bad("the cursor belongs to another list or other filters; start again without it")
	}
	return c.After, nil
}

// checkLimit applies the default and the bounds of a page size.
func checkLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 0 || limit > MaxLimit:
		return 0, &QueryError{Code: CodeInvalidLimit, Param: "limit", Detail: fmt.Sprintf("limit must be 1 to %d", MaxLimit)}
	}
	return limit, nil
}

// listPage reads one page of q: index members in order from the cursor (or from the
// name prefix) and their records, in one GetMany per index read, keeping those keep
// accepts (nil: all). Without keep a page costs one Range and one GetMany; with it,
// reads go on until the page is full, the index ends or maxScan members were read.
func listPage[T any](ctx context.Context, store readmodel.Store, ns readmodel.Namespace, q listQuery, keep func(T) bool,
	cursor string, limit int) (Page[T], error) {
	page := Page[T]{Items: []T{}}
	limit, err := checkLimit(limit)
	if err != nil {
		return page, err
	}
	prefix := sortKey(q.prefix)
	after := prefix // the last member dealt with: the next page starts after it
	if cursor != "" {
		if after, err = decodeCursor(q, cursor); err != nil {
			return page, err
		}
	}
	chunk := limit + 1 // one member past the page tells that another page follows
	if keep != nil {
		chunk = max(chunk, filterChunk)
	}
	for scanned := 0; scanned < maxScan; {
		members, err := store.Range(ctx, ns, q.index, after, chunk)
		if err != nil {
			return page, err
		}
		ended := len(members) < chunk
		if i := slices.IndexFunc(members, func(m string) bool { return !strings.HasPrefix(m, prefix) }); i >= 0 {
			members, ended = members[:i], true
		}
		scanned += len(members)
		fetch := members
		if keep == nil {
			fetch = members[:min(len(members), limit-len(page.Items))]
		}
		vals, keys, err := fetchRecords(ctx, store, ns, q, fetch)
		if err != nil {
			return page, err
		}
		for i, m := range fetch {
			if vals[i] != nil { // nil: removed between the two reads
				r, err := decodeRecord[T](keys[i], vals[i])
				if err != nil {
					return page, err
				}
				if keep == nil || keep(r.View) {
					if len(page.Items) == limit {
						page.NextCursor = encodeCursor(q, after)
						return page, nil
					}
					page.Items = append(page.Items, r.View)
				}
			}
			after = m
		}
		if len(fetch) < len(members) {
			page.NextCursor = encodeCursor(q, after)
			return page, nil
		}
		if ended {
			return page, nil
		}
	}
	page.NextCursor = encodeCursor(q, after)
	return page, nil
}

// fetchRecords reads the records of index members in one GetMany (none for none).
func fetchRecords(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, q listQuery, members []string) ([][]byte, []string, error) {
	if len(members) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = q.key(memberID(m))
	}
	vals, err := store.GetMany(ctx, ns, keys)
	return vals, keys, err
}
