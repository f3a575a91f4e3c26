// Package esdbtest is an in-process fake of the EventStoreDB v1 gRPC Streams API
// (event_store.client.streams.Streams), for testing the eventstore/esdb adapter without a
// node. It speaks exactly the subset that EventStore-Client-Go v4.2.0 uses for appends,
// count reads of a stream or $all, and catch-up subscriptions to $all, and it lets a test
// break things on purpose: drop every subscription, fail a read in the middle, stop the
// node and start it again on the same address.
//
// What it imitates: one node keeping every event in memory (kept across Stop/Restart, like
// a node restarting on its disk); optimistic concurrency on append (any, no stream,
// stream exists, exact revision) answered as EventStoreDB answers it; non-dense global
// positions in which the events of one append share a commit position and differ in
// prepare position, the append answering the position of its last event; a few system
// events ('$' streams and types) in the global log; the "created" (.NET ticks), "type"
// and "content-type" metadata on every event; stream reads that carry no global position
// (commit and prepare are max uint64); StreamNotFound for a stream without events;
// subscriptions that confirm, catch up, send a CaughtUp notice (and a Checkpoint when
// filtered), then go live; stream and event-type filters by prefix or regex.
//
// What it does NOT prove — test those against a real node (KEYLEDGER_ESDB_URL):
//   - real EventStoreDB positions, their arithmetic, and whether reading $all from the
//     position an append answered starts exactly at that append's last event;
//   - real ordering under load, cluster behaviour (gossip, leader election, not-leader
//     redirects, follower reads), node discovery beyond one address;
//   - idempotent appends: a repeated append with the same event ids is written again here,
//     whereas EventStoreDB recognises it; stream deletion, tombstones, stream metadata,
//     $maxAge/$maxCount truncation, scavenging;
//   - TLS, authentication and ACLs (it serves plain text and ignores credentials);
//   - persistent subscriptions, projections, BatchAppend, the server-features and gossip
//     services (absent: the client falls back as for an old server);
//   - server-side flow control, slow-subscriber ("fell behind") handling, message size
//     limits, deadlines, performance.
package esdbtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server is one fake node. Its methods are safe for concurrent use.
type Server struct {
	addr string

	mu       sync.Mutex
	gs       *grpc.Server
	served   chan struct{} // closed when the current Serve returns
	running  bool
	log      []*record
	streams  map[string][]*record
	next     uint64 // next free log offset
	appends  int
	changed  chan struct{} // closed and replaced on every append
	subs     map[*liveSub]struct{}
	subCount int
	readFail int // >= 0: the next count read fails after that many events; -1: none
}

type record struct {
	id      uuid.UUID
	stream  string
	rev     uint64
	commit  uint64
	prepare uint64
	meta    map[string]string
	custom  []byte
	data    []byte
}

func (r *record) pos() position { return position{r.commit, r.prepare} }

type position struct{ commit, prepare uint64 }

func (p position) less(q position) bool {
	return p.commit < q.commit || (p.commit == q.commit && p.prepare < q.prepare)
}

type liveSub struct {
	drop chan struct{}
	once sync.Once
}

// New starts a server on 127.0.0.1 on a free port. The caller must Close it.
func New() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("esdbtest: listen: %w", err)
	}
	s := &Server{
		addr:     lis.Addr().String(),
		streams:  map[string][]*record{},
		changed:  make(chan struct{}),
		subs:     map[*liveSub]struct{}{},
		readFail: -1,
	}
	// A real node's log starts with its own events.
	s.appendLocked("$epochs", "$epoch-information", []byte(`{"epochNumber":0}`))
	s.appendLocked("$scavenges", "$scavengeIndexInitialized", []byte(`{}`))
	s.serve(lis)
	return s, nil
}

// URL is the connection string for the client: esdb://127.0.0.1:<port>?tls=false. It
// stays the same across Stop and Restart.
func (s *Server) URL() string { return "esdb://" + s.addr + "?tls=false" }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

func (s *Server) serve(lis net.Listener) {
	gs := grpc.NewServer()
	api.RegisterStreamsServer(gs, &streamsService{srv: s})
	served := make(chan struct{})
	s.mu.Lock()
	s.gs, s.served, s.running = gs, served, true
	s.mu.Unlock()
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
}

// Stop shuts the node down as a crash would: the listener and every connection close
// and every call in flight fails. The data is kept for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	gs, served := s.gs, s.served
	s.running = false
	s.mu.Unlock()
	gs.Stop()
	<-served
}

// Restart starts a stopped node again on the same address, with the same data.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return errors.New("esdbtest: restart: server is running")
	}
	var lis net.Listener
	var err error
	for range 50 { // the old socket may linger for a moment
		if lis, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("esdbtest: restart on %s: %w", s.addr, err)
	}
	s.serve(lis)
	return nil
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// DropSubscriptions ends every active subscription with an Unavailable error, as a node
// does when it drops a subscriber, and reports how many it ended. Events already sent
// stay sent.
func (s *Server) DropSubscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ls := range s.subs {
		ls.once.Do(func() { close(ls.drop); n++ })
	}
	return n
}

// Subscriptions reports how many subscriptions the server has accepted so far, dropped
// ones included.
func (s *Server) Subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subCount
}

// FailNextRead makes the next count read (of a stream or of $all, not a subscription)
// send afterEvents events and then fail with an Unavailable error, as a connection lost
// in the middle of a read does.
func (s *Server) FailNextRead(afterEvents int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readFail = max(afterEvents, 0)
}

// appendLocked writes one event without checks (system events); s.mu must be held or
// the server not yet shared.
func (s *Server) appendLocked(stream, typ string, data []byte) {
	s.commit(stream, []*record{{
		id:     uuid.New(),
		meta:   map[string]string{"type": typ, "content-type": "application/json"},
		custom: []byte{},
		data:   data,
	}})
}

// commit assigns revisions, positions and creation times to recs and appends them to
// stream and the log. s.mu must be held.
func (s *Server) commit(stream string, recs []*record) {
	created := strconv.FormatInt(time.Now().UnixNano()/100, 10) // .NET ticks since the Unix epoch
	rev := uint64(len(s.streams[stream]))
	for _, r := range recs {
		r.stream = stream
		r.rev = rev
		rev++
		r.prepare = s.next
		// Offsets grow by the record's size, as a log file's do.
		s.next += uint64(96 + len(stream) + len(r.data) + len(r.custom) + len(r.meta["type"]))
		r.meta["created"] = created
	}
	last := recs[len(recs)-1].prepare
	for _, r := range recs {
		r.commit = last
	}
	s.streams[stream] = append(s.streams[stream], recs...)
	s.log = append(s.log, recs...)
	close(s.changed)
	s.changed = make(chan struct{})
}

type streamsService struct {
	api.UnimplementedStreamsServer
	srv *Server
}

// Append implements the client-streaming Append call: an options message, then the
// proposed events.
func (ss *streamsService) Append(stream api.Streams_AppendServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "first append message must carry options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	if name == "" {
		return status.Error(codes.InvalidArgument, "empty stream name")
	}
	var recs []*record
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pm := msg.GetProposedMessage()
		if pm == nil {
			return status.Error(codes.InvalidArgument, "expected a proposed message")
		}
		id, err := uuidFromProto(pm.GetId())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		meta := map[string]string{}
		for k, v := range pm.GetMetadata() {
			meta[k] = v
		}
		if meta["type"] == "" || meta["content-type"] == "" {
			return status.Error(codes.InvalidArgument, "proposed message lacks type or content-type")
		}
		recs = append(recs, &record{id: id, meta: meta, custom: pm.GetCustomMetadata(), data: pm.GetData()})
	}

	s := ss.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	existing := s.streams[name]
	exists := len(existing) > 0
	var current uint64
	if exists {
		current = uint64(len(existing) - 1)
	}
	ok := true
	switch e := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Any:
	case *api.AppendReq_Options_NoStream:
		ok = !exists
	case *api.AppendReq_Options_StreamExists:
		ok = exists
	case *api.AppendReq_Options_Revision:
		ok = exists && current == e.Revision
	default:
		return status.Error(codes.InvalidArgument, "append without an expected revision")
	}
	if !ok {
		return stream.SendAndClose(&api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{
			WrongExpectedVersion: wrongExpected(opts, exists, current),
		}})
	}
	if len(recs) == 0 {
		// EventStoreDB accepts an empty append; it writes nothing.
		success := &api.AppendResp_Success{PositionOption: &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}}
		if exists {
			success.CurrentRevisionOption = &api.AppendResp_Success_CurrentRevision{CurrentRevision: current}
		} else {
			success.CurrentRevisionOption = &api.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
		}
		return stream.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: success}})
	}
	s.commit(name, recs)
	s.appends++
	if s.appends%5 == 0 {
		// A real node writes its own events (statistics, epochs) between the user's.
		s.appendLocked("$stats-"+s.addr, "$statsCollected", []byte(`{}`))
	}
	last := recs[len(recs)-1]
	return stream.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: last.rev},
		PositionOption: &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: last.commit, PreparePosition: last.prepare,
		}},
	}}})
}
