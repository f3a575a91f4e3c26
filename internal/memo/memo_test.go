package memo_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/keyledger/keyledger/internal/memo"
)

func TestHitOnlyForTheSameSource(t *testing.T) {
	c := memo.New[int](100)
	if _, ok := c.Get("k", []byte("v1")); ok {
		t.Fatal("hit in an empty cache")
	}
	c.Put("k", "v1", 1)
	if v, ok := c.Get("k", []byte("v1")); !ok || v != 1 {
		t.Fatalf("Get after Put = %d, %v", v, ok)
	}
	if v, ok := c.GetString("k", "v1"); !ok || v != 1 {
		t.Fatalf("GetString after Put = %d, %v", v, ok)
	}
	if _, ok := c.Get("k", []byte("v2")); ok {
		t.Fatal("hit for bytes the value was not derived from: a stale value")
	}
	if _, ok := c.GetString("other", "v1"); ok {
		t.Fatal("hit under another key")
	}
	c.Put("k", "v2", 2)
	if _, ok := c.Get("k", []byte("v1")); ok {
		t.Fatal("the replaced source still hits")
	}
	if v, ok := c.Get("k", []byte("v2")); !ok || v != 2 {
		t.Fatalf("after the replacement: %d, %v", v, ok)
	}
}

func TestBounded(t *testing.T) {
	c := memo.New[int](640) // 10 per shard
	for i := range 10_000 {
		k := fmt.Sprint(i)
		c.Put(k, k, i)
	}
	if n := c.Len(); n > 640 || n < 64 {
		t.Fatalf("%d values held, want at most 640 (and some in every shard)", n)
	}
	// The last key stored is always held.
	if v, ok := c.GetString("9999", "9999"); !ok || v != 9999 {
		t.Fatalf("the newest value: %d, %v", v, ok)
	}
}

func TestConcurrent(t *testing.T) {
	c := memo.New[string](1000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint(i % 300)
				src := fmt.Sprint(k, "/", (i+g)%2)
				if v, ok := c.GetString(k, src); ok && v != src {
					t.Errorf("key %s source %s gave %s", k, src, v)
					return
				}
				c.Put(k, src, src)
			}
		})
	}
	wg.Wait()
}
