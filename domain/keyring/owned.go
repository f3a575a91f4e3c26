package keyring

import (
	"sort"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// Owner is what the aggregate that owns a keyring (a client or a keychain) lends each of
// its member and key changes. Build it afresh for every change: it is a snapshot.
type Owner struct {
	// Tenant is the owner's tenant: its administrators, and its security operators who
	// are members, manage the keyring.
	Tenant string
	// Live is nil while the owner exists and is not deleted; otherwise it is the error
	// every change answers, before any rule of the keyring.
	Live error
	// Record is the owner's own record: it applies the event to the whole aggregate, then
	// queues it. Never pass a function that only queues.
	Record func(domain.Event)
}

// record records e unless the decision that built it refused.
func (o Owner) record(e domain.Event, refused error) error {
	if refused != nil {
		return refused
	}
	o.Record(e)
	return nil
}

// Owned is a keyring inside the aggregate that owns it, with the owner's event types for
// the keyring payloads: each is a struct that embeds the payload and nothing else
// (client.KeyUploaded is struct{ keyring.KeyUploaded }), so the payload's JSON stays
// flat under the owner's wire name. The owner keeps it in an unexported field, passes it
// every event it applies, and forwards its member and key commands to it. The zero value
// is an empty keyring.
type Owned[
	MA interface {
		domain.Event
		~struct{ MemberAdded }
	},
	MR interface {
		domain.Event
		~struct{ MemberRemoved }
	},
	KU interface {
		domain.Event
		~struct{ KeyUploaded }
	},
	KD interface {
		domain.Event
		~struct{ KeyDeleted }
	},
] struct {
	ring Keyring
}

// Apply folds e into the keyring when it is one of the owner's keyring events, and
// ignores any other event. It never fails.
func (o *Owned[MA, MR, KU, KD]) Apply(e domain.Event) {
	if o.ring.members == nil {
		o.ring = New()
	}
	switch e := e.(type) {
	case MA:
		o.ring.Apply(struct{ MemberAdded }(e).MemberAdded)
	case MR:
		o.ring.Apply(struct{ MemberRemoved }(e).MemberRemoved)
	case KU:
		o.ring.Apply(struct{ KeyUploaded }(e).KeyUploaded)
	case KD:
		o.ring.Apply(struct{ KeyDeleted }(e).KeyDeleted)
	}
}

// AddMember makes a registered user of the owner's tenant a member (Keyring.AddMember
// says who may).
func (o *Owned[MA, MR, KU, KD]) AddMember(owner Owner, actor domain.Actor, userID string, registered bool, at time.Time) error {
	if owner.Live != nil {
		return owner.Live
	}
	p, err := o.ring.AddMember(actor, owner.Tenant, userID, registered, at)
	return owner.record(MA(struct{ MemberAdded }{p}), err)
}

// RemoveMember ends a membership; the member's keys stay valid but are flagged.
func (o *Owned[MA, MR, KU, KD]) RemoveMember(owner Owner, actor domain.Actor, userID string, at time.Time) error {
	if owner.Live != nil {
		return owner.Live
	}
	p, err := o.ring.RemoveMember(actor, owner.Tenant, userID, at)
	return owner.record(MR(struct{ MemberRemoved }{p}), err)
}

// UploadKey registers a public key. It checks the owner's own keys and limit only: kid
// uniqueness across owners is the command layer's reservation.
func (o *Owned[MA, MR, KU, KD]) UploadKey(owner Owner, actor domain.Actor, key NewKey, maxKeys int, at time.Time) error {
	if owner.Live != nil {
		return owner.Live
	}
	p, err := o.ring.UploadKey(actor, owner.Tenant, key, maxKeys, at)
	return owner.record(KU(struct{ KeyUploaded }{p}), err)
}

// DeleteKey removes a key: administrators any, security operators (members) their own.
func (o *Owned[MA, MR, KU, KD]) DeleteKey(owner Owner, actor domain.Actor, kid string, at time.Time) error {
	if owner.Live != nil {
		return owner.Live
	}
	p, err := o.ring.DeleteKey(actor, owner.Tenant, kid, at)
	return owner.record(KD(struct{ KeyDeleted }{p}), err)
}

// Populate adds a new owner's initial members, in id order, then uploads its initial
// keys in the order given; the first refusal stops it. Call it right after recording
// the owner's creation.
func (o *Owned[MA, MR, KU, KD]) Populate(owner Owner, actor domain.Actor, members map[string]bool, keys []NewKey, maxKeys int, at time.Time) error {
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := o.AddMember(owner, actor, id, members[id], at); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := o.UploadKey(owner, actor, k, maxKeys, at); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAll records the deletion of every key because the owner itself is being deleted.
// It checks nothing: the owner has decided its own deletion already.
func (o *Owned[MA, MR, KU, KD]) DeleteAll(owner Owner, actor domain.Actor, at time.Time) {
	for _, p := range o.ring.DeleteAll(actor, at) {
		owner.Record(KD(struct{ KeyDeleted }{p}))
	}
}

// Keyring returns a copy of the state that shares nothing with the owner, for callers
// outside the aggregate.
func (o *Owned[MA, MR, KU, KD]) Keyring() Keyring { return o.ring.Clone() }
