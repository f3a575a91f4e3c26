package esdbtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func wrongExpected(opts *api.AppendReq_Options, exists bool, current uint64) *api.AppendResp_WrongExpectedVersion {
	w := &api.AppendResp_WrongExpectedVersion{}
	if exists {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: current}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: current}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	}
	switch e := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Revision:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: e.Revision}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: e.Revision}
	case *api.AppendReq_Options_NoStream:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	case *api.AppendReq_Options_StreamExists:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	}
	return w
}

// Read implements count reads of a stream or $all and subscriptions to $all.
func (ss *streamsService) Read(req *api.ReadReq, stream api.Streams_ReadServer) error {
	opts := req.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "read without options")
	}
	structured := opts.GetUuidOption().GetString_() == nil
	if _, ok := opts.GetCountOption().(*api.ReadReq_Options_Subscription); ok {
		all := opts.GetAll()
		if all == nil {
			return status.Error(codes.Unimplemented, "esdbtest: only subscriptions to $all are implemented")
		}
		return ss.subscribe(all, opts.GetFilter(), structured, stream)
	}
	count := opts.GetCount()
	backwards := opts.GetReadDirection() == api.ReadReq_Options_Backwards
	s := ss.srv

	s.mu.Lock()
	failAfter := s.readFail
	s.readFail = -1
	var recs []*record
	onAll := false
	switch {
	case opts.GetStream() != nil:
		so := opts.GetStream()
		name := string(so.GetStreamIdentifier().GetStreamName())
		events := s.streams[name]
		if len(events) == 0 {
			s.mu.Unlock()
			return stream.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
				StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
			}}})
		}
		recs = sliceStream(events, so, backwards, count)
	case opts.GetAll() != nil:
		onAll = true
		recs = sliceAll(s.log, opts.GetAll(), backwards, count)
	default:
		s.mu.Unlock()
		return status.Error(codes.InvalidArgument, "read of neither a stream nor $all")
	}
	s.mu.Unlock()

	for i, r := range recs {
		if failAfter >= 0 && i == failAfter {
			return status.Error(codes.Unavailable, "esdbtest: injected failure in the middle of a read")
		}
		if err := stream.Send(eventMessage(r, onAll, structured)); err != nil {
			return err
		}
	}
	if failAfter >= 0 {
		return status.Error(codes.Unavailable, "esdbtest: injected failure at the end of a read")
	}
	return nil
}

// sliceStream selects a stream read. A backwards read from past the end starts at the
// last event, as EventStoreDB's does.
func sliceStream(events []*record, so *api.ReadReq_Options_StreamOptions, backwards bool, count uint64) []*record {
	n := uint64(len(events))
	var out []*record
	if !backwards {
		from := uint64(0)
		switch r := so.GetRevisionOption().(type) {
		case *api.ReadReq_Options_StreamOptions_Revision:
			from = r.Revision
		case *api.ReadReq_Options_StreamOptions_End:
			from = n
		}
		for i := from; i < n && uint64(len(out)) < count; i++ {
			out = append(out, events[i])
		}
		return out
	}
	from := n - 1
	if r, ok := so.GetRevisionOption().(*api.ReadReq_Options_StreamOptions_Revision); ok && r.Revision < n {
		from = r.Revision
	} else if _, ok := so.GetRevisionOption().(*api.ReadReq_Options_StreamOptions_Start); ok {
		from = 0
	}
	for i := int64(from); i >= 0 && uint64(len(out)) < count; i-- {
		out = append(out, events[i])
	}
	return out
}

// sliceAll selects a $all read: forwards from a position includes the event at it,
// backwards from a position starts before it.
func sliceAll(log []*record, ao *api.ReadReq_Options_AllOptions, backwards bool, count uint64) []*record {
	var out []*record
	// idx is the index of the first event at or after the requested position.
	idx := 0
	switch p := ao.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Position:
		want := position{p.Position.GetCommitPosition(), p.Position.GetPreparePosition()}
		idx = sort.Search(len(log), func(i int) bool { return !log[i].pos().less(want) })
	case *api.ReadReq_Options_AllOptions_End:
		idx = len(log)
	case *api.ReadReq_Options_AllOptions_Start:
		idx = 0
	}
	if !backwards {
		for i := idx; i < len(log) && uint64(len(out)) < count; i++ {
			out = append(out, log[i])
		}
		return out
	}
	if _, ok := ao.GetAllOption().(*api.ReadReq_Options_AllOptions_Start); ok {
		return nil
	}
	for i := idx - 1; i >= 0 && uint64(len(out)) < count; i-- {
		out = append(out, log[i])
	}
	return out
}

// eventMessage renders r. Stream reads carry no global position: the commit and
// prepare fields hold max uint64 and the read event says no_position.
func eventMessage(r *record, onAll, structured bool) *api.ReadResp {
	meta := make(map[string]string, len(r.meta))
	for k, v := range r.meta {
		meta[k] = v
	}
	ev := &api.ReadResp_ReadEvent_RecordedEvent{
		Id:               uuidToProto(r.id, structured),
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
		StreamRevision:   r.rev,
		PreparePosition:  math.MaxUint64,
		CommitPosition:   math.MaxUint64,
		Metadata:         meta,
		CustomMetadata:   r.custom,
		Data:             r.data,
	}
	read := &api.ReadResp_ReadEvent{Event: ev, Position: &api.ReadResp_ReadEvent_NoPosition{NoPosition: &shared.Empty{}}}
	if onAll {
		ev.PreparePosition, ev.CommitPosition = r.prepare, r.commit
		read.Position = &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.commit}
	}
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: read}}
}

// subscribe serves a catch-up subscription to $all: confirmation, stored events after
// the start, CaughtUp (and a Checkpoint when filtered), then live events.
func (ss *streamsService) subscribe(ao *api.ReadReq_Options_AllOptions, fo *api.ReadReq_Options_FilterOptions, structured bool, stream api.Streams_ReadServer) error {
	match, err := compileFilter(fo)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s := ss.srv
	ls := &liveSub{drop: make(chan struct{})}
	s.mu.Lock()
	// next is the index in s.log of the first event to consider.
	next := 0
	switch p := ao.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Position:
		after := position{p.Position.GetCommitPosition(), p.Position.GetPreparePosition()}
		next = sort.Search(len(s.log), func(i int) bool { return after.less(s.log[i].pos()) })
	case *api.ReadReq_Options_AllOptions_End:
		next = len(s.log)
	}
	s.subs[ls] = struct{}{}
	s.subCount++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ls)
		s.mu.Unlock()
	}()

	if err := stream.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}}); err != nil {
		return err
	}
	caughtUp := false
	for {
		s.mu.Lock()
		batch := append([]*record(nil), s.log[next:]...)
		changed := s.changed
		s.mu.Unlock()
		next += len(batch)
		for _, r := range batch {
			select {
			case <-ls.drop:
				return status.Error(codes.Unavailable, "esdbtest: subscription dropped")
			default:
			}
			if !match(r) {
				continue
			}
			if err := stream.Send(eventMessage(r, true, structured)); err != nil {
				return err
			}
		}
		if !caughtUp {
			caughtUp = true
			if err := stream.Send(&api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: &api.ReadResp_CaughtUp{}}}); err != nil {
				return err
			}
		}
		if fo != nil && len(batch) > 0 {
			last := batch[len(batch)-1]
			if err := stream.Send(&api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{
				CommitPosition: last.commit, PreparePosition: last.prepare,
			}}}); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-ls.drop:
			return status.Error(codes.Unavailable, "esdbtest: subscription dropped")
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// compileFilter turns a subscription filter into a predicate.
func compileFilter(fo *api.ReadReq_Options_FilterOptions) (func(*record) bool, error) {
	if fo == nil {
		return func(*record) bool { return true }, nil
	}
	var expr *api.ReadReq_Options_FilterOptions_Expression
	byType := false
	switch f := fo.GetFilter().(type) {
	case *api.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = f.StreamIdentifier
	case *api.ReadReq_Options_FilterOptions_EventType:
		expr, byType = f.EventType, true
	default:
		return nil, errors.New("filter without a stream or event-type expression")
	}
	var re *regexp.Regexp
	if expr.GetRegex() != "" {
		var err error
		if re, err = regexp.Compile(expr.GetRegex()); err != nil {
			return nil, fmt.Errorf("filter regex: %w", err)
		}
	}
	prefixes := expr.GetPrefix()
	return func(r *record) bool {
		subject := r.stream
		if byType {
			subject = r.meta["type"]
		}
		if re != nil {
			return re.MatchString(subject)
		}
		for _, p := range prefixes {
			if strings.HasPrefix(subject, p) {
				return true
			}
		}
		return false
	}, nil
}

func uuidFromProto(u *shared.UUID) (uuid.UUID, error) {
	if st := u.GetStructured(); st != nil {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], uint64(st.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(b[8:], uint64(st.GetLeastSignificantBits()))
		return uuid.UUID(b), nil
	}
	id, err := uuid.Parse(u.GetString_())
	if err != nil {
		return uuid.Nil, fmt.Errorf("event id: %w", err)
	}
	return id, nil
}

func uuidToProto(id uuid.UUID, structured bool) *shared.UUID {
	if !structured {
		return &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}}
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}
