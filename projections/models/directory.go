package models

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/domain/tenant"
	"github.com/keyledger/keyledger/domain/user"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Names of the directory read model (see the voucher model's names for their roles).
const (
	DirectoryModel   = "directory"
	DirectoryVersion = "directory.v2"
	DirectoryGroup   = "projection.directory.v1"
)

// Directory is the read model of the API's queries: lists and details of tenants,
// users, clients, keychains, e-services and purposes (see the Get and List functions).
//
// Its handlers do not re-implement any domain rule: they keep each stream's aggregate,
// apply the event to it with the aggregate's own Rehydrate, and store the view that the
// Render functions make of the result, with the aggregate's version and the event's
// position, in the event's batch. The aggregates live in a bounded per-handler cache;
// on a miss (a restart, an eviction, a redelivery) the stream is read from Deps.Events
// up to the event, never beyond it. Deps.Events is therefore required.
var Directory = Definition{
	Model:   DirectoryModel,
	Version: DirectoryVersion,
	Group:   DirectoryGroup,
	Filter: eventstore.Filter{StreamPrefixes: []string{tenant.StreamName(""), userStreamPrefix,
		client.StreamName(""), keychain.StreamName(""), eservice.StreamName(""), purpose.StreamName("")}},
	Handlers: directoryHandlers,
}

// userStreamPrefix is what every user stream starts with, whatever the tenant.
var userStreamPrefix = strings.TrimSuffix(user.StreamName("", ""), "/")

// DirectoryCacheSize bounds the aggregates one directory projector keeps in memory. A
// miss costs one read of the stream from the event store.
const DirectoryCacheSize = 50_000

func directoryHandlers(deps Deps, ns readmodel.Namespace) []cqrs.GroupEventHandler {
	d := &directory{p: projector{store: deps.Store, ns: ns}, events: deps.Events,
		cache: aggCache{max: DirectoryCacheSize, entries: map[string]cachedAgg{}}}
	return []cqrs.GroupEventHandler{
		dirHandle[tenant.Created](d, tenantKind),

		dirHandle[user.Registered](d, userKind),
		dirHandle[user.Updated](d, userKind),
		dirHandle[user.Deleted](d, userKind),

		dirHandle[client.Created](d, clientKind),
		dirHandle[client.MemberAdded](d, clientKind),
		dirHandle[client.MemberRemoved](d, clientKind),
		dirHandle[client.KeyUploaded](d, clientKind),
		dirHandle[client.KeyDeleted](d, clientKind),
		dirHandle[client.PurposeAdded](d, clientKind),
		dirHandle[client.PurposeRemoved](d, clientKind),
		dirHandle[client.Deleted](d, clientKind),
		dirHandle[client.RolesSet](d, clientKind),

		dirHandle[keychain.Created](d, keychainKind),
		dirHandle[keychain.MemberAdded](d, keychainKind),
		dirHandle[keychain.MemberRemoved](d, keychainKind),
		dirHandle[keychain.KeyUploaded](d, keychainKind),
		dirHandle[keychain.KeyDeleted](d, keychainKind),
		dirHandle[keychain.EServiceAdded](d, keychainKind),
		dirHandle[keychain.EServiceRemoved](d, keychainKind),
		dirHandle[keychain.Deleted](d, keychainKind),

		dirHandle[eservice.Created](d, eserviceKind),
		dirHandle[eservice.Suspended](d, eserviceKind),
		dirHandle[eservice.Activated](d, eserviceKind),

		dirHandle[purpose.Created](d, purposeKind),
		dirHandle[purpose.Activated](d, purposeKind),
		dirHandle[purpose.Suspended](d, purposeKind),
		dirHandle[purpose.Archived](d, purposeKind),
	}
}

// directory is one instance of the model's handlers.
type directory struct {
	p      projector
	events eventstore.Store
	cache  aggCache
}

// aggregate is what the directory needs of an aggregate: the domain's own Rehydrate.
type aggregate interface {
	Rehydrate(events []domain.Event)
}

// dirKind says how the directory keeps one type of aggregate.
type dirKind[A aggregate] struct {
	codec domain.Codec
	// fresh returns the empty aggregate of the event's stream.
	fresh func(ev source.Event) (A, error)
	// doc says what the aggregate puts into the read model.
	doc func(a A) dirDoc
}

// dirDoc is what one aggregate puts into the read model: one record (none once the
// aggregate is gone), its memberships of the list indexes, and auxiliary entries that
// never change once written (a key's JWK), each rendered only when it is new.
type dirDoc struct {
	key     string // "" when the aggregate does not exist (any more)
	tenant  string
	view    func() any
	members []indexMember
	aux     map[string]func() (any, error)
}

// indexMember is one membership of a list index.
type indexMember struct{ index, member string }

// dirRecord is a stored record: the view, whose tenant it is, and what it reflects.
type dirRecord[T any] struct {
	Tenant string `json:"tenant"`
	// Version is the aggregate's stream version (the API's ETag).
	Version uint64 `json:"version"`
	// Position is the log position of the event that wrote the record.
	Position string `json:"position"`
	View     T      `json:"view"`
}

// dirHandle is the handler of one event type E of the aggregates of k.
func dirHandle[E domain.Event, A aggregate](d *directory, k dirKind[A]) cqrs.GroupEventHandler {
	return on(d.p, func(ctx context.Context, ev source.Event, e *E, b *readmodel.Batch) error {
		return dirProject(ctx, d, k, ev, *e, b)
	})
}

// dirProject applies e to its stream's aggregate and writes the difference between the
// aggregate's documents before and after it into b.
func dirProject[A aggregate](ctx context.Context, d *directory, k dirKind[A], ev source.Event, e domain.Event, b *readmodel.Batch) error {
	a, err := dirBefore(ctx, d, k, ev)
	if err != nil {
		return err
	}
	before := k.doc(a)
	a.Rehydrate([]domain.Event{e})
	after := k.doc(a)
	if err := writeDoc(b, ev, before, after); err != nil {
		return err
	}
	// The cache follows the log, not the store: even if this batch is not applied, the
	// aggregate is the stream's state at ev.Version.
	if after.key != "" {
		d.cache.put(ev.Stream, cachedAgg{agg: a, version: ev.Version})
	}
	return nil
}

// dirBefore returns the aggregate of ev's stream as it was just before ev: from the
// cache when it holds the stream at ev.Version-1, otherwise read from the log.
func dirBefore[A aggregate](ctx context.Context, d *directory, k dirKind[A], ev source.Event) (A, error) {
	if c, ok := d.cache.take(ev.Stream); ok && ev.Version > 0 && c.version == ev.Version-1 {
		if a, ok := c.agg.(A); ok {
			return a, nil
		}
	}
	a, err := k.fresh(ev)
	if err != nil {
		return a, err
	}
	if ev.Version == 0 {
		return a, nil
	}
	if d.events == nil {
		return a, source.Permanent(errors.New("models: the directory model needs the event store (Deps.Events)"))
	}
	return a, loadStream(ctx, d.events, ev.Stream, k.codec, ev.Version, a)
}

// streamPage is how many events one read of a stream asks for.
const streamPage = 1000

// loadStream applies the first n events of stream (versions 0 to n-1) to a, and never
// reads further: the log may already hold later events.
func loadStream(ctx context.Context, events eventstore.Store, stream string, codec domain.Codec, n uint64, a aggregate) error {
	for from := uint64(0); from < n; {
		evs, err := events.ReadStream(ctx, stream, eventstore.Forwards, from, int(min(n-from, streamPage)))
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return inconsistent("stream %s is not in the log", stream)
		}
		if err != nil {
			return fmt.Errorf("models: read %s: %w", stream, err)
		}
		if len(evs) == 0 {
			return inconsistent("stream %s ends before version %d", stream, n-1)
		}
		decoded := make([]domain.Event, 0, len(evs))
		for i, re := range evs {
			if re.Version != from+uint64(i) || re.Version >= n {
				return source.Permanent(fmt.Errorf("models: read %s from %d: got version %d at %d", stream, from, re.Version, i))
			}
			e, err := codec.Decode(re.Type, re.Data)
			if err != nil {
				return source.Permanent(fmt.Errorf("models: %s version %d: %w", stream, re.Version, err))
			}
			decoded = append(decoded, e)
		}
		a.Rehydrate(decoded)
		from += uint64(len(evs))
	}
	return nil
}

// writeDoc writes into b what turns the before document into the after one.
func writeDoc(b *readmodel.Batch, ev source.Event, before, after dirDoc) error {
	had := make(map[indexMember]bool, len(before.members))
	for _, m := range before.members {
		had[m] = true
	}
	has := make(map[indexMember]bool, len(after.members))
	for _, m := range after.members {
		has[m] = true
		if !had[m] {
			b.IndexAdd(m.index, m.member)
		}
	}
	for _, m := range before.members {
		if !has[m] {
			b.IndexRemove(m.index, m.member)
		}
	}
	for key := range before.aux {
		if _, ok := after.aux[key]; !ok {
			b.Delete(key)
		}
	}
	for key, render := range after.aux {
		if _, ok := before.aux[key]; ok {
			continue
		}
		v, err := render()
		if err != nil {
			return source.Permanent(fmt.Errorf("models: render %s: %w", key, err))
		}
		if err := put(b, key, v); err != nil {
			return err
		}
	}
	if before.key != "" && before.key != after.key {
		b.Delete(before.key)
	}
	if after.key == "" {
		return nil
	}
	return put(b, after.key, dirRecord[any]{Tenant: after.tenant, Version: ev.Version, Position: ev.Position.String(), View: after.view()})
}

// aggCache holds aggregates by stream, each with the version it reflects. When full it
// forgets an arbitrary entry: a miss only costs a read of the stream.
type aggCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]cachedAgg
}

type cachedAgg struct {
	agg     any
	version uint64
}

// take removes and returns the stream's entry: the caller changes the aggregate in place
// and puts it back.
func (c *aggCache) take(stream string) (cachedAgg, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[stream]
	if ok {
		delete(c.entries, stream)
	}
	return e, ok
}

func (c *aggCache) put(stream string, e cachedAgg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[stream]; !ok && len(c.entries) >= c.max {
		for victim := range c.entries {
			delete(c.entries, victim)
			break
		}
	}
	c.entries[stream] = e
}

// Record keys of the directory model, in its namespace.
func dirTenantKey(id string) string         { return "tenant:" + id }
func dirUserKey(tenantID, id string) string { return "user:" + tenantID + ":" + id }
func dirClientKey(id string) string         { return "client:" + id }
func dirKeychainKey(id string) string       { return "keychain:" + id }
func dirEServiceKey(id string) string       { return "eservice:" + id }
func dirPurposeKey(id string) string        { return "purpose:" + id }

// dirJWKKey holds the public JWK of one key of a client or keychain: it never changes
// while the key is registered, so it is written once, not with every change of the
// owner.
func dirJWKKey(kind OwnerKind, ownerID, kid string) string {
	return "jwk:" + string(kind) + ":" + ownerID + ":" + kid
}

// List indexes. Tenant ids hold no ':', so an index name never reads as another's.
const (
	idxTenants   = "tenants"
	idxEServices = "eservices"
)

func idxUsers(tenantID string) string   { return "users:" + tenantID }
func idxClients(tenantID string) string { return "clients:" + tenantID }
func idxClientsByKind(tenantID string, k client.Kind) string {
	return "clients-kind:" + tenantID + ":" + string(k)
}
func idxClientsByMember(tenantID, userID string) string {
	return "clients-member:" + tenantID + ":" + userID
}
func idxClientsByPurpose(tenantID, purposeID string) string {
	return "clients-purpose:" + tenantID + ":" + purposeID
}
func idxKeychains(tenantID string) string { return "keychains:" + tenantID }
func idxKeychainsByMember(tenantID, userID string) string {
	return "keychains-member:" + tenantID + ":" + userID
}
func idxEServicesByProducer(tenantID string) string { return "eservices-producer:" + tenantID }
func idxPurposes(tenantID string) string            { return "purposes:" + tenantID }
func idxPurposesAs(tenantID string, role PurposeRole) string {
	return "purposes-" + string(role) + ":" + tenantID
}

// sortMember is an index member that sorts by name, then id: the lower-case name (no
// NUL), a NUL, the id.
func sortMember(name, id string) string { return sortKey(name) + "\x00" + id }

// sortKey is the form names are sorted and matched by prefix in.
func sortKey(name string) string { return strings.ReplaceAll(strings.ToLower(name), "\x00", "") }

// memberID is the id of a sortMember.
func memberID(member string) string { return member[strings.LastIndexByte(member, 0)+1:] }

// tenantAgg adapts the tenant, which is rehydrated by a constructor, to aggregate.
type tenantAgg struct {
	events []domain.Event
	t      *tenant.Tenant
}

func (a *tenantAgg) Rehydrate(events []domain.Event) {
	a.events = append(a.events, events...)
	a.t = tenant.Rehydrate(a.events)
}

var tenantKind = dirKind[*tenantAgg]{
	codec: tenant.Codec,
	fresh: func(source.Event) (*tenantAgg, error) { return &tenantAgg{}, nil },
	doc: func(a *tenantAgg) dirDoc {
		t := a.t
		if t == nil || t.ID() == "" {
			return dirDoc{}
		}
		return dirDoc{key: dirTenantKey(t.ID()), tenant: t.ID(),
			view:    func() any { return RenderTenant(t, nil) },
			members: []indexMember{{idxTenants, sortMember(t.Name(), t.ID())}}}
	},
}

var userKind = dirKind[*user.User]{
	codec: user.Codec,
	fresh: func(ev source.Event) (*user.User, error) {
		id, err := aggregateID(ev)
		if err != nil {
			return nil, err
		}
		return user.New(ev.Meta.Tenant, id), nil
	},
	doc: func(u *user.User) dirDoc {
		if !u.Exists() {
			return dirDoc{}
		}
		return dirDoc{key: dirUserKey(u.Tenant(), u.ID()), tenant: u.Tenant(),
			view:    func() any { return RenderUser(u) },
			members: []indexMember{{idxUsers(u.Tenant()), sortMember(u.Name(), u.ID())}}}
	},
}

// freshByID returns the fresh function of an aggregate made from its id.
func freshByID[A aggregate](make func(id string) A) func(ev source.Event) (A, error) {
	return func(ev source.Event) (A, error) {
		id, err := aggregateID(ev)
		if err != nil {
			var zero A
			return zero, err
		}
		return make(id), nil
	}
}

// keyringDoc adds the memberships and JWK entries of an owner's keyring to doc.
func keyringDoc(doc *dirDoc, kind OwnerKind, ownerID string, kr keyring.Keyring, byMember func(userID string) string) {
	sm := doc.members[0].member
	for _, m := range kr.Members() {
		doc.members = append(doc.members, indexMember{byMember(m), sm})
	}
	doc.aux = map[string]func() (any, error){}
	for _, k := range kr.Keys() {
		doc.aux[dirJWKKey(kind, ownerID, k.KID)] = func() (any, error) { return KeyJWK(k.PEM, k.Use, k.Alg) }
	}
}

var clientKind = dirKind[*client.Client]{
	codec: client.Codec,
	fresh: freshByID(client.New),
	doc: func(c *client.Client) dirDoc {
		if !c.Exists() {
			return dirDoc{}
		}
		t, sm := c.Tenant(), sortMember(c.Name(), c.ID())
		doc := dirDoc{key: dirClientKey(c.ID()), tenant: t,
			view:    func() any { return RenderClient(c) },
			members: []indexMember{{idxClients(t), sm}, {idxClientsByKind(t, c.Kind()), sm}}}
		for _, pid := range c.PurposeIDs() {
			doc.members = append(doc.members, indexMember{idxClientsByPurpose(t, pid), sm})
		}
		keyringDoc(&doc, OwnerClient, c.ID(), c.Keyring(), func(u string) string { return idxClientsByMember(t, u) })
		return doc
	},
}

var keychainKind = dirKind[*keychain.Keychain]{
	codec: keychain.Codec,
	fresh: freshByID(keychain.New),
	doc: func(k *keychain.Keychain) dirDoc {
		if !k.Exists() {
			return dirDoc{}
		}
		t := k.Tenant()
		doc := dirDoc{key: dirKeychainKey(k.ID()), tenant: t,
			view:    func() any { return RenderKeychain(k) },
			members: []indexMember{{idxKeychains(t), sortMember(k.Name(), k.ID())}}}
		keyringDoc(&doc, OwnerKeychain, k.ID(), k.Keyring(), func(u string) string { return idxKeychainsByMember(t, u) })
		return doc
	},
}

var eserviceKind = dirKind[*eservice.EService]{
	codec: eservice.Codec,
	fresh: freshByID(eservice.New),
	doc: func(e *eservice.EService) dirDoc {
		if !e.Exists() {
			return dirDoc{}
		}
		sm := sortMember(e.Name(), e.ID())
		return dirDoc{key: dirEServiceKey(e.ID()), tenant: e.Tenant(),
			view:    func() any { return RenderEService(e) },
			members: []indexMember{{idxEServices, sm}, {idxEServicesByProducer(e.Tenant()), sm}}}
	},
}

var purposeKind = dirKind[*purpose.Purpose]{
	codec: purpose.Codec,
	fresh: freshByID(purpose.New),
	doc: func(p *purpose.Purpose) dirDoc {
		if !p.Exists() {
			return dirDoc{}
		}
		sm := sortMember(p.Title(), p.ID())
		doc := dirDoc{key: dirPurposeKey(p.ID()), tenant: p.ConsumerTenant(),
			view: func() any { return RenderPurpose(p) },
			members: []indexMember{{idxPurposes(p.ConsumerTenant()), sm}, {idxPurposesAs(p.ConsumerTenant(), PurposeConsumer), sm},
				{idxPurposesAs(p.ProducerTenant(), PurposeProducer), sm}}}
		if p.ProducerTenant() != p.ConsumerTenant() {
			doc.members = append(doc.members, indexMember{idxPurposes(p.ProducerTenant()), sm})
		}
		return doc
	},
}
