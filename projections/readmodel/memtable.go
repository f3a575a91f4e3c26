package readmodel

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"

	"github.com/google/btree"
)

// The in-process store keeps its entries out of the garbage collector's sight: keys,
// values and index members are copied into large byte chunks (an arena), and the maps
// and trees that find them hold only integers. With a million keys the entries were
// millions of small heap objects, which every collection marked again — over a second
// per cycle (BenchmarkMemoryGC1M), taken from the token endpoint while it served. Now a
// collection marks a few thousand chunks.

// btreeDegree is the degree of the index tree (items are a ref and a nil pointer).
const btreeDegree = 32

// arenaChunk is the size of an arena chunk; a record larger than that gets a chunk of
// its own.
const arenaChunk = 1 << 20

// compactMin is the dead space an arena must hold before it is compacted (and then
// only once it holds more dead than live bytes): compaction copies every live record.
const compactMin = 16 << 20

// arena holds records of two byte strings (a key and a value, or an index name and a
// member) appended to chunks. A record is named by a ref: its chunk's number in the
// high 32 bits, its offset in the low 32. Records never move while the arena lives;
// removing one only counts its bytes as dead, and the owner compacts the arena (copies
// the live records into a new one) when dead bytes outweigh the live ones.
type arena struct {
	chunks     [][]byte
	live, dead int
}

type ref uint64

// add appends the record (a, b) and returns its ref.
func (a *arena) add(x, y []byte) ref {
	size := recordSize(x, y)
	n := len(a.chunks) - 1
	if n < 0 || cap(a.chunks[n])-len(a.chunks[n]) < size {
		a.chunks = append(a.chunks, make([]byte, 0, max(arenaChunk, size)))
		n++
	}
	c := a.chunks[n]
	off := len(c)
	c = binary.AppendUvarint(c, uint64(len(x)))
	c = append(c, x...)
	c = binary.AppendUvarint(c, uint64(len(y)))
	c = append(c, y...)
	a.chunks[n] = c
	a.live += size
	return ref(uint64(n)<<32 | uint64(off))
}

// record returns the two byte strings of r. They alias the arena: copy what outlives
// the lock.
func (a *arena) record(r ref) (x, y []byte) {
	b := a.chunks[r>>32][uint32(r):]
	n, k := binary.Uvarint(b)
	x, b = b[k:k+int(n)], b[k+int(n):]
	n, k = binary.Uvarint(b)
	return x, b[k : k+int(n)]
}

// remove counts r's bytes as dead.
func (a *arena) remove(r ref) {
	size := recordSize(a.record(r))
	a.live -= size
	a.dead += size
}

// wasteful reports whether compacting would pay: more dead bytes than live ones, and
// at least compactMin of them.
func (a *arena) wasteful() bool { return a.dead >= compactMin && a.dead > a.live }

func recordSize(x, y []byte) int {
	return uvarintLen(len(x)) + len(x) + uvarintLen(len(y)) + len(y)
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// valueTable maps keys to values. The map holds, per key's 64-bit hash, the ref of the
// key's record; a key whose hash another key already holds (a collision: about one in
// 10^13 pairs) lives in the ordinary map other. A key is in one of the two, never both.
type valueTable struct {
	hash  func(string) uint64
	refs  map[uint64]ref
	other map[string][]byte
	arena arena
}

func newValueTable() *valueTable {
	seed := maphash.MakeSeed()
	return &valueTable{hash: func(s string) uint64 { return maphash.String(seed, s) },
		refs: make(map[uint64]ref), other: make(map[string][]byte)}
}

func (t *valueTable) len() int { return len(t.refs) + len(t.other) }

// get returns key's value, aliasing the arena: copy it before the lock is released.
func (t *valueTable) get(key string) ([]byte, bool) {
	if len(t.other) > 0 {
		if v, ok := t.other[key]; ok {
			return v, true
		}
	}
	r, ok := t.refs[t.hash(key)]
	if !ok {
		return nil, false
	}
	k, v := t.arena.record(r)
	if string(k) != key {
		return nil, false
	}
	return v, true
}

// put stores a copy of value under key.
func (t *valueTable) put(key string, value []byte) {
	if _, ok := t.other[key]; ok {
		t.other[key] = bytes.Clone(value)
		return
	}
	h := t.hash(key)
	if r, ok := t.refs[h]; ok {
		if k, _ := t.arena.record(r); string(k) != key {
			t.other[key] = bytes.Clone(value)
			return
		}
		t.arena.remove(r)
	}
	t.refs[h] = t.arena.add([]byte(key), value)
	t.compact()
}

func (t *valueTable) del(key string) {
	if _, ok := t.other[key]; ok {
		delete(t.other, key)
		return
	}
	h := t.hash(key)
	if r, ok := t.refs[h]; ok {
		if k, _ := t.arena.record(r); string(k) == key {
			t.arena.remove(r)
			delete(t.refs, h)
			t.compact()
		}
	}
}

// each calls f with every key and value (aliasing the arena), in no order.
func (t *valueTable) each(f func(key string, value []byte)) {
	for _, r := range t.refs {
		k, v := t.arena.record(r)
		f(string(k), v)
	}
	for k, v := range t.other {
		f(k, v)
	}
}

// compact copies the live records into a new arena when the old one is mostly dead.
func (t *valueTable) compact() {
	if !t.arena.wasteful() {
		return
	}
	var fresh arena
	for h, r := range t.refs {
		t.refs[h] = fresh.add(t.arena.record(r))
	}
	t.arena = fresh
}

// indexTree holds every index of a generation as one ordered set of (index, member)
// records, ordered by index name then member bytes (Redis ZRANGEBYLEX order); an index
// exists while it has a member. Tree items are refs, but for the pivots of searches,
// which carry their own bytes.
type indexTree struct {
	tree  *btree.BTreeG[indexItem]
	arena arena
}

// indexItem is an entry of the tree (ref of its record) or a search pivot (probe).
type indexItem struct {
	ref   ref
	probe *indexProbe
}

type indexProbe struct{ index, member []byte }

func newIndexTree() *indexTree {
	t := &indexTree{}
	t.tree = btree.NewG(btreeDegree, t.less)
	return t
}

func (t *indexTree) parts(it indexItem) (index, member []byte) {
	if it.probe != nil {
		return it.probe.index, it.probe.member
	}
	return t.arena.record(it.ref)
}

func (t *indexTree) less(a, b indexItem) bool {
	ai, am := t.parts(a)
	bi, bm := t.parts(b)
	if c := bytes.Compare(ai, bi); c != 0 {
		return c < 0
	}
	return bytes.Compare(am, bm) < 0
}

func pivot(index, member string) indexItem {
	return indexItem{probe: &indexProbe{index: []byte(index), member: []byte(member)}}
}

// add inserts (index, member) with one descent of the tree: a member already there (a
// replayed event) is replaced by the new record and the old one's bytes count as dead.
func (t *indexTree) add(index, member string) {
	it := indexItem{ref: t.arena.add([]byte(index), []byte(member))}
	if old, replaced := t.tree.ReplaceOrInsert(it); replaced {
		t.arena.remove(old.ref)
		t.compact()
	}
}

func (t *indexTree) remove(index, member string) {
	if it, ok := t.tree.Delete(pivot(index, member)); ok {
		t.arena.remove(it.ref)
		t.compact()
	}
}

// deleteIndex removes every member of index.
func (t *indexTree) deleteIndex(index string) {
	var doomed []indexItem
	t.tree.AscendGreaterOrEqual(pivot(index, ""), func(it indexItem) bool {
		if name, _ := t.parts(it); string(name) != index {
			return false
		}
		doomed = append(doomed, it)
		return true
	})
	for _, it := range doomed {
		t.tree.Delete(it)
		t.arena.remove(it.ref)
	}
	t.compact()
}

// members calls f with index's members greater than after, in order, until f returns
// false. The member aliases the arena.
func (t *indexTree) members(index, after string, f func(member []byte) bool) {
	t.tree.AscendGreaterOrEqual(pivot(index, after), func(it indexItem) bool {
		name, member := t.parts(it)
		if string(name) != index {
			return false
		}
		if string(member) == after {
			return true
		}
		return f(member)
	})
}

// each calls f with every (index, member), in order; both alias the arena.
func (t *indexTree) each(f func(index, member []byte)) {
	t.tree.Ascend(func(it indexItem) bool {
		f(t.parts(it))
		return true
	})
}

// names counts the indexes (that is, the distinct names with a member).
func (t *indexTree) names() int {
	n := 0
	var last []byte
	t.each(func(index, _ []byte) {
		if n == 0 || !bytes.Equal(index, last) {
			n++
			last = index
		}
	})
	return n
}

// compact rebuilds the tree over a new arena when the old one is mostly dead.
func (t *indexTree) compact() {
	if !t.arena.wasteful() {
		return
	}
	tree, old := t.tree, t.arena
	t.arena = arena{}
	t.tree = btree.NewG(btreeDegree, t.less)
	tree.Ascend(func(it indexItem) bool {
		t.tree.ReplaceOrInsert(indexItem{ref: t.arena.add(old.record(it.ref))})
		return true
	})
}
