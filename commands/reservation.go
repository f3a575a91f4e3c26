package commands

import (
	"context"
	"errors"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// A reservation stream makes one value unique across aggregates (a key's kid across all
// clients and keychains): claiming appends to the value's own stream with an expected
// version, so two claims can never both win, whatever the interleaving.

// Claimed holds a value for an owner.
type Claimed struct {
	Value string    `json:"value"`
	Owner string    `json:"owner"` // "client:<id>" or "keychain:<id>"
	At    time.Time `json:"at"`
}

// Released frees a value.
type Released struct {
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}

// EventType implements domain.Event.
func (Claimed) EventType() string { return "reservation.claimed.v1" }

// EventType implements domain.Event.
func (Released) EventType() string { return "reservation.released.v1" }

var reservationCodec = domain.NewCodec(Claimed{}, Released{})

type reservation struct {
	domain.Changes
	held  bool
	owner string
	at    time.Time
}

func (r *reservation) Rehydrate(evs []domain.Event) {
	for _, e := range evs {
		switch e := e.(type) {
		case Claimed:
			r.held, r.owner, r.at = true, e.Owner, e.At
		case Released:
			r.held, r.owner = false, ""
		}
	}
}

// kidStream is the reservation stream of a key id.
func kidStream(kid string) string { return "kid-" + kid }

// errTaken is returned by claim when another owner holds the value.
var errTaken = errors.New("value reserved by another owner")

// claim reserves value for owner. holds reports whether an owner really holds the value
// (its aggregate has it); a claim whose owner does not hold it and that is older than the
// grace period is an orphan (its owner's append failed) and is taken over.
func (s *Service) claim(ctx context.Context, meta Meta, stream, value, owner string, holds func(owner string) (bool, error)) error {
	sys := meta
	sys.IfMatch = nil
	_, err := update(ctx, s, sys, value, stream, reservationCodec, func() *reservation { return &reservation{} },
		func(r *reservation) error {
			now := s.now()
			if r.held && r.owner != owner {
				if now.Sub(r.at) < s.cfg.ReservationGrace {
					return errTaken
				}
				held, err := holds(r.owner)
				if err != nil {
					return err
				}
				if held {
					return errTaken
				}
			}
			if r.held && r.owner == owner {
				return nil // already ours: a retry of our own claim
			}
			r.Add(Claimed{Value: value, Owner: owner, At: domain.Time(now)})
			return nil
		})
	return err
}

// release frees value if owner holds it. Failures are returned for logging only: an
// unreleased value is an orphan that a later claim takes over.
func (s *Service) release(ctx context.Context, meta Meta, stream, value, owner string) error {
	sys := meta
	sys.IfMatch = nil
	_, err := update(ctx, s, sys, value, stream, reservationCodec, func() *reservation { return &reservation{} },
		func(r *reservation) error {
			if r.held && r.owner == owner {
				r.Add(Released{Owner: owner, At: domain.Time(s.now())})
			}
			return nil
		})
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil
	}
	return err
}
