package readmodel_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/readmodel/readmodeltest"
)

func TestRedis(t *testing.T) {
	redistest.Options(t)
	readmodeltest.Run(t, func(t *testing.T) readmodel.Store {
		s, _, _ := newRedisStore(t)
		return s
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func p(n uint64) eventstore.Position { return eventstore.Position{Commit: n, Prepare: n} }

func scanAll(t *testing.T, ctx context.Context, c *redis.Client, pattern string) []string {
	t.Helper()
	var keys []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRedisKeyLayout pins the documented layout: one hash tag per model, the checkpoint as
// "commit:prepare".
func TestRedisKeyLayout(t *testing.T) {
	ctx := testCtx(t)
	s, c, prefix := newRedisStore(t)
	ns := readmodel.Namespace{Model: "vouchers", Generation: "v1-a"}
	if err := s.InitGeneration(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var b readmodel.Batch
	b.Put("client:1", []byte("entry"))
	b.IndexAdd("by-client", "x")
	if _, err := s.Apply(ctx, ns, eventstore.Position{Commit: 12, Prepare: 11}, b); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive(ctx, ns); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		prefix + ":{vouchers}:@active":          true,
		prefix + ":{vouchers}:@gens":            true,
		prefix + ":{vouchers}:v1-a:@cp":         true,
		prefix + ":{vouchers}:v1-a:k:client:1":  true,
		prefix + ":{vouchers}:v1-a:i:by-client": true,
	}
	keys := scanAll(t, ctx, c, prefix+":*")
	if len(keys) != len(want) {
		t.Fatalf("keys = %q, want %d keys", keys, len(want))
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %q", k)
		}
	}
	if cp := c.Get(ctx, prefix+":{vouchers}:v1-a:@cp").Val(); cp != "12:11" {
		t.Fatalf("checkpoint stored as %q, want 12:11", cp)
	}
	if typ := c.Type(ctx, prefix+":{vouchers}:v1-a:i:by-client").Val(); typ != "zset" {
		t.Fatalf("index is a %s", typ)
	}
}

// TestRedisDataLoss: after the keys are gone (FLUSHALL, a restart without persistence),
// the loss is visible and no write re-creates a partial read model.
func TestRedisDataLoss(t *testing.T) {
	ctx := testCtx(t)
	s, c, prefix := newRedisStore(t)
	ns := readmodel.Namespace{Model: "vouchers", Generation: "g1"}
	if err := s.InitGeneration(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	if _, err := s.Apply(ctx, ns, p(5), b); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if keys := scanAll(t, ctx, c, prefix+":*"); len(keys) > 0 {
		if err := c.Unlink(ctx, keys...).Err(); err != nil { // FLUSHALL, limited to this test's keys
			t.Fatal(err)
		}
	}
	if _, ok, err := s.Checkpoint(ctx, ns); err != nil || ok {
		t.Fatalf("Checkpoint after data loss: present=%v err=%v", ok, err)
	}
	if _, ok, err := s.Active(ctx, "vouchers"); err != nil || ok {
		t.Fatalf("Active after data loss: ok=%v err=%v", ok, err)
	}
	if _, err := s.Apply(ctx, ns, p(6), b); !errors.Is(err, readmodel.ErrNoCheckpoint) {
		t.Fatalf("Apply after data loss: %v, want ErrNoCheckpoint", err)
	}
	if n, err := s.ApplyMany(ctx, ns, []readmodel.Update{{Pos: p(6), Batch: b}, {Pos: p(7), Batch: b}}); !errors.Is(err, readmodel.ErrNoCheckpoint) || n != 0 {
		t.Fatalf("ApplyMany after data loss: %d, %v; want 0, ErrNoCheckpoint", n, err)
	}
	if keys := scanAll(t, ctx, c, prefix+":*"); len(keys) != 0 {
		t.Fatalf("writes after data loss created %q", keys)
	}
}

// TestRedisScriptCacheLoss: EVALSHA falls back when the server forgot the script, for one
// Apply and for a pipelined ApplyMany.
func TestRedisScriptCacheLoss(t *testing.T) {
	redistest.Options(t)
	if !redistest.Own() {
		t.Skip("SCRIPT FLUSH only on the throwaway redis-server")
	}
	ctx := testCtx(t)
	s, c, _ := newRedisStore(t)
	ns := readmodel.Namespace{Model: "vouchers", Generation: "g1"}
	if err := s.InitGeneration(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Apply(ctx, ns, p(1), b); err != nil || !ok {
		t.Fatalf("Apply after SCRIPT FLUSH = %v, %v", ok, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var updates []readmodel.Update
	for i := uint64(1); i <= 1000; i++ { // several chunks, so several script calls
		var b readmodel.Batch
		b.IndexAdd("seen", strconv.FormatUint(i, 10))
		updates = append(updates, readmodel.Update{Pos: p(i), Batch: b})
	}
	n, err := s.ApplyMany(ctx, ns, updates)
	if err != nil || n != 999 {
		t.Fatalf("ApplyMany after SCRIPT FLUSH = %d, %v; want 999 (1 was applied)", n, err)
	}
	members, err := s.Range(ctx, ns, "seen", "", 2000)
	if err != nil || len(members) != 999 {
		t.Fatalf("index after ApplyMany: %d members, %v", len(members), err)
	}
}

// TestRedisCorruptCheckpoint: a checkpoint the store cannot read is never written over.
func TestRedisCorruptCheckpoint(t *testing.T) {
	ctx := testCtx(t)
	s, c, prefix := newRedisStore(t)
	ns := readmodel.Namespace{Model: "vouchers", Generation: "g1"}
	for _, bad := range []string{"garbage", "12", "007:7", "1:2:3", "99999999999999999999999:1"} {
		if err := c.Set(ctx, prefix+":{vouchers}:g1:@cp", bad, 0).Err(); err != nil {
			t.Fatal(err)
		}
		var b readmodel.Batch
		b.Put("k", []byte("v"))
		if _, err := s.Apply(ctx, ns, p(100), b); !errors.Is(err, readmodel.ErrCorrupt) {
			t.Fatalf("Apply over checkpoint %q: %v, want ErrCorrupt", bad, err)
		}
		if _, ok, _ := s.Get(ctx, ns, "k"); ok {
			t.Fatalf("Apply over checkpoint %q wrote", bad)
		}
	}
	if _, _, err := s.Checkpoint(ctx, ns); !errors.Is(err, readmodel.ErrCorrupt) {
		t.Fatalf("Checkpoint of a corrupt checkpoint: %v, want ErrCorrupt", err)
	}
}

// TestRedisScriptRefusesMalformedArguments: the script validates everything before its
// first write, so a bug in the Go side cannot leave half a batch.
func TestRedisScriptRefusesMalformedArguments(t *testing.T) {
	ctx := testCtx(t)
	_, c, prefix := newRedisStore(t)
	cp, fence := prefix+":{m}:g:@cp", prefix+":{m}:@fence"
	k1, k2 := prefix+":{m}:g:k:a", prefix+":{m}:g:k:b"
	if err := c.Set(ctx, cp, "0:0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		keys []string
		args []any
	}{
		"missing key":       {[]string{cp, fence, k1}, []any{"", "", "1", "0", "1", "1", "pp", "v1", "v2"}},
		"missing fence key": {[]string{cp, k1, k2}, []any{"", "", "1", "0", "1", "1", "pp", "v1", "v2"}},
		"missing operand":   {[]string{cp, fence, k1, k2}, []any{"", "", "1", "0", "1", "1", "pp", "v1"}},
		"extra operand":     {[]string{cp, fence, k1, k2}, []any{"", "", "1", "0", "1", "1", "pp", "v1", "v2", "v3"}},
		"unknown operation": {[]string{cp, fence, k1, k2}, []any{"", "", "1", "0", "1", "1", "pq", "v1", "v2"}},
		"bad position":      {[]string{cp, fence, k1, k2}, []any{"", "", "1", "0", "01", "1", "pp", "v1", "v2"}},
		"negative position": {[]string{cp, fence, k1, k2}, []any{"", "", "1", "0", "-1", "1", "pp", "v1", "v2"}},
		"huge position":     {[]string{cp, fence, k1, k2}, []any{"", "", "1", "0", "123456789012345678901", "1", "pp", "v1", "v2"}},
		"bad requirement":   {[]string{cp, fence, k1, k2}, []any{"x", "", "1", "0", "1", "1", "pp", "v1", "v2"}},
		"no updates":        {[]string{cp, fence}, []any{"", "", "0", "0"}},
		"bad count":         {[]string{cp, fence, k1, k2}, []any{"", "", "1.5", "0", "1", "1", "pp", "v1", "v2"}},
		"count too high":    {[]string{cp, fence, k1, k2}, []any{"", "", "2", "0", "1", "1", "pp", "v1", "v2"}},
		"missing token":     {[]string{cp, fence, k1, k2}, []any{"", "", "1", "1", "1", "pp", "v1", "v2"}},
		"empty token":       {[]string{cp, fence, k1, k2}, []any{"", "", "1", "", "1", "1", "pp", "v1", "v2"}},
		"bad token":         {[]string{cp, fence, k1, k2}, []any{"", "", "1", "07", "1", "1", "pp", "v1", "v2"}},
		"negative token":    {[]string{cp, fence, k1, k2}, []any{"", "", "1", "-7", "1", "1", "pp", "v1", "v2"}},
		"huge token":        {[]string{cp, fence, k1, k2}, []any{"", "", "1", "123456789012345678901", "1", "1", "pp", "v1", "v2"}},
		"out of order": {[]string{cp, fence, k1, k2}, []any{"", "", "2", "0",
			"2", "2", "p", "1", "1", "p", "v1", "v2"}},
		"bad second update": {[]string{cp, fence, k1, k2}, []any{"", "", "2", "0",
			"1", "1", "p", "2", "2", "z", "v1", "v2"}},
	}
	for name, tc := range cases {
		err := readmodel.ApplyScript.Run(ctx, c, tc.keys, tc.args...).Err()
		if err == nil || !strings.Contains(err.Error(), "KLINVALID") {
			t.Fatalf("%s: script error %v, want KLINVALID", name, err)
		}
		if n := c.Exists(ctx, k1, k2, fence).Val(); n != 0 {
			t.Fatalf("%s: the script wrote %d keys", name, n)
		}
		if v := c.Get(ctx, cp).Val(); v != "0:0" {
			t.Fatalf("%s: checkpoint became %q", name, v)
		}
	}
}

// TestRedisScriptRequiredPosition: a run whose predecessor was not applied is refused
// whole, so ApplyMany can never apply an update without the ones before it.
func TestRedisScriptRequiredPosition(t *testing.T) {
	ctx := testCtx(t)
	_, c, prefix := newRedisStore(t)
	cp, fence := prefix+":{m}:g:@cp", prefix+":{m}:@fence"
	k1 := prefix + ":{m}:g:k:a"
	if err := c.Set(ctx, cp, "5:5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := readmodel.ApplyScript.Run(ctx, c, []string{cp, fence, k1}, "6", "6", "1", "3", "7", "7", "p", "v").Int()
	if err != nil || n != -1 {
		t.Fatalf("script with an unmet requirement = %d, %v; want -1", n, err)
	}
	if c.Exists(ctx, k1, fence).Val() != 0 || c.Get(ctx, cp).Val() != "5:5" {
		t.Fatal("script with an unmet requirement wrote")
	}
	n, err = readmodel.ApplyScript.Run(ctx, c, []string{cp, fence, k1}, "5", "5", "1", "3", "7", "7", "p", "v").Int()
	if err != nil || n != 1 || c.Get(ctx, cp).Val() != "7:7" || c.Get(ctx, fence).Val() != "3" {
		t.Fatalf("script with a met requirement = %d, %v", n, err)
	}
}

// TestRedisScriptFence: the apply script refuses a token below the recorded one before its
// first write, records a greater one, and leaves the fence alone when unfenced.
func TestRedisScriptFence(t *testing.T) {
	ctx := testCtx(t)
	_, c, prefix := newRedisStore(t)
	cp, fence := prefix+":{m}:g:@cp", prefix+":{m}:@fence"
	k1 := prefix + ":{m}:g:k:a"
	if err := c.Set(ctx, cp, "5:5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// 2^53+1 and 2^53 are the same double: the comparison must be exact.
	if err := c.Set(ctx, fence, "9007199254740993", 0).Err(); err != nil {
		t.Fatal(err)
	}
	run := func(token string, p string) (int, error) {
		return readmodel.ApplyScript.Run(ctx, c, []string{cp, fence, k1}, "", "", "1", token, p, p, "p", "v"+p).Int()
	}
	for _, stale := range []string{"9007199254740992", "1", "999999999999999"} {
		if n, err := run(stale, "6"); err != nil || n != -3 {
			t.Fatalf("stale token %s = %d, %v; want -3", stale, n, err)
		}
		if c.Exists(ctx, k1).Val() != 0 || c.Get(ctx, cp).Val() != "5:5" || c.Get(ctx, fence).Val() != "9007199254740993" {
			t.Fatalf("stale token %s wrote", stale)
		}
	}
	if n, err := run("9007199254740993", "6"); err != nil || n != 1 {
		t.Fatalf("equal token = %d, %v; want 1", n, err)
	}
	if n, err := run("0", "7"); err != nil || n != 1 || c.Get(ctx, fence).Val() != "9007199254740993" {
		t.Fatalf("unfenced = %d, %v, fence %q", n, err, c.Get(ctx, fence).Val())
	}
	if n, err := run("18446744073709551615", "8"); err != nil || n != 1 || c.Get(ctx, fence).Val() != "18446744073709551615" {
		t.Fatalf("greater token = %d, %v, fence %q", n, err, c.Get(ctx, fence).Val())
	}
	if n, err := run("18446744073709551614", "9"); err != nil || n != -3 {
		t.Fatalf("token below 2^64-1 = %d, %v; want -3", n, err)
	}
}

// TestRedisFenceKey pins where the fence lives (the model's hash tag, outside every
// generation), that it holds the token in decimal, and that it survives every drop.
func TestRedisFenceKey(t *testing.T) {
	ctx := testCtx(t)
	s, c, prefix := newRedisStore(t)
	f, err := readmodel.Fenced(s, "vouchers", 7)
	if err != nil {
		t.Fatal(err)
	}
	g1 := readmodel.Namespace{Model: "vouchers", Generation: "g1"}
	g2 := readmodel.Namespace{Model: "vouchers", Generation: "g2"}
	for _, ns := range []readmodel.Namespace{g1, g2} {
		if err := f.InitGeneration(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	key := prefix + ":{vouchers}:@fence"
	if v := c.Get(ctx, key).Val(); v != "7" {
		t.Fatalf("fence %s holds %q, want 7", key, v)
	}
	if err := f.SetActive(ctx, g2); err != nil {
		t.Fatal(err)
	}
	if err := f.DropGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	// No operation unsets the active pointer: remove it by hand so that every generation
	// can be dropped.
	if err := c.Del(ctx, prefix+":{vouchers}:@active").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.DropGeneration(ctx, g2); err != nil {
		t.Fatal(err)
	}
	keys := scanAll(t, ctx, c, prefix+":*")
	if len(keys) != 1 || keys[0] != key || c.Get(ctx, key).Val() != "7" {
		t.Fatalf("after dropping every generation the keys are %q, want only the fence at 7", keys)
	}
}

// TestRedisCorruptFence: a fence the store cannot read refuses every fenced write, which
// writes nothing; unfenced writes do not read it.
func TestRedisCorruptFence(t *testing.T) {
	ctx := testCtx(t)
	s, c, prefix := newRedisStore(t)
	g1 := readmodel.Namespace{Model: "vouchers", Generation: "g1"}
	g2 := readmodel.Namespace{Model: "vouchers", Generation: "g2"}
	for _, ns := range []readmodel.Namespace{g1, g2} {
		if err := s.InitGeneration(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetActive(ctx, g1); err != nil {
		t.Fatal(err)
	}
	f, err := readmodel.Fenced(s, "vouchers", 5)
	if err != nil {
		t.Fatal(err)
	}
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	for _, bad := range []string{"garbage", "", "07", "-1", "123456789012345678901"} {
		if err := c.Set(ctx, prefix+":{vouchers}:@fence", bad, 0).Err(); err != nil {
			t.Fatal(err)
		}
		checks := map[string]error{}
		checks["InitGeneration"] = f.InitGeneration(ctx, readmodel.Namespace{Model: "vouchers", Generation: "g3"})
		_, checks["Apply"] = f.Apply(ctx, g1, p(1), b)
		_, checks["ApplyMany"] = f.ApplyMany(ctx, g1, []readmodel.Update{{Pos: p(1), Batch: b}})
		checks["SetActive"] = f.SetActive(ctx, g2)
		checks["DropGeneration"] = f.DropGeneration(ctx, g2)
		for name, err := range checks {
			if !errors.Is(err, readmodel.ErrCorrupt) {
				t.Fatalf("fenced %s over fence %q: %v, want ErrCorrupt", name, bad, err)
			}
		}
		if c.Get(ctx, prefix+":{vouchers}:@fence").Val() != bad {
			t.Fatalf("a fenced write replaced the corrupt fence %q", bad)
		}
		if n := c.Exists(ctx, prefix+":{vouchers}:g3:@cp", prefix+":{vouchers}:g1:k:k").Val(); n != 0 {
			t.Fatalf("fenced writes over fence %q wrote %d keys", bad, n)
		}
		if gen, _, _ := s.Active(ctx, "vouchers"); gen != "g1" {
			t.Fatalf("fenced SetActive over fence %q switched to %q", bad, gen)
		}
		if _, ok, _ := s.Checkpoint(ctx, g2); !ok {
			t.Fatalf("fenced DropGeneration over fence %q dropped", bad)
		}
	}
	if ok, err := s.Apply(ctx, g1, p(1), b); err != nil || !ok {
		t.Fatalf("unfenced Apply over a corrupt fence = %v, %v", ok, err)
	}
}

func TestRedisUnavailable(t *testing.T) {
	ctx := testCtx(t)
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1})
	defer client.Close()
	s, err := readmodel.NewRedis(client)
	if err != nil {
		t.Fatal(err)
	}
	ns := readmodel.Namespace{Model: "vouchers", Generation: "g1"}
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	checks := map[string]error{}
	_, _, checks["Get"] = s.Get(ctx, ns, "k")
	_, checks["GetMany"] = s.GetMany(ctx, ns, []string{"k"})
	_, _, checks["Checkpoint"] = s.Checkpoint(ctx, ns)
	_, checks["Apply"] = s.Apply(ctx, ns, p(1), b)
	_, checks["ApplyMany"] = s.ApplyMany(ctx, ns, []readmodel.Update{{Pos: p(1), Batch: b}})
	_, checks["Range"] = s.Range(ctx, ns, "i", "", 1)
	_, _, checks["Active"] = s.Active(ctx, "vouchers")
	checks["SetActive"] = s.SetActive(ctx, ns)
	checks["InitGeneration"] = s.InitGeneration(ctx, ns)
	checks["DropGeneration"] = s.DropGeneration(ctx, ns)
	_, checks["Generations"] = s.Generations(ctx, "vouchers")
	f, err := readmodel.Fenced(s, "vouchers", 1)
	if err != nil {
		t.Fatal(err)
	}
	checks["fenced InitGeneration"] = f.InitGeneration(ctx, ns)
	_, checks["fenced Apply"] = f.Apply(ctx, ns, p(1), b)
	_, checks["fenced ApplyMany"] = f.ApplyMany(ctx, ns, []readmodel.Update{{Pos: p(1), Batch: b}})
	checks["fenced SetActive"] = f.SetActive(ctx, ns)
	checks["fenced DropGeneration"] = f.DropGeneration(ctx, ns)
	for name, err := range checks {
		if !errors.Is(err, readmodel.ErrUnavailable) {
			t.Errorf("%s without a server: %v, want ErrUnavailable", name, err)
		}
	}
}

func TestNewRedisOptions(t *testing.T) {
	if _, err := readmodel.NewRedis(nil); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("NewRedis(nil): %v", err)
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, bad := range []string{"", "a*", "{kl}", "k l", strings.Repeat("k", 65)} {
		if _, err := readmodel.NewRedis(client, readmodel.WithKeyPrefix(bad)); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("WithKeyPrefix(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := readmodel.NewRedis(client, readmodel.WithKeyPrefix("keyledger:prod")); err != nil {
		t.Fatal(err)
	}
}

// scanCalls is how many SCAN commands the server has run.
func scanCalls(t *testing.T, ctx context.Context, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_scan:calls="); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// Generations reads the model's registry: no SCAN of the keyspace (which, after a
// rebuild of every model in a store of millions of keys, kept Redis busy for a minute).
// A store written before the registry existed is scanned once and its generations
// registered; dropped generations leave the registry.
func TestRedisGenerationsRegistry(t *testing.T) {
	ctx := testCtx(t)
	s, c, prefix := newRedisStore(t)
	for _, g := range []string{"v1-a", "v1-b", "v2-c"} {
		if err := s.InitGeneration(ctx, readmodel.Namespace{Model: "vouchers", Generation: g}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetActive(ctx, readmodel.Namespace{Model: "vouchers", Generation: "v1-b"}); err != nil {
		t.Fatal(err)
	}
	list := func() []string {
		t.Helper()
		gens, err := s.Generations(ctx, "vouchers")
		if err != nil {
			t.Fatal(err)
		}
		return gens
	}
	before := scanCalls(t, ctx, c)
	if got := strings.Join(list(), ","); got != "v1-a,v1-b,v2-c" {
		t.Fatalf("Generations = %s", got)
	}
	if n := scanCalls(t, ctx, c) - before; n != 0 {
		t.Fatalf("Generations ran %d SCANs with the registry in place", n)
	}
	if err := s.DropGeneration(ctx, readmodel.Namespace{Model: "vouchers", Generation: "v1-a"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(list(), ","); got != "v1-b,v2-c" {
		t.Fatalf("after dropping v1-a: Generations = %s", got)
	}

	// A store from before the registry: no registry key at all, then a registry that
	// lacks the active generation (a new generation registered by a newer process).
	gensKey := prefix + ":{vouchers}:@gens"
	for _, prepare := range []func() error{
		func() error { return c.Del(ctx, gensKey).Err() },
		func() error { return errors.Join(c.Del(ctx, gensKey).Err(), c.SAdd(ctx, gensKey, "v2-c").Err()) },
	} {
		if err := prepare(); err != nil {
			t.Fatal(err)
		}
		before = scanCalls(t, ctx, c)
		if got := strings.Join(list(), ","); got != "v1-b,v2-c" {
			t.Fatalf("without a complete registry: Generations = %s", got)
		}
		if scanCalls(t, ctx, c) == before {
			t.Fatal("an incomplete registry was trusted without a scan")
		}
		reg, err := c.SMembers(ctx, gensKey).Result()
		if err != nil || len(reg) != 2 {
			t.Fatalf("registry after the scan: %q, %v; want both generations registered", reg, err)
		}
		before = scanCalls(t, ctx, c)
		list()
		if n := scanCalls(t, ctx, c) - before; n != 0 {
			t.Fatalf("%d SCANs once the registry was repaired", n)
		}
	}
}
