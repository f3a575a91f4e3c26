package readmodel

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestValueTableCollisions: keys whose hashes collide are kept apart (every key hashes
// alike here), through puts, overwrites and deletes in every order.
func TestValueTableCollisions(t *testing.T) {
	tab := newValueTable()
	tab.hash = func(string) uint64 { return 7 }
	want := map[string]string{}
	check := func(step string) {
		t.Helper()
		if tab.len() != len(want) {
			t.Fatalf("%s: %d keys, want %d", step, tab.len(), len(want))
		}
		for k, v := range want {
			if got, ok := tab.get(k); !ok || string(got) != v {
				t.Fatalf("%s: %s = %q %v, want %q", step, k, got, ok, v)
			}
		}
		for _, k := range []string{"a", "b", "c", "d"} {
			if _, in := want[k]; !in {
				if got, ok := tab.get(k); ok {
					t.Fatalf("%s: deleted %s still reads %q", step, k, got)
				}
			}
		}
		seen := map[string]string{}
		tab.each(func(k string, v []byte) { seen[k] = string(v) })
		if !maps.Equal(seen, want) {
			t.Fatalf("%s: each gave %v, want %v", step, seen, want)
		}
	}
	put := func(k, v string) { tab.put(k, []byte(v)); want[k] = v }
	del := func(k string) { tab.del(k); delete(want, k) }
	put("a", "1")
	put("b", "2")
	put("c", "3")
	check("three colliding keys")
	put("b", "2'")
	put("a", "1'")
	check("overwritten")
	del("a") // the one the hash map held
	check("first deleted")
	put("d", "4") // takes the hash map's slot again
	put("b", "2''")
	check("slot reused")
	del("b")
	del("d")
	del("c")
	check("all deleted")
	if len(tab.refs)+len(tab.other) != 0 {
		t.Fatalf("left behind: %v %v", tab.refs, tab.other)
	}
}

// TestValueTableCompacts: overwriting keeps the arena's dead bytes bounded, and the
// values survive compaction.
func TestValueTableCompacts(t *testing.T) {
	tab := newValueTable()
	big := bytes.Repeat([]byte("x"), 256<<10)
	for round := range 200 {
		for k := range 4 {
			v := append(fmt.Appendf(nil, "%d/%d:", round, k), big...)
			tab.put(fmt.Sprint("key-", k), v)
		}
		tab.put(fmt.Sprint("gone-", round), big)
		tab.del(fmt.Sprint("gone-", round))
	}
	if tab.arena.dead > max(compactMin, tab.arena.live) {
		t.Fatalf("dead %d bytes next to %d live: never compacted", tab.arena.dead, tab.arena.live)
	}
	if limit := 2*tab.arena.live + compactMin + arenaChunk; len(tab.arena.chunks)*arenaChunk > limit {
		t.Fatalf("%d chunks for %d live bytes", len(tab.arena.chunks), tab.arena.live)
	}
	if tab.len() != 4 {
		t.Fatalf("%d keys", tab.len())
	}
	for k := range 4 {
		v, ok := tab.get(fmt.Sprint("key-", k))
		if !ok || !bytes.HasPrefix(v, fmt.Appendf(nil, "199/%d:", k)) || len(v) != len(big)+len("199/0:") {
			t.Fatalf("key-%d lost its last value (%d bytes)", k, len(v))
		}
	}
}

// TestIndexTreeOrderAndCompaction: members come back per index in byte order, indexes
// do not bleed into each other (one name a prefix of another), deleteIndex removes one
// index whole, and a compaction keeps every member.
func TestIndexTreeOrderAndCompaction(t *testing.T) {
	tr := newIndexTree()
	tr.add("ix", "once")
	live := tr.arena.live
	tr.add("ix", "once") // a set: the member's bytes are live once
	if tr.arena.live != live {
		t.Fatalf("re-adding a member: %d live bytes, want %d", tr.arena.live, live)
	}
	tr.remove("ix", "once")
	pad := strings.Repeat("p", 64<<10)
	want := map[string][]string{}
	for i := range 300 {
		for _, ix := range []string{"ix", "ix:a", "iy"} {
			m := fmt.Sprintf("%03d", (i*7)%300)
			tr.add(ix, m)
			tr.add(ix, m) // twice: a set
			want[ix] = append(want[ix], m)
		}
		tr.add("junk", pad+fmt.Sprint(i)) // 300 × 64 KiB, removed below: a compaction
	}
	for i := range 300 {
		tr.remove("junk", pad+fmt.Sprint(i))
	}
	if tr.arena.dead > max(compactMin, tr.arena.live) {
		t.Fatalf("dead %d bytes next to %d live: never compacted", tr.arena.dead, tr.arena.live)
	}
	for ix, ms := range want {
		slices.Sort(ms)
		var got []string
		tr.members(ix, "", func(m []byte) bool { got = append(got, string(m)); return true })
		if !slices.Equal(got, ms) {
			t.Fatalf("%s: %d members %v…, want %d", ix, len(got), got[:min(3, len(got))], len(ms))
		}
		var page []string
		tr.members(ix, "150", func(m []byte) bool { page = append(page, string(m)); return len(page) < 2 })
		if !slices.Equal(page, []string{"151", "152"}) {
			t.Fatalf("%s after 150: %v", ix, page)
		}
	}
	if n := tr.names(); n != 3 {
		t.Fatalf("%d indexes, want 3", n)
	}
	tr.deleteIndex("ix")
	tr.members("ix", "", func(m []byte) bool { t.Fatalf("ix kept %s", m); return false })
	n := 0
	tr.members("ix:a", "", func([]byte) bool { n++; return true })
	if n != 300 || tr.names() != 2 {
		t.Fatalf("deleting ix took ix:a's members too: %d left, %d indexes", n, tr.names())
	}
}
