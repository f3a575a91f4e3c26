package models

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/jsondec"
	"github.com/keyledger/keyledger/internal/memo"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Names of the voucher read model. VoucherGroup is the router's handler group (and
// checkpoint topic); VoucherVersion is the generation DefaultNamespaces uses: bump it
// whenever the entry's layout or meaning changes, and the model is rebuilt into a new
// generation.
const (
	VoucherModel   = "voucher"
	VoucherVersion = "voucher.v2"
	VoucherGroup   = "projection.voucher.v1"
)

// EServiceState is an e-service's state as the voucher path sees it.
type EServiceState string

// E-service states.
const (
	EServiceActive    EServiceState = "active"
	EServiceSuspended EServiceState = "suspended"
)

// VoucherEntry is everything the token endpoint needs to answer one request, in one
// value: the key the client assertion must be signed with and the state of everything
// the voucher depends on.
//
// There is one entry per (client, kid, purpose) for e-service clients — under
// "entry:<clientID>:<kid>:<purposeID>", for every purpose linked to the client — and one
// per (client, kid) for API clients, under "entry:<clientID>:<kid>". An entry exists
// exactly while the key is registered on the client and (e-service clients) the purpose
// is linked to it. A linked purpose that is not active, or an e-service that is
// suspended, keeps its entries with the state recorded, so that the token endpoint can
// refuse with a precise reason: a caller must check Refusal before issuing anything.
type VoucherEntry struct {
	ClientID   string      `json:"clientId"`
	ClientKind client.Kind `json:"clientKind"`
	// Tenant is the client's (the consumer's) tenant.
	Tenant string `json:"tenant"`
	KID    string `json:"kid"`
	// PEM is the public key the client assertion must verify with.
	PEM string `json:"pem"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// Roles are an API client's roles in its tenant, carried by its vouchers; empty for
	// e-service clients.
	Roles []string `json:"roles,omitempty"`
	// PurposeID and the fields below are empty for API clients.
	PurposeID     string        `json:"purposeId,omitempty"`
	PurposeState  purpose.State `json:"purposeState,omitempty"`
	EServiceID    string        `json:"eserviceId,omitempty"`
	EServiceState EServiceState `json:"eserviceState,omitempty"`
	// Audience is the e-service's aud claim; VoucherLifetimeSeconds its vouchers' life.
	Audience               string `json:"audience,omitempty"`
	VoucherLifetimeSeconds int    `json:"voucherLifetimeSeconds,omitempty"`
	// Position is the log position (eventstore.Position.String) of the event that last
	// wrote the entry: the entry reflects the log up to there.
	Position string `json:"position"`
}

// Refusal codes of VoucherEntry.Refusal.
const (
	RefusePurposePending    = "purpose_pending"
	RefusePurposeSuspended  = "purpose_suspended"
	RefusePurposeArchived   = "purpose_archived"
	RefusePurposeNotActive  = "purpose_not_active"
	RefuseEServiceSuspended = "eservice_suspended"
)

// Refusal returns "" when the entry allows a voucher, and otherwise the reason it does
// not (one of the Refuse constants). The purpose is checked before the e-service.
func (e VoucherEntry) Refusal() string {
	if e.ClientKind != client.KindEService {
		return ""
	}
	switch e.PurposeState {
	case purpose.StateActive:
	case purpose.StatePending:
		return RefusePurposePending
	case purpose.StateSuspended:
		return RefusePurposeSuspended
	case purpose.StateArchived:
		return RefusePurposeArchived
	default:
		return RefusePurposeNotActive
	}
	if e.EServiceState != EServiceActive {
		return RefuseEServiceSuspended
	}
	return ""
}

// EntryKey returns the key of the voucher entry for a client's key and, for e-service
// clients, a purpose (purposeID "" for API clients).
func EntryKey(clientID, kid, purposeID string) string {
	if purposeID == "" {
		return "entry:" + clientID + ":" + kid
	}
	return "entry:" + clientID + ":" + kid + ":" + purposeID
}

// LookupEntry reads one voucher entry with exactly one Get: the token endpoint's whole
// read. purposeID is "" for API clients. found is false when no such key is registered
// on the client for that purpose — refuse. Errors are the store's (ErrUnavailable: the
// answer is unknown, not "absent").
func LookupEntry(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, clientID, kid, purposeID string) (VoucherEntry, bool, error) {
	return lookupEntry(ctx, store, ns, nil, clientID, kid, purposeID)
}

// lookupEntry is LookupEntry, keeping decoded entries in decoded when it is not nil.
func lookupEntry(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, decoded *memo.Cache[VoucherEntry], clientID, kid, purposeID string) (VoucherEntry, bool, error) {
	if clientID == "" || kid == "" {
		return VoucherEntry{}, false, nil
	}
	key := EntryKey(clientID, kid, purposeID)
	data, ok, err := store.Get(ctx, ns, key)
	if err != nil || !ok {
		return VoucherEntry{}, false, err
	}
	if decoded != nil {
		if e, ok := decoded.Get(key, data); ok {
			return e, true, nil
		}
	}
	var e VoucherEntry
	if err := jsondec.Unmarshal(data, &e); err != nil {
		return VoucherEntry{}, false, fmt.Errorf("%w: voucher entry %s/%s: %v", readmodel.ErrCorrupt, clientID, kid, err)
	}
	if decoded != nil {
		decoded.Put(key, string(data), e)
	}
	return e, true, nil
}

// EntryReader is LookupEntry with the decoded entries kept (internal/memo): a token
// request then reads the entry's bytes and compares them with those it decoded before,
// instead of decoding JSON. An entry that changed is decoded again, so the reader is
// never staler than the store. The entries it returns share their Roles: read only.
type EntryReader struct {
	decoded *memo.Cache[VoucherEntry]
}

// DefaultEntryCacheSize is how many decoded entries NewEntryReader(0) keeps.
const DefaultEntryCacheSize = 100_000

// NewEntryReader returns a reader keeping about size decoded entries
// (DefaultEntryCacheSize when size ≤ 0).
func NewEntryReader(size int) *EntryReader {
	if size <= 0 {
		size = DefaultEntryCacheSize
	}
	return &EntryReader{decoded: memo.New[VoucherEntry](size)}
}

// Lookup is LookupEntry.
func (r *EntryReader) Lookup(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, clientID, kid, purposeID string) (VoucherEntry, bool, error) {
	return lookupEntry(ctx, store, ns, r.decoded, clientID, kid, purposeID)
}

// ProbeKey reports whether kid is registered on the client and, if so, the client's kind,
// with one GetMany. The token path calls it only after a lookup found no entry, to say
// precisely why.
func ProbeKey(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, clientID, kid string) (client.Kind, bool, error) {
	if clientID == "" || kid == "" {
		return "", false, nil
	}
	vals, err := store.GetMany(ctx, ns, []string{clientKey(clientID), ckeyKey(clientID, kid)})
	if err != nil {
		return "", false, err
	}
	if vals[0] == nil || vals[1] == nil {
		return "", false, nil
	}
	var c clientRec
	if err := json.Unmarshal(vals[0], &c); err != nil {
		return "", false, fmt.Errorf("%w: client record %s: %v", readmodel.ErrCorrupt, clientID, err)
	}
	return c.Kind, true, nil
}

// Auxiliary records of the voucher model, in its namespace.
type (
	// clientRec under "client:<id>".
	clientRec struct {
		Kind     client.Kind       `json:"kind"`
		Tenant   string            `json:"tenant"`
		KIDs     []string          `json:"kids"`            // sorted
		Purposes map[string]string `json:"purposes"`        // purpose id → e-service id
		Roles    []string          `json:"roles,omitempty"` // API clients
	}
	// keyRec under "ckey:<clientID>:<kid>".
	keyRec struct {
		PEM string `json:"pem"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	// purposeRec under "purpose:<id>".
	purposeRec struct {
		State      purpose.State `json:"state"`
		EServiceID string        `json:"eserviceId"`
	}
	// eserviceRec under "eservice:<id>".
	eserviceRec struct {
		State    EServiceState `json:"state"`
		Audience string        `json:"audience"`
		Lifetime int           `json:"lifetime"`
	}
)

func clientKey(id string) string          { return "client:" + id }
func ckeyKey(clientID, kid string) string { return "ckey:" + clientID + ":" + kid }
func purposeKey(id string) string         { return "purpose:" + id }
func eserviceKey(id string) string        { return "eservice:" + id }

// Indexes: the purposes of an e-service and the clients linked to a purpose.
func eservicePurposes(id string) string { return "eservice-purposes:" + id }
func purposeClients(id string) string   { return "purpose-clients:" + id }

// Voucher is the voucher read model: the group VoucherGroup reads the client, purpose
// and e-service streams.
var Voucher = Definition{
	Model:    VoucherModel,
	Version:  VoucherVersion,
	Group:    VoucherGroup,
	Filter:   eventstore.Filter{StreamPrefixes: []string{client.StreamName(""), purpose.StreamName(""), eservice.StreamName("")}},
	Handlers: voucherHandlers,
	// Revocations must hold: no vouchers from a generation left behind during a rebuild.
	ServeOnlyCurrent: true,
}

func voucherHandlers(deps Deps, ns readmodel.Namespace) []cqrs.GroupEventHandler {
	cache := newRecCache()
	m := voucherModel{p: projector{store: deps.Store, ns: ns, reset: cache.reset}, cache: cache}
	p := m.p
	return []cqrs.GroupEventHandler{
		on(p, m.clientCreated),
		on(p, m.keyUploaded),
		on(p, m.keyDeleted),
		on(p, m.purposeAdded),
		on(p, m.purposeRemoved),
		on(p, m.clientDeleted),
		on(p, m.rolesSet),
		skip[client.MemberAdded](p),
		skip[client.MemberRemoved](p),
		on(p, m.purposeCreated),
		on(p, func(ctx context.Context, ev source.Event, _ *purpose.Activated, b *readmodel.Batch) error {
			return m.purposeState(ctx, ev, purpose.StateActive, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, _ *purpose.Suspended, b *readmodel.Batch) error {
			return m.purposeState(ctx, ev, purpose.StateSuspended, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, _ *purpose.Archived, b *readmodel.Batch) error {
			return m.purposeState(ctx, ev, purpose.StateArchived, b)
		}),
		on(p, m.eserviceCreated),
		on(p, func(ctx context.Context, ev source.Event, _ *eservice.Suspended, b *readmodel.Batch) error {
			return m.eserviceState(ctx, ev, EServiceSuspended, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, _ *eservice.Activated, b *readmodel.Batch) error {
			return m.eserviceState(ctx, ev, EServiceActive, b)
		}),
	}
}

type voucherModel struct {
	p     projector
	cache *recCache
}

// recCache keeps the auxiliary records this projector read or wrote, decoded, across
// events: the model has one projector per generation (the lease), so the records change
// only through its own batches, and a live event costs one round trip (the apply)
// instead of one per record. Handlers change cached records in place and put them in the
// event's batch; whenever an event is not applied as built (an error, a skipped
// redelivery) the projector resets the cache, which then reloads from the store.
type recCache struct {
	clients   map[string]*clientRec
	keys      map[string]*keyRec // by ckeyKey
	purposes  map[string]*purposeRec
	eservices map[string]*eserviceRec
}

// maxCachedRecs bounds the cache; past it, it starts empty again.
const maxCachedRecs = 200_000

func newRecCache() *recCache {
	return &recCache{clients: map[string]*clientRec{}, keys: map[string]*keyRec{},
		purposes: map[string]*purposeRec{}, eservices: map[string]*eserviceRec{}}
}

func (c *recCache) reset() { *c = *newRecCache() }

func (c *recCache) size() int {
	return len(c.clients) + len(c.keys) + len(c.purposes) + len(c.eservices)
}

func (m voucherModel) view(ctx context.Context) *view {
	if m.cache.size() > maxCachedRecs {
		m.cache.reset()
	}
	return &view{ctx: ctx, store: m.p.store, ns: m.p.ns,
		clients: m.cache.clients, keys: m.cache.keys, purposes: m.cache.purposes, eservices: m.cache.eservices}
}

func (m voucherModel) clientCreated(_ context.Context, _ source.Event, e *client.Created, b *readmodel.Batch) error {
	c := &clientRec{Kind: e.Kind, Tenant: e.Tenant, KIDs: []string{}, Purposes: map[string]string{}, Roles: roleNames(e.Roles)}
	m.cache.clients[e.ID] = c
	return put(b, clientKey(e.ID), c)
}

// rolesSet rewrites the roles of the API client's entries.
func (m voucherModel) rolesSet(ctx context.Context, ev source.Event, e *client.RolesSet, b *readmodel.Batch) error {
	v := m.view(ctx)
	id, c, err := m.liveClient(v, ev)
	if err != nil {
		return err
	}
	c.Roles = roleNames(e.Roles)
	if err := put(b, clientKey(id), c); err != nil {
		return err
	}
	if c.Kind != client.KindAPI {
		return nil
	}
	ts := make([]triple, 0, len(c.KIDs))
	for _, kid := range c.KIDs {
		ts = append(ts, triple{id, kid, ""})
	}
	return v.putEntries(b, ev.Position, ts)
}

// liveClient loads the event's client, which must exist.
func (m voucherModel) liveClient(v *view, ev source.Event) (string, *clientRec, error) {
	id, err := aggregateID(ev)
	if err != nil {
		return "", nil, err
	}
	c, err := v.client(id)
	return id, c, err
}

func (m voucherModel) keyUploaded(ctx context.Context, ev source.Event, e *client.KeyUploaded, b *readmodel.Batch) error {
	v := m.view(ctx)
	id, c, err := m.liveClient(v, ev)
	if err != nil {
		return err
	}
	k := &keyRec{PEM: e.PEM, Use: e.Use, Alg: e.Alg}
	v.keys[ckeyKey(id, e.KID)] = k
	if err := put(b, ckeyKey(id, e.KID), k); err != nil {
		return err
	}
	if i, found := slices.BinarySearch(c.KIDs, e.KID); !found {
		c.KIDs = slices.Insert(c.KIDs, i, e.KID)
	}
	if err := put(b, clientKey(id), c); err != nil {
		return err
	}
	var ts []triple
	if c.Kind == client.KindEService {
		for _, pid := range sortedKeys(c.Purposes) {
			ts = append(ts, triple{id, e.KID, pid})
		}
	} else {
		ts = append(ts, triple{id, e.KID, ""})
	}
	return v.putEntries(b, ev.Position, ts)
}

func (m voucherModel) keyDeleted(ctx context.Context, ev source.Event, e *client.KeyDeleted, b *readmodel.Batch) error {
	v := m.view(ctx)
	id, c, err := m.liveClient(v, ev)
	if err != nil {
		return err
	}
	if i, found := slices.BinarySearch(c.KIDs, e.KID); found {
		c.KIDs = slices.Delete(c.KIDs, i, i+1)
	}
	if err := put(b, clientKey(id), c); err != nil {
		return err
	}
	b.Delete(ckeyKey(id, e.KID))
	v.keys[ckeyKey(id, e.KID)] = nil
	deleteKeyEntries(b, id, e.KID, c)
	return nil
}

// deleteKeyEntries deletes every entry of one key of the client (both forms, so that a
// client of either kind leaves nothing behind).
func deleteKeyEntries(b *readmodel.Batch, clientID, kid string, c *clientRec) {
	b.Delete(EntryKey(clientID, kid, ""))
	for _, pid := range sortedKeys(c.Purposes) {
		b.Delete(EntryKey(clientID, kid, pid))
	}
}

func (m voucherModel) purposeAdded(ctx context.Context, ev source.Event, e *client.PurposeAdded, b *readmodel.Batch) error {
	v := m.view(ctx)
	id, c, err := m.liveClient(v, ev)
	if err != nil {
		return err
	}
	c.Purposes[e.PurposeID] = e.EServiceID
	if err := put(b, clientKey(id), c); err != nil {
		return err
	}
	b.IndexAdd(purposeClients(e.PurposeID), id)
	ts := make([]triple, 0, len(c.KIDs))
	for _, kid := range c.KIDs {
		ts = append(ts, triple{id, kid, e.PurposeID})
	}
	return v.putEntries(b, ev.Position, ts)
}

func (m voucherModel) purposeRemoved(ctx context.Context, ev source.Event, e *client.PurposeRemoved, b *readmodel.Batch) error {
	v := m.view(ctx)
	id, c, err := m.liveClient(v, ev)
	if err != nil {
		return err
	}
	for _, kid := range c.KIDs {
		b.Delete(EntryKey(id, kid, e.PurposeID))
	}
	delete(c.Purposes, e.PurposeID)
	b.IndexRemove(purposeClients(e.PurposeID), id)
	return put(b, clientKey(id), c)
}

// clientDeleted removes what is left of the client. Its keys and purpose links went with
// the events just before it (one append); this also covers a client whose keys were not
// deleted as events.
func (m voucherModel) clientDeleted(ctx context.Context, ev source.Event, _ *client.Deleted, b *readmodel.Batch) error {
	v := m.view(ctx)
	id, c, err := m.liveClient(v, ev)
	if err != nil {
		return err
	}
	for _, kid := range c.KIDs {
		b.Delete(ckeyKey(id, kid))
		v.keys[ckeyKey(id, kid)] = nil
		deleteKeyEntries(b, id, kid, c)
	}
	for pid := range c.Purposes {
		b.IndexRemove(purposeClients(pid), id)
	}
	b.Delete(clientKey(id))
	v.clients[id] = nil
	return nil
}

func (m voucherModel) purposeCreated(_ context.Context, _ source.Event, e *purpose.Created, b *readmodel.Batch) error {
	b.IndexAdd(eservicePurposes(e.EServiceID), e.ID)
	p := &purposeRec{State: purpose.StatePending, EServiceID: e.EServiceID}
	m.cache.purposes[e.ID] = p
	return put(b, purposeKey(e.ID), p)
}

// purposeState records the purpose's new state and rewrites the entries of every client
// linked to it. An archived purpose keeps its entries (refused as archived) until the
// command layer's unlink events remove them.
func (m voucherModel) purposeState(ctx context.Context, ev source.Event, state purpose.State, b *readmodel.Batch) error {
	v := m.view(ctx)
	pid, err := aggregateID(ev)
	if err != nil {
		return err
	}
	if err := loadRecs(v, purposeKey, v.purposes, []string{pid}); err != nil {
		return err
	}
	p := v.purposes[pid]
	if p == nil {
		return inconsistent("purpose %s is unknown", pid)
	}
	p.State = state
	if err := put(b, purposeKey(pid), p); err != nil {
		return err
	}
	ts, err := m.linked(v, pid)
	if err != nil {
		return err
	}
	return v.putEntries(b, ev.Position, ts)
}

// linked returns the entries of every client linked to the purpose.
func (m voucherModel) linked(v *view, pid string) ([]triple, error) {
	ids, err := rangeAll(v.ctx, v.store, v.ns, purposeClients(pid))
	if err != nil {
		return nil, err
	}
	if err := loadRecs(v, clientKey, v.clients, ids); err != nil {
		return nil, err
	}
	var ts []triple
	for _, id := range ids {
		c := v.clients[id]
		if c == nil {
			return nil, inconsistent("client %s, linked to purpose %s, is unknown", id, pid)
		}
		for _, kid := range c.KIDs {
			ts = append(ts, triple{id, kid, pid})
		}
	}
	return ts, nil
}

func (m voucherModel) eserviceCreated(_ context.Context, _ source.Event, e *eservice.Created, b *readmodel.Batch) error {
	es := &eserviceRec{State: EServiceActive, Audience: e.Audience, Lifetime: e.VoucherLifetimeSeconds}
	m.cache.eservices[e.ID] = es
	return put(b, eserviceKey(e.ID), es)
}

// eserviceState records the e-service's new state and rewrites the entries of every
// client linked to any of its purposes. The whole fan-out is one batch: an e-service
// with more entries than readmodel.MaxBatchOps halts the projection (ErrInvalid) rather
// than apply half of a suspension.
func (m voucherModel) eserviceState(ctx context.Context, ev source.Event, state EServiceState, b *readmodel.Batch) error {
	v := m.view(ctx)
	esid, err := aggregateID(ev)
	if err != nil {
		return err
	}
	if err := loadRecs(v, eserviceKey, v.eservices, []string{esid}); err != nil {
		return err
	}
	s := v.eservices[esid]
	if s == nil {
		return inconsistent("e-service %s is unknown", esid)
	}
	s.State = state
	if err := put(b, eserviceKey(esid), s); err != nil {
		return err
	}
	pids, err := rangeAll(ctx, v.store, v.ns, eservicePurposes(esid))
	if err != nil {
		return err
	}
	var ts []triple
	for _, pid := range pids {
		t, err := m.linked(v, pid)
		if err != nil {
			return err
		}
		ts = append(ts, t...)
	}
	return v.putEntries(b, ev.Position, ts)
}

// triple names one entry: a client's key and a purpose ("" for API clients).
type triple struct{ client, kid, purpose string }

// view caches the auxiliary records one handler reads, including those it changed in its
// batch (which is not applied yet), so that entries are built from the state after the
// event. A nil record means absent.
type view struct {
	ctx       context.Context
	store     readmodel.Store
	ns        readmodel.Namespace
	clients   map[string]*clientRec
	keys      map[string]*keyRec // by ckeyKey
	purposes  map[string]*purposeRec
	eservices map[string]*eserviceRec
}

// load reads the records of ids that are not cached yet, in one GetMany.
func loadRecs[T any](v *view, keyOf func(string) string, cache map[string]*T, ids []string) error {
	var missing, keys []string
	seen := map[string]bool{}
	for _, id := range ids {
		if _, ok := cache[id]; !ok && !seen[id] {
			seen[id] = true
			missing = append(missing, id)
			keys = append(keys, keyOf(id))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	vals, err := v.store.GetMany(v.ctx, v.ns, keys)
	if err != nil {
		return err
	}
	for i, id := range missing {
		if vals[i] == nil {
			cache[id] = nil
			continue
		}
		rec := new(T)
		if err := json.Unmarshal(vals[i], rec); err != nil {
			return source.Permanent(fmt.Errorf("%w: %s: %v", readmodel.ErrCorrupt, keys[i], err))
		}
		cache[id] = rec
	}
	return nil
}

func (v *view) client(id string) (*clientRec, error) {
	if err := loadRecs(v, clientKey, v.clients, []string{id}); err != nil {
		return nil, err
	}
	c := v.clients[id]
	if c == nil {
		return nil, inconsistent("client %s is unknown", id)
	}
	if c.Purposes == nil {
		c.Purposes = map[string]string{}
	}
	return c, nil
}

// putEntries writes the entries ts from the records (loading those not cached).
func (v *view) putEntries(b *readmodel.Batch, pos eventstore.Position, ts []triple) error {
	if len(ts) == 0 {
		return nil
	}
	var cids, kkeys, pids []string
	for _, t := range ts {
		cids = append(cids, t.client)
		kkeys = append(kkeys, ckeyKey(t.client, t.kid))
		if t.purpose != "" {
			pids = append(pids, t.purpose)
		}
	}
	if err := loadRecs(v, clientKey, v.clients, cids); err != nil {
		return err
	}
	if err := loadRecs(v, func(k string) string { return k }, v.keys, kkeys); err != nil {
		return err
	}
	if err := loadRecs(v, purposeKey, v.purposes, pids); err != nil {
		return err
	}
	var esids []string
	for _, pid := range pids {
		if p := v.purposes[pid]; p != nil {
			esids = append(esids, p.EServiceID)
		}
	}
	if err := loadRecs(v, eserviceKey, v.eservices, esids); err != nil {
		return err
	}
	at := pos.String()
	for _, t := range ts {
		c, k := v.clients[t.client], v.keys[ckeyKey(t.client, t.kid)]
		if c == nil || k == nil {
			return inconsistent("key %s of client %s is unknown", t.kid, t.client)
		}
		e := VoucherEntry{ClientID: t.client, ClientKind: c.Kind, Tenant: c.Tenant, KID: t.kid,
			PEM: k.PEM, Use: k.Use, Alg: k.Alg, Position: at}
		if c.Kind == client.KindAPI {
			e.Roles = c.Roles
		}
		if t.purpose != "" {
			p := v.purposes[t.purpose]
			if p == nil {
				return inconsistent("purpose %s, linked to client %s, is unknown", t.purpose, t.client)
			}
			s := v.eservices[p.EServiceID]
			if s == nil {
				return inconsistent("e-service %s of purpose %s is unknown", p.EServiceID, t.purpose)
			}
			e.PurposeID, e.PurposeState = t.purpose, p.State
			e.EServiceID, e.EServiceState = p.EServiceID, s.State
			e.Audience, e.VoucherLifetimeSeconds = s.Audience, s.Lifetime
		}
		if err := put(b, EntryKey(t.client, t.kid, t.purpose), e); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
