package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mrand "math/rand/v2"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/keys"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/domain/tenant"
	"github.com/keyledger/keyledger/domain/user"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/internal/fixture"
)

// The base world, created through the API: one producer tenant with one e-service, one
// consumer tenant with one purpose of it (activated by the producer), and the consumer's
// e-service clients holding the load keys, each linked to the purpose.
const (
	producerTenant  = "bench-producer"
	producerAdmin   = "producer-admin"
	consumerTenant  = "bench-consumer"
	consumerAdmin   = "consumer-admin"
	benchAudience   = "https://api.bench-producer.example/eservice"
	voucherLifetime = 600
	keysPerClient   = 4  // load keys per load client
	seedWorkers     = 16 // concurrent API calls while seeding
	worldFile       = "world.json"
)

// world is the seeded base world: what the load and the bound need to know of it. It is
// kept next to the base data directory (world.json) so that -work can reuse it.
type world struct {
	ProducerTenant   string        `json:"producerTenant"`
	ConsumerTenant   string        `json:"consumerTenant"`
	EServiceID       string        `json:"eserviceId"`
	EServiceAudience string        `json:"eserviceAudience"`
	VoucherLifetime  int           `json:"voucherLifetimeSeconds"`
	PurposeID        string        `json:"purposeId"`
	Clients          []worldClient `json:"clients"`
}

type worldClient struct {
	ID   string   `json:"id"`
	KIDs []string `json:"kids"`
}

// keyCount is the number of keys the world registered.
func (w *world) keyCount() int {
	n := 0
	for _, c := range w.Clients {
		n += len(c.KIDs)
	}
	return n
}

// loadKeys pairs the world's kids with the client keys that have them.
func (w *world) loadKeys(ks []clientKey) ([]loadKey, error) {
	byKID := map[string]clientKey{}
	for _, k := range ks {
		byKID[k.kid] = k
	}
	var out []loadKey
	for _, c := range w.Clients {
		for _, kid := range c.KIDs {
			k, ok := byKID[kid]
			if !ok {
				return nil, fmt.Errorf("the seeded world has key %s of client %s, whose private key is not among the client keys (delete the work directory)", kid, c.ID)
			}
			out = append(out, loadKey{clientID: c.ID, key: k})
		}
	}
	return out, nil
}

func readWorld(dir string) (*world, error) {
	data, err := os.ReadFile(filepath.Join(dir, worldFile))
	if err != nil {
		return nil, err
	}
	var w world
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, worldFile), err)
	}
	return &w, nil
}

func writeWorld(dir string, w *world) error {
	data, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, worldFile), data, 0o640)
}

// devToken runs `keyledger token` on dataDir: a user token the server of that data
// directory trusts (development mode).
func devToken(ctx context.Context, bin, dataDir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"token", "--ttl", "2h"}, args...)...)
	cmd.Env = append(cleanEnv(), "KEYLEDGER_DATA_DIR="+dataDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("keyledger token %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// apiClient calls the Keyledger API with one user's token.
type apiClient struct {
	hc    *http.Client
	base  string
	token string
}

// call sends body as JSON and decodes a 200 or 201 answer into out.
func (c apiClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: answer %q: %w", method, path, data, err)
	}
	return nil
}

// seedWorld creates the base world through the API of the server s (on dataDir), with
// every load key registered on a client: keysPerClient keys per client.
func seedWorld(ctx context.Context, s *server, bin, dataDir string, ks []clientKey) (*world, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: seedWorkers}}
	defer hc.CloseIdleConnections()
	opTok, err := devToken(ctx, bin, dataDir, "--operator")
	if err != nil {
		return nil, err
	}
	op := apiClient{hc: hc, base: s.base, token: opTok}
	for _, t := range []struct{ id, name, admin, adminName string }{
		{producerTenant, "Bench producer", producerAdmin, "Producer admin"},
		{consumerTenant, "Bench consumer", consumerAdmin, "Consumer admin"},
	} {
		body := map[string]any{"id": t.id, "name": t.name, "admin": map[string]string{"id": t.admin, "name": t.adminName}}
		if err := op.call(ctx, http.MethodPost, "/v1/tenants", body, nil); err != nil {
			return nil, err
		}
	}
	prodTok, err := devToken(ctx, bin, dataDir, "--tenant", producerTenant, "--user", producerAdmin)
	if err != nil {
		return nil, err
	}
	consTok, err := devToken(ctx, bin, dataDir, "--tenant", consumerTenant, "--user", consumerAdmin)
	if err != nil {
		return nil, err
	}
	prod := apiClient{hc: hc, base: s.base, token: prodTok}
	cons := apiClient{hc: hc, base: s.base, token: consTok}

	w := &world{ProducerTenant: producerTenant, ConsumerTenant: consumerTenant, EServiceAudience: benchAudience, VoucherLifetime: voucherLifetime}
	var es struct {
		ID string `json:"id"`
	}
	if err := prod.call(ctx, http.MethodPost, "/v1/eservices", map[string]any{"name": "Bench e-service",
		"audience": w.EServiceAudience, "voucherLifetimeSeconds": w.VoucherLifetime}, &es); err != nil {
		return nil, err
	}
	w.EServiceID = es.ID
	var p struct {
		ID string `json:"id"`
	}
	if err := cons.call(ctx, http.MethodPost, "/v1/purposes", map[string]any{"eserviceId": w.EServiceID, "title": "Bench token load"}, &p); err != nil {
		return nil, err
	}
	w.PurposeID = p.ID
	if err := prod.call(ctx, http.MethodPost, "/v1/purposes/"+p.ID+"/activate", nil, nil); err != nil {
		return nil, err
	}

	nClients := (len(ks) + keysPerClient - 1) / keysPerClient
	w.Clients = make([]worldClient, nClients)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, seedWorkers)
	for wk := range errs {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= nClients {
					return
				}
				batch := ks[i*keysPerClient : min((i+1)*keysPerClient, len(ks))]
				var upload []map[string]string
				for j, k := range batch {
					upload = append(upload, map[string]string{"name": fmt.Sprintf("load key %d", j+1), "use": "sig", "alg": "RS256", "key": k.pem})
				}
				var created struct {
					ID   string `json:"id"`
					Keys []struct {
						KID string `json:"kid"`
					} `json:"keys"`
				}
				if err := cons.call(ctx, http.MethodPost, "/v1/clients", map[string]any{"kind": "eservice",
					"name": fmt.Sprintf("Load client %04d", i+1), "members": []string{consumerAdmin}, "keys": upload}, &created); err != nil {
					errs[wk] = err
					return
				}
				wc := worldClient{ID: created.ID}
				for _, k := range batch {
					if !containsKID(created.Keys, k.kid) {
						errs[wk] = fmt.Errorf("client %s: the server did not answer kid %s for an uploaded key (its thumbprint as computed here)", created.ID, k.kid)
						return
					}
					wc.KIDs = append(wc.KIDs, k.kid)
				}
				if err := cons.call(ctx, http.MethodPost, "/v1/clients/"+created.ID+"/purposes", map[string]any{"purposeId": w.PurposeID}, nil); err != nil {
					errs[wk] = err
					return
				}
				w.Clients[i] = wc
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, ctx.Err()
}

func containsKID(ks []struct {
	KID string `json:"kid"`
}, kid string) bool {
	for _, k := range ks {
		if k.KID == kid {
			return true
		}
	}
	return false
}

// Shape of the filler: keys registered by other tenants' clients, which the load never
// uses but the server's read models hold.
const (
	fillerTenants      = 200 // consumer tenants, each with an admin and one purpose of the bench e-service
	fillerMaxKeys      = 5   // keys per filler client: 1 to 5
	fillerAPIClientPct = 20  // API clients (entries per (client, kid), no purpose)
)

// fillerStats says what seedFiller wrote.
type fillerStats struct {
	keys, clients, events int
	took                  time.Duration
	sample                []fillerClient // the first fillerSample clients
}

// fillerClient is a filler client: its kids, and its purpose (empty for an API client).
type fillerClient struct {
	id, purposeID string
	kids          []string
}

const fillerSample = 100

// seedFiller appends, to the embedded store in dataDir (no server running on it),
// the events of n more registered keys on clients of fillerTenants other consumer
// tenants: the tenants with their admins, one purpose each of the base world's
// e-service (requested, then activated by the producer), and clients created with 1 to
// fillerMaxKeys P-256 keys each (every kid reserved, as commands.Service reserves it),
// e-service clients then linked to their tenant's purpose. The events are decided by the
// domain aggregates and encoded as commands.Service encodes them, one append per command
// step, many appends at a time (group commit).
func seedFiller(ctx context.Context, dataDir string, w *world, n int, logf func(string, ...any)) (fillerStats, error) {
	start := time.Now()
	es, err := embedded.Open(ctx, dataDir, embedded.WithWALAutocheckpoint(1<<16))
	if err != nil {
		return fillerStats{}, err
	}
	fw := fixture.NewWriter(ctx, es, 0)
	st, genErr := generateFiller(ctx, fw, w, n, logf)
	werr := fw.Close()
	st.events = fw.Events()
	cerr := es.Close()
	st.took = time.Since(start)
	return st, errors.Join(genErr, werr, cerr)
}

// fillerKeys generates n distinct P-256 public keys on every core but one (the
// generator needs one), as keyring.NewKeys with their RFC 7638 kids.
func fillerKeys(ctx context.Context, n int) (<-chan keyring.NewKey, func() error) {
	out := make(chan keyring.NewKey, 4096)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := max(1, runtime.GOMAXPROCS(0)-1)
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					errs[w] = err
					return
				}
				k, err := keys.FromPublic(&priv.PublicKey)
				if err != nil {
					errs[w] = err
					return
				}
				select {
				case out <- keyring.NewKey{KID: k.KID(), Name: fmt.Sprintf("key %d", i+1), Use: "sig", Alg: k.DefaultAlg(), KeyType: k.Type(), PEM: k.PEM()}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(out); close(done) }()
	return out, func() error { <-done; return errors.Join(errs...) }
}

func generateFiller(ctx context.Context, fw *fixture.Writer, w *world, n int, logf func(string, ...any)) (fillerStats, error) {
	var st fillerStats
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keyc, keyErr := fillerKeys(gctx, n)
	rng := mrand.New(mrand.NewPCG(uint64(n), 7))
	at := time.Now().Add(-30 * 24 * time.Hour).UTC()
	now := func() time.Time {
		at = at.Add(time.Duration(1+rng.IntN(20)) * time.Millisecond)
		return at
	}
	operator := domain.Actor{ID: "operator", Kind: eventstore.ActorOperator, Operator: true}
	producer := domain.Actor{ID: producerAdmin, Kind: eventstore.ActorUser, Tenant: w.ProducerTenant, Roles: domain.Roles{domain.RoleAdmin}}

	// The tenants, each with its admin and one active purpose of the bench e-service.
	type fillerTenant struct {
		admin   domain.Actor
		purpose string
	}
	tenants := make([]fillerTenant, fillerTenants)
	for i := range tenants {
		id := fmt.Sprintf("filler-%03d", i)
		adminID := "admin"
		opActor := operator
		opActor.Tenant = id
		t, err := tenant.Create(opActor, id, fmt.Sprintf("Filler tenant %03d", i), adminID, "Filler admin", now())
		if err != nil {
			return st, err
		}
		corr := uuid.NewString()
		fw.Send(fixture.Append{Stream: tenant.StreamName(id), AggregateID: id, Actor: opActor, CorrelationID: corr, Events: t.Pending(), Last: true})
		u := user.New(id, adminID)
		if err := u.Register(opActor, "Filler admin", []string{string(domain.RoleAdmin)}, now()); err != nil {
			return st, err
		}
		fw.Send(fixture.Append{Stream: user.StreamName(id, adminID), AggregateID: adminID, Actor: opActor, CorrelationID: corr, Events: u.Pending(), Last: true})
		admin := domain.Actor{ID: adminID, Kind: eventstore.ActorUser, Tenant: id, Roles: domain.Roles{domain.RoleAdmin}}
		pid := uuid.NewString()
		p := purpose.New(pid)
		if err := p.Create(admin, purpose.EServiceInfo{ID: w.EServiceID, ProducerTenant: w.ProducerTenant, Active: true},
			fmt.Sprintf("Filler purpose of %s", id), now()); err != nil {
			return st, err
		}
		fw.Send(fixture.Append{Stream: purpose.StreamName(pid), AggregateID: pid, Actor: admin, Events: p.Pending()})
		sent := len(p.Pending())
		if err := p.Activate(producer, now()); err != nil {
			return st, err
		}
		fw.Send(fixture.Append{Stream: purpose.StreamName(pid), AggregateID: pid, Actor: producer, Events: p.Pending()[sent:], Last: true})
		tenants[i] = fillerTenant{admin: admin, purpose: pid}
	}

	// The catalogue is in the log before any client links to it.
	if err := fw.Barrier(); err != nil {
		return st, err
	}

	// The clients, until n keys are registered.
	lastLog := time.Now()
	for st.keys < n {
		if err := fw.Err(); err != nil {
			return st, err
		}
		t := tenants[rng.IntN(len(tenants))]
		kind := client.KindEService
		if rng.IntN(100) < fillerAPIClientPct {
			kind = client.KindAPI
		}
		var ks []keyring.NewKey
		for range min(1+rng.IntN(fillerMaxKeys), n-st.keys) {
			k, ok := <-keyc
			if !ok {
				return st, errors.Join(keyErr(), errors.New("the filler key generator stopped early"))
			}
			ks = append(ks, k)
		}
		id := uuid.NewString()
		c := client.New(id)
		if err := c.Create(t.admin, client.Spec{Kind: kind, Name: fmt.Sprintf("Filler client %07d", st.clients+1),
			Members: map[string]bool{t.admin.ID: true}, Keys: ks}, 100, now()); err != nil {
			return st, err
		}
		// As commands.Service: each kid is reserved (its own stream), then the client's
		// append; a purpose link is a later command.
		corr := uuid.NewString()
		for _, k := range ks {
			r := commands.Claimed{Value: k.KID, Owner: "client:" + id, At: domain.Time(at)}
			fw.Send(fixture.Append{Stream: "kid-" + k.KID, AggregateID: k.KID, Actor: t.admin, CorrelationID: corr,
				Events: []domain.Event{r}, Last: true})
		}
		link := kind == client.KindEService
		fw.Send(fixture.Append{Stream: client.StreamName(id), AggregateID: id, Actor: t.admin, CorrelationID: corr, Events: c.Pending(), Last: !link})
		if link {
			sent := len(c.Pending())
			if err := c.AddPurpose(t.admin, client.PurposeInfo{ID: t.purpose, EServiceID: w.EServiceID, ConsumerTenant: t.admin.Tenant, Linkable: true}, now()); err != nil {
				return st, err
			}
			fw.Send(fixture.Append{Stream: client.StreamName(id), AggregateID: id, Actor: t.admin, Events: c.Pending()[sent:], Last: true})
		}
		if len(st.sample) < fillerSample {
			fc := fillerClient{id: id}
			if link {
				fc.purposeID = t.purpose
			}
			for _, k := range ks {
				fc.kids = append(fc.kids, k.KID)
			}
			st.sample = append(st.sample, fc)
		}
		st.keys += len(ks)
		st.clients++
		if time.Since(lastLog) > 10*time.Second {
			logf("filler: %d of %d keys, %d events written", st.keys, n, fw.Events())
			lastLog = time.Now()
		}
	}
	cancel()
	if err := keyErr(); err != nil && !errors.Is(err, context.Canceled) {
		return st, err
	}
	return st, nil
}
