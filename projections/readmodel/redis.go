package readmodel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/eventstore"
)

// Redis is the production Store, on go-redis v9.
//
// # Key layout
//
// With the default prefix "kl", read model M, generation G:
//
//	kl:{M}:@active       string: the active generation of M
//	kl:{M}:@fence        string: the greatest fencing token recorded for M, in decimal
//	kl:{M}:@gens         set: the generations of M that have a checkpoint (Generations)
//	kl:{M}:G:@cp         string: the checkpoint of G, "commit:prepare" in decimal
//	kl:{M}:G:k:<key>     string: a value
//	kl:{M}:G:i:<index>   sorted set, every score 0: an index (ZRANGEBYLEX order)
//
// Generation names cannot hold '@' or ':', so the keys of a generation (kl:{M}:G:*) never
// include the model's own keys: the active pointer, the fence and the registry survive
// every drop.
//
// The hash tag {M} puts every key of a read model — all of its generations, its active
// pointer and its fence — in one Redis Cluster hash slot. That is what lets one Lua script
// check the fencing token and apply a batch with its checkpoint, switch the active
// generation only to a generation that exists, and check "not active" before a drop, and
// lets ApplyMany pipeline to a single node. The price: one read model cannot be spread over
// several cluster nodes (it must fit on one, twice over during a rebuild, when two
// generations coexist), and a busy read model loads one shard. A tag per generation ({M:G})
// would let the two generations of a rebuild live on different nodes but would make the
// switch and the drop guard non-atomic; Keyledger's read models are small enough for one
// node.
//
// # Atomicity
//
// Apply runs one Lua script (EVALSHA, falling back to EVAL when the server has lost its
// script cache) that reads the checkpoint, compares positions, and then either writes
// everything or nothing. ApplyMany runs the same script over chunks of consecutive
// updates (up to 256 updates or 2,048 operations per call), all chunks in one pipeline. Redis does not roll a script back when a command fails half-way,
// so the batch is validated before it is sent, values and indexes live under distinct
// sub-prefixes (no WRONGTYPE is possible), and the script checks all of its arguments
// before its first write. Positions and fencing tokens are compared as decimal strings
// (length, then bytes), never as Lua numbers, which are doubles and lose precision above
// 2^53.
//
// Every write script takes the model's fence key and a fencing token ("0" when the store
// is not Fenced, and then the script neither reads nor writes the fence). A fenced script
// compares the token with the recorded one before anything else and, once nothing else
// can refuse the call, records it in the same script as the write it guards.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

var _ Store = (*Redis)(nil)

// RedisOption configures NewRedis.
type RedisOption func(*Redis) error

// WithKeyPrefix replaces the "kl" that starts every key (letters, digits, '_', '.', '-'
// and ':'). Default "kl". Two deployments sharing one Redis must use different prefixes;
// changing the prefix of a running deployment loses its read models (they are rebuilt).
func WithKeyPrefix(prefix string) RedisOption {
	return func(r *Redis) error {
		if prefix == "" || len(prefix) > maxNameLen {
			return fmt.Errorf("%w: key prefix %q must be 1 to %d bytes", ErrInvalid, prefix, maxNameLen)
		}
		if err := validateName("key prefix", strings.ReplaceAll(prefix, ":", "_")); err != nil {
			return err
		}
		r.prefix = prefix
		return nil
	}
}

// NewRedis returns a Store on client. The client stays the caller's: NewRedis does not
// close it. Size the client's pool for the voucher path's concurrency.
func NewRedis(client redis.UniversalClient, opts ...RedisOption) (*Redis, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalid)
	}
	r := &Redis{client: client, prefix: "kl"}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Key builders: each is one concatenation, so one allocation on the lookup path.
func (r *Redis) modelPrefix(model string) string { return r.prefix + ":{" + model + "}:" }
func (r *Redis) activeKey(model string) string   { return r.prefix + ":{" + model + "}:@active" }
func (r *Redis) fenceKey(model string) string    { return r.prefix + ":{" + model + "}:@fence" }
func (r *Redis) gensKey(model string) string     { return r.prefix + ":{" + model + "}:@gens" }
func (r *Redis) genPrefix(ns Namespace) string {
	return r.prefix + ":{" + ns.Model + "}:" + ns.Generation + ":"
}
func (r *Redis) cpKey(ns Namespace) string {
	return r.prefix + ":{" + ns.Model + "}:" + ns.Generation + ":@cp"
}
func (r *Redis) valueKey(ns Namespace, key string) string {
	return r.prefix + ":{" + ns.Model + "}:" + ns.Generation + ":k:" + key
}
func (r *Redis) indexKey(ns Namespace, index string) string {
	return r.prefix + ":{" + ns.Model + "}:" + ns.Generation + ":i:" + index
}

// luaLib is the start of every write script: comparison of decimals and of positions,
// validation of decimals, the KLINVALID and KLCORRUPT error replies, and the fence check.
//
// fence(key, token) compares a writer's token (a validated decimal) with the one recorded
// under key. It returns nil when the write may go ahead without recording anything (token
// "0", unfenced, or the token recorded already), 'new' when it may go ahead and must
// record token with SET once nothing else can refuse the call, 'stale' when a greater
// token was recorded, and 'corrupt' and the stored value when that is not a decimal.
const luaLib = `
local function cmpdec(a, b)
  if #a ~= #b then
    if #a < #b then return -1 end
    return 1
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end
local function cmppos(c1, p1, c2, p2)
  local r = cmpdec(c1, c2)
  if r ~= 0 then return r end
  return cmpdec(p1, p2)
end
local function isdec(s)
  return type(s) == 'string' and #s >= 1 and #s <= 20 and string.match(s, '^%d+$') ~= nil
    and (#s == 1 or string.sub(s, 1, 1) ~= '0')
end
local function bad(msg) return redis.error_reply('KLINVALID ' .. msg) end
local function corrupt(what, key, v)
  return redis.error_reply('KLCORRUPT ' .. what .. ' ' .. key .. ' holds ' .. string.sub(v, 1, 60))
end
local function fence(key, token)
  if token == '0' then return nil end
  local seen = redis.call('GET', key)
  if not seen then return 'new' end
  if not isdec(seen) then return 'corrupt', seen end
  local c = cmpdec(token, seen)
  if c < 0 then return 'stale' end
  if c > 0 then return 'new' end
  return nil
end
`

// applyScript applies a run of updates, each only if its position is after the checkpoint
// as it stands when its turn comes, and stores the last applied position; the whole run is
// one atomic step.
//
// KEYS[1] is the checkpoint, KEYS[2] the model's fence, KEYS[3..] one key per operation of
// every update, in order. ARGV[1], ARGV[2]: commit and prepare the checkpoint must have
// reached already, or "" and "" (ApplyMany's guard against applying a run whose
// predecessor failed). ARGV[3]: the number of updates U. ARGV[4]: the fencing token, "0"
// when unfenced. Then, per update, three arguments: commit, prepare, and one letter per
// operation (p put, d delete, a index add, r index remove, x delete index). Then the
// operands of every operation, in order: a value for p, a member for a and r.
//
// Reply: the number of updates applied (0 when all were at or below the checkpoint), -1
// when the checkpoint had not reached ARGV[1..2], -2 when there is no checkpoint, -3 when
// a greater fencing token was recorded. Every argument is checked before the first write,
// so a malformed call writes nothing; the token is recorded only when the reply is not
// negative.
var applyScript = redis.NewScript(luaLib + `
local n = tonumber(ARGV[3])
if not n or n < 1 or n ~= math.floor(n) or #ARGV < 4 + 3 * n then return bad('update count') end
if (ARGV[1] ~= '' or ARGV[2] ~= '') and not (isdec(ARGV[1]) and isdec(ARGV[2])) then
  return bad('malformed required position')
end
if not isdec(ARGV[4]) then return bad('malformed fencing token') end
local nops, nargs = 0, 0
for u = 1, n do
  local b = 4 + 3 * (u - 1)
  if not isdec(ARGV[b + 1]) or not isdec(ARGV[b + 2]) then return bad('malformed position') end
  if u > 1 and cmppos(ARGV[b + 1], ARGV[b + 2], ARGV[b - 2], ARGV[b - 1]) <= 0 then
    return bad('positions out of order')
  end
  local ops = ARGV[b + 3]
  if string.find(ops, '[^pdarx]') then return bad('unknown operation') end
  nops = nops + #ops
  local _, k = string.gsub(ops, '[par]', '')
  nargs = nargs + k
end
if #KEYS ~= 2 + nops then return bad(#KEYS .. ' keys for ' .. nops .. ' operations') end
if #ARGV ~= 4 + 3 * n + nargs then return bad(#ARGV .. ' arguments') end

local fs, seen = fence(KEYS[2], ARGV[4])
if fs == 'corrupt' then return corrupt('fence', KEYS[2], seen) end
if fs == 'stale' then return -3 end
local cur = redis.call('GET', KEYS[1])
if not cur then return -2 end
local cc, cp = string.match(cur, '^(%d+):(%d+)$')
if not cc or not isdec(cc) or not isdec(cp) then return corrupt('checkpoint', KEYS[1], cur) end
if ARGV[1] ~= '' and cmppos(cc, cp, ARGV[1], ARGV[2]) < 0 then return -1 end
if fs == 'new' then redis.call('SET', KEYS[2], ARGV[4]) end

local k, a, applied = 3, 5 + 3 * n, 0
for u = 1, n do
  local b = 4 + 3 * (u - 1)
  local ops = ARGV[b + 3]
  if cmppos(ARGV[b + 1], ARGV[b + 2], cc, cp) > 0 then
    for i = 1, #ops do
      local o = string.sub(ops, i, i)
      if o == 'p' then
        redis.call('SET', KEYS[k], ARGV[a])
        a = a + 1
      elseif o == 'd' then
        redis.call('DEL', KEYS[k])
      elseif o == 'a' then
        redis.call('ZADD', KEYS[k], 0, ARGV[a])
        a = a + 1
      elseif o == 'r' then
        redis.call('ZREM', KEYS[k], ARGV[a])
        a = a + 1
      else
        redis.call('UNLINK', KEYS[k])
      end
      k = k + 1
    end
    cc, cp = ARGV[b + 1], ARGV[b + 2]
    applied = applied + 1
  else
    k = k + #ops
    local _, skip = string.gsub(ops, '[par]', '')
    a = a + skip
  end
end
if applied > 0 then redis.call('SET', KEYS[1], cc .. ':' .. cp) end
return applied
`)

// initScript: KEYS[1] the generation's checkpoint, KEYS[2] the model's fence, KEYS[3] the
// model's generation registry, ARGV[1] the fencing token ("0": unfenced), ARGV[2] the
// generation. It creates the checkpoint at the start unless it exists, and registers the
// generation. Reply 'ok', or 'fenced'.
var initScript = redis.NewScript(luaLib + `
if not isdec(ARGV[1]) then return bad('malformed fencing token') end
local fs, seen = fence(KEYS[2], ARGV[1])
if fs == 'corrupt' then return corrupt('fence', KEYS[2], seen) end
if fs == 'stale' then return 'fenced' end
if fs == 'new' then redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('SET', KEYS[1], '0:0', 'NX')
redis.call('SADD', KEYS[3], ARGV[2])
return 'ok'
`)

// setActiveScript: KEYS[1] the active pointer, KEYS[2] the generation's checkpoint, KEYS[3]
// the model's fence, KEYS[4] the model's generation registry, ARGV[1] the generation,
// ARGV[2] the fencing token ("0": unfenced). It registers the generation too (one made
// before the registry existed). Reply 'ok', 'nocp' or 'fenced'.
var setActiveScript = redis.NewScript(luaLib + `
if not isdec(ARGV[2]) then return bad('malformed fencing token') end
local fs, seen = fence(KEYS[3], ARGV[2])
if fs == 'corrupt' then return corrupt('fence', KEYS[3], seen) end
if fs == 'stale' then return 'fenced' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'nocp' end
if fs == 'new' then redis.call('SET', KEYS[3], ARGV[2]) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 'ok'
`)

// dropGuardScript: KEYS[1] the active pointer, KEYS[2] the generation's checkpoint, KEYS[3]
// the model's fence, KEYS[4] the model's generation registry, ARGV[1] the generation,
// ARGV[2] the fencing token ("0": unfenced). It deletes the checkpoint unless the
// generation is active or the token is stale, so that no Apply or SetActive can touch the
// generation afterwards, and unregisters the generation. Reply 'ok', 'active' or
// 'fenced'.
var dropGuardScript = redis.NewScript(luaLib + `
if not isdec(ARGV[2]) then return bad('malformed fencing token') end
local fs, seen = fence(KEYS[3], ARGV[2])
if fs == 'corrupt' then return corrupt('fence', KEYS[3], seen) end
if fs == 'stale' then return 'fenced' end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 'active' end
if fs == 'new' then redis.call('SET', KEYS[3], ARGV[2]) end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
return 'ok'
`)

// withdrawScript: KEYS[1] the active pointer, KEYS[2] the model's fence, ARGV[1] the
// generation, ARGV[2] the fencing token ("0": unfenced). It deletes the active pointer if
// it names the generation. Reply 'ok' or 'fenced'.
var withdrawScript = redis.NewScript(luaLib + `
if not isdec(ARGV[2]) then return bad('malformed fencing token') end
local fs, seen = fence(KEYS[2], ARGV[2])
if fs == 'corrupt' then return corrupt('fence', KEYS[2], seen) end
if fs == 'stale' then return 'fenced' end
if fs == 'new' then redis.call('SET', KEYS[2], ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 'ok'
`)

// InitGeneration implements Store: one script call (SET NX of the checkpoint).
func (r *Redis) InitGeneration(ctx context.Context, ns Namespace) error {
	return r.initGeneration(ctx, ns, 0)
}

func (r *Redis) initGeneration(ctx context.Context, ns Namespace, token uint64) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	what := "init " + ns.String()
	res, err := initScript.Run(ctx, r.client, []string{r.cpKey(ns), r.fenceKey(ns.Model), r.gensKey(ns.Model)}, token, ns.Generation).Text()
	if err != nil {
		return scriptError(what, err)
	}
	return fencedReply(what, res, token)
}

// Apply implements Store: one EVALSHA (EVAL if the server lost its script cache).
func (r *Redis) Apply(ctx context.Context, ns Namespace, pos eventstore.Position, batch Batch) (bool, error) {
	return r.apply(ctx, ns, 0, pos, batch)
}

func (r *Redis) apply(ctx context.Context, ns Namespace, token uint64, pos eventstore.Position, batch Batch) (bool, error) {
	if err := ns.Validate(); err != nil {
		return false, err
	}
	if err := batch.Validate(); err != nil {
		return false, fmt.Errorf("apply to %s at %s: %w", ns, pos, err)
	}
	what := fmt.Sprintf("apply to %s at %s", ns, pos)
	keys, args := r.scriptArgs(ns, token, nil, []Update{{Pos: pos, Batch: batch}})
	n, err := applyScript.Run(ctx, r.client, keys, args...).Int()
	if err != nil {
		return false, scriptError(what, err)
	}
	switch n {
	case 0, 1:
		return n == 1, nil
	case -2:
		return false, fmt.Errorf("%s: %w", what, ErrNoCheckpoint)
	case -3:
		return false, fencedError(what, token)
	default:
		return false, fmt.Errorf("%s: %w: unexpected script reply %d", what, ErrUnavailable, n)
	}
}

// Limits of one script call of ApplyMany. Larger calls amortise the script's overhead
// better but block the server longer; at these sizes one call takes about a millisecond.
const (
	chunkMaxOps     = 2048
	chunkMaxUpdates = 256
)

// maxApplyAttempts bounds the rounds of ApplyMany (a round is retried only after the
// server lost its script cache).
const maxApplyAttempts = 3

// ApplyMany implements Store. It cuts the run into chunks of consecutive updates (each
// chunk one atomic script call, so stronger than the contract's per-update atomicity) and
// sends all chunks in one pipeline. Each chunk after the first carries the position its
// predecessor ends at and is refused unless the checkpoint reached it, so a chunk that
// failed (the server lost its script cache: a restart, SCRIPT FLUSH) cannot be overtaken
// by the next; the failed chunks are sent again after loading the script. A fenced store's
// chunks each check the fence.
func (r *Redis) ApplyMany(ctx context.Context, ns Namespace, updates []Update) (int, error) {
	return r.applyMany(ctx, ns, 0, updates)
}

func (r *Redis) applyMany(ctx context.Context, ns Namespace, token uint64, updates []Update) (int, error) {
	if err := ns.Validate(); err != nil {
		return 0, err
	}
	if err := validateUpdates(updates); err != nil {
		return 0, fmt.Errorf("apply to %s: %w", ns, err)
	}
	if len(updates) == 0 {
		return 0, nil
	}
	chunks := chunkUpdates(updates)
	pending := make([]int, len(chunks))
	for i := range pending {
		pending[i] = i
	}
	applied := 0
	for attempt := 1; ; attempt++ {
		pipe := r.client.Pipeline()
		cmds := make([]*redis.Cmd, len(pending))
		for j, c := range pending {
			var after *eventstore.Position
			if c > 0 {
				prev := chunks[c-1]
				after = &prev[len(prev)-1].Pos
			}
			keys, args := r.scriptArgs(ns, token, after, chunks[c])
			cmds[j] = applyScript.EvalSha(ctx, pipe, keys, args...)
		}
		_, _ = pipe.Exec(ctx) // each command's own error is inspected below
		var retry []int
		noScript := false
		for j, c := range pending {
			what := fmt.Sprintf("apply to %s at %s..%s", ns, chunks[c][0].Pos, chunks[c][len(chunks[c])-1].Pos)
			n, err := cmds[j].Int()
			switch {
			case err != nil && redis.HasErrorPrefix(err, "NOSCRIPT"):
				noScript = true
				retry = append(retry, c)
			case err != nil:
				return applied, scriptError(what, err)
			case n >= 0 && n <= len(chunks[c]):
				applied += n
			case n == -1:
				retry = append(retry, c)
			case n == -2:
				return applied, fmt.Errorf("%s: %w", what, ErrNoCheckpoint)
			case n == -3:
				return applied, fencedError(what, token)
			default:
				return applied, fmt.Errorf("%s: %w: unexpected script reply %d", what, ErrUnavailable, n)
			}
		}
		if len(retry) == 0 {
			return applied, nil
		}
		if !noScript {
			// A predecessor was neither applied nor skipped, yet no command failed: the
			// checkpoint moved backwards under us (a drop and re-init mid-pipeline).
			return applied, fmt.Errorf("apply to %s at %s: %w: checkpoint moved backwards during the pipeline", ns, chunks[retry[0]][0].Pos, ErrCorrupt)
		}
		if attempt == maxApplyAttempts {
			return applied, fmt.Errorf("apply to %s: %w: script cache lost %d times in a row", ns, ErrUnavailable, attempt)
		}
		if err := applyScript.Load(ctx, r.client).Err(); err != nil {
			return applied, unavailable("load apply script", err)
		}
		pending = retry
	}
}

// chunkUpdates cuts updates into runs of at most chunkMaxUpdates updates and, unless a
// single update is larger, chunkMaxOps operations.
func chunkUpdates(updates []Update) [][]Update {
	var chunks [][]Update
	start, ops := 0, 0
	for i, u := range updates {
		n := u.Batch.Len()
		if i > start && (i-start == chunkMaxUpdates || ops+n > chunkMaxOps) {
			chunks = append(chunks, updates[start:i])
			start, ops = i, 0
		}
		ops += n
	}
	return append(chunks, updates[start:])
}

// scriptArgs builds the KEYS and ARGV of applyScript for validated updates and a fencing
// token (0: unfenced).
func (r *Redis) scriptArgs(ns Namespace, token uint64, after *eventstore.Position, updates []Update) ([]string, []any) {
	gp := r.genPrefix(ns)
	nops := 0
	for _, u := range updates {
		nops += u.Batch.Len()
	}
	keys := make([]string, 2, 2+nops)
	keys[0] = gp + "@cp"
	keys[1] = r.fenceKey(ns.Model)
	args := make([]any, 0, 4+3*len(updates)+nops)
	if after != nil {
		args = append(args, strconv.FormatUint(after.Commit, 10), strconv.FormatUint(after.Prepare, 10))
	} else {
		args = append(args, "", "")
	}
	args = append(args, strconv.Itoa(len(updates)), strconv.FormatUint(token, 10))
	codes := make([]byte, 0, nops)
	for _, u := range updates {
		start := len(codes)
		for _, op := range u.Batch.ops {
			switch op.Kind {
			case OpPut:
				codes = append(codes, 'p')
				keys = append(keys, gp+"k:"+op.Key)
			case OpDelete:
				codes = append(codes, 'd')
				keys = append(keys, gp+"k:"+op.Key)
			case OpIndexAdd:
				codes = append(codes, 'a')
				keys = append(keys, gp+"i:"+op.Key)
			case OpIndexRemove:
				codes = append(codes, 'r')
				keys = append(keys, gp+"i:"+op.Key)
			case OpDeleteIndex:
				codes = append(codes, 'x')
				keys = append(keys, gp+"i:"+op.Key)
			}
		}
		args = append(args, strconv.FormatUint(u.Pos.Commit, 10), strconv.FormatUint(u.Pos.Prepare, 10), string(codes[start:]))
	}
	for _, u := range updates {
		for _, op := range u.Batch.ops {
			switch op.Kind {
			case OpPut:
				args = append(args, op.Value)
			case OpIndexAdd, OpIndexRemove:
				args = append(args, op.Member)
			}
		}
	}
	return keys, args
}

// Checkpoint implements Store.
func (r *Redis) Checkpoint(ctx context.Context, ns Namespace) (eventstore.Position, bool, error) {
	if err := ns.Validate(); err != nil {
		return eventstore.Position{}, false, err
	}
	s, err := r.client.Get(ctx, r.cpKey(ns)).Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Position{}, false, nil
	}
	if err != nil {
		return eventstore.Position{}, false, unavailable("checkpoint of "+ns.String(), err)
	}
	pos, err := parseCheckpoint(s)
	if err != nil {
		return eventstore.Position{}, false, fmt.Errorf("checkpoint of %s: %w", ns, err)
	}
	return pos, true, nil
}

func parseCheckpoint(s string) (eventstore.Position, error) {
	c, p, ok := strings.Cut(s, ":")
	commit, err1 := strconv.ParseUint(c, 10, 64)
	prepare, err2 := strconv.ParseUint(p, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return eventstore.Position{}, fmt.Errorf("%w: malformed checkpoint %q", ErrCorrupt, s)
	}
	return eventstore.Position{Commit: commit, Prepare: prepare}, nil
}

// Get implements Store: one GET.
func (r *Redis) Get(ctx context.Context, ns Namespace, key string) ([]byte, bool, error) {
	if err := ns.Validate(); err != nil {
		return nil, false, err
	}
	v, err := r.client.Get(ctx, r.valueKey(ns, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("get from "+ns.String(), err)
	}
	return v, true, nil
}

// GetMany implements Store: one MGET.
func (r *Redis) GetMany(ctx context.Context, ns Namespace, keys []string) ([][]byte, error) {
	if err := ns.Validate(); err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	gp := r.genPrefix(ns)
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = gp + "k:" + k
	}
	vals, err := r.client.MGet(ctx, full...).Result()
	if err != nil {
		return nil, unavailable("get many from "+ns.String(), err)
	}
	if len(vals) != len(keys) {
		return nil, fmt.Errorf("%w: get many from %s: %d replies for %d keys", ErrUnavailable, ns, len(vals), len(keys))
	}
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
		case string:
			out[i] = []byte(v)
		default:
			return nil, fmt.Errorf("%w: get many from %s: unexpected reply type %T", ErrUnavailable, ns, v)
		}
	}
	return out, nil
}

// Range implements Store: one ZRANGEBYLEX.
func (r *Redis) Range(ctx context.Context, ns Namespace, index, after string, limit int) ([]string, error) {
	if err := validateRange(ns, index, limit); err != nil {
		return nil, err
	}
	lo := "-"
	if after != "" {
		lo = "(" + after
	}
	members, err := r.client.ZRangeByLex(ctx, r.indexKey(ns, index), &redis.ZRangeBy{
		Min: lo, Max: "+", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, unavailable("range over "+ns.String(), err)
	}
	return members, nil
}

// SetActive implements Store.
func (r *Redis) SetActive(ctx context.Context, ns Namespace) error {
	return r.setActive(ctx, ns, 0)
}

func (r *Redis) setActive(ctx context.Context, ns Namespace, token uint64) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	what := "set active " + ns.String()
	keys := []string{r.activeKey(ns.Model), r.cpKey(ns), r.fenceKey(ns.Model), r.gensKey(ns.Model)}
	res, err := setActiveScript.Run(ctx, r.client, keys, ns.Generation, token).Text()
	if err != nil {
		return scriptError(what, err)
	}
	if res == "nocp" {
		return fmt.Errorf("%s: %w", what, ErrNoCheckpoint)
	}
	return fencedReply(what, res, token)
}

// fencedReply maps the replies every fenced script shares: "ok", "fenced" (a stale
// token), and anything else, which is unexpected.
func fencedReply(what, res string, token uint64) error {
	switch res {
	case "ok":
		return nil
	case "fenced":
		return fencedError(what, token)
	}
	return fmt.Errorf("%s: %w: unexpected script reply %q", what, ErrUnavailable, res)
}

// Withdraw implements Store.
func (r *Redis) Withdraw(ctx context.Context, ns Namespace) error {
	return r.withdraw(ctx, ns, 0)
}

func (r *Redis) withdraw(ctx context.Context, ns Namespace, token uint64) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	what := "withdraw " + ns.String()
	res, err := withdrawScript.Run(ctx, r.client, []string{r.activeKey(ns.Model), r.fenceKey(ns.Model)}, ns.Generation, token).Text()
	if err != nil {
		return scriptError(what, err)
	}
	return fencedReply(what, res, token)
}

// Active implements Store.
func (r *Redis) Active(ctx context.Context, model string) (string, bool, error) {
	if err := validateName("model", model); err != nil {
		return "", false, err
	}
	gen, err := r.client.Get(ctx, r.activeKey(model)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, unavailable("active generation of "+model, err)
	}
	return gen, true, nil
}

// scanCount is the COUNT hint of SCAN, and so roughly the size of each UNLINK.
const scanCount = 1000

// listScanCount is the COUNT hint of Generations' SCAN: it keeps few keys per reply, since
// it matches only checkpoints.
const listScanCount = 300

// DropGeneration implements Store: a guard script deletes the checkpoint unless the
// generation is active, then SCAN + UNLINK remove the rest in batches, on every master of
// a cluster. SCAN walks the whole keyspace, so a drop costs time in proportion to the
// database, not to the generation. A fenced drop checks (and records) its token in the
// guard script only: the drop is not atomic anyway, and once the checkpoint is gone no
// write can reach the generation.
func (r *Redis) DropGeneration(ctx context.Context, ns Namespace) error {
	return r.dropGeneration(ctx, ns, 0)
}

func (r *Redis) dropGeneration(ctx context.Context, ns Namespace, token uint64) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	what := "drop " + ns.String()
	keys := []string{r.activeKey(ns.Model), r.cpKey(ns), r.fenceKey(ns.Model), r.gensKey(ns.Model)}
	res, err := dropGuardScript.Run(ctx, r.client, keys, ns.Generation, token).Text()
	if err != nil {
		return scriptError(what, err)
	}
	if res == "active" {
		return fmt.Errorf("%s: %w", what, ErrGenerationActive)
	}
	if err := fencedReply(what, res, token); err != nil {
		return err
	}
	pattern := globEscape(r.genPrefix(ns)) + "*"
	err = r.eachNode(ctx, func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, scanCount).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := c.Unlink(ctx, keys...).Err(); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
	if err != nil {
		return unavailable(what, err)
	}
	return nil
}

// Generations implements Store. Every generation is registered in a set under the
// model's hash tag when its checkpoint is made, and unregistered when it is dropped, so
// the answer is one SMEMBERS. A store written before the registry existed has
// generations the set lacks; that shows as an active generation missing from the set
// (or no set while checkpoints exist), and then — once — the keyspace is scanned for the
// model's checkpoints, which are registered. (Scanning on every call walked millions of
// keys after each rebuild of every model, with the token path waiting on the same
// Redis.)
func (r *Redis) Generations(ctx context.Context, model string) ([]string, error) {
	if err := validateName("model", model); err != nil {
		return nil, err
	}
	what := "generations of " + model
	pipe := r.client.Pipeline()
	members := pipe.SMembers(ctx, r.gensKey(model))
	active := pipe.Get(ctx, r.activeKey(model))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(what, err)
	}
	gens := members.Val()
	act, err := active.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(what, err)
	}
	if len(gens) == 0 || (act != "" && !slices.Contains(gens, act)) {
		if gens, err = r.scanGenerations(ctx, model); err != nil {
			return nil, err
		}
		if len(gens) > 0 {
			if err := r.client.SAdd(ctx, r.gensKey(model), gens).Err(); err != nil {
				return nil, unavailable(what, err)
			}
		}
	}
	// A generation whose drop stopped after its checkpoint was deleted is no longer
	// registered; one registered whose checkpoint is gone (a flush of some keys) is
	// still listed, so that its leftovers get dropped.
	slices.Sort(gens)
	return gens, nil
}

// scanGenerations is Generations by SCAN MATCH for the model's checkpoint keys, on every
// master of a cluster (they all live in the model's hash slot, but SCAN cannot be aimed at
// one). It walks the whole keyspace, so it costs time in proportion to the database.
func (r *Redis) scanGenerations(ctx context.Context, model string) ([]string, error) {
	mp := r.modelPrefix(model)
	pattern := globEscape(mp) + "*:@cp"
	found := make(map[string]bool)
	err := r.eachNode(ctx, func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, listScanCount).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				// The pattern also matches a value or index whose key ends in ":@cp"
				// (kl:{M}:G:k:x:@cp); only a checkpoint leaves a generation name between
				// the model's prefix and the suffix. SCAN may return a key twice.
				if gen, ok := strings.CutSuffix(strings.TrimPrefix(k, mp), ":@cp"); ok && isName(gen) {
					found[gen] = true
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
	if err != nil {
		return nil, unavailable("generations of "+model, err)
	}
	gens := make([]string, 0, len(found))
	for g := range found {
		gens = append(gens, g)
	}
	return gens, nil
}

// globEscape escapes the characters that are special in a SCAN MATCH pattern. The key
// prefix and names cannot hold any of them; escaping keeps it so if that ever changes.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CountKeys returns how many keys under the store's prefix exist, on every node, but the
// models' registries of generations (bookkeeping the in-process store keeps without
// keys: the shared suite compares the two). It scans the whole keyspace: for tests and
// diagnostics, never for a request path.
func (r *Redis) CountKeys(ctx context.Context) (int, error) {
	var n int
	pattern := globEscape(r.prefix) + ":*"
	err := r.eachNode(ctx, func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, scanCount).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				if !strings.HasSuffix(k, "}:@gens") {
					n++
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
	if err != nil {
		return 0, unavailable("count keys", err)
	}
	return n, nil
}

// eachNode runs fn on every node that holds keys — each master of a cluster, each shard
// of a ring, or the client itself — one node after the other.
func (r *Redis) eachNode(ctx context.Context, fn func(context.Context, redis.Cmdable) error) error {
	var (
		mu    sync.Mutex
		nodes []*redis.Client
	)
	collect := func(_ context.Context, n *redis.Client) error {
		mu.Lock() // the ForEach helpers call back concurrently
		defer mu.Unlock()
		nodes = append(nodes, n)
		return nil
	}
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		if err := c.ForEachMaster(ctx, collect); err != nil {
			return err
		}
	case *redis.Ring:
		if err := c.ForEachShard(ctx, collect); err != nil {
			return err
		}
	default:
		return fn(ctx, r.client)
	}
	for _, n := range nodes {
		if err := fn(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// unavailable wraps a transport or server failure.
func unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// scriptError maps the errors our scripts raise to the package's errors.
func scriptError(what string, err error) error {
	switch {
	case redis.HasErrorPrefix(err, "KLCORRUPT"):
		return fmt.Errorf("%s: %w: %w", what, ErrCorrupt, err)
	case redis.HasErrorPrefix(err, "KLINVALID"):
		return fmt.Errorf("%s: %w: %w", what, ErrInvalid, err)
	default:
		return unavailable(what, err)
	}
}
