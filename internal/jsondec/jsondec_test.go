package jsondec_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/keyledger/keyledger/internal/jsondec"
)

type record struct {
	Name    string            `json:"name"`
	Count   int               `json:"count,omitempty"`
	At      time.Time         `json:"at"`
	Wait    time.Duration     `json:"wait"`
	Tags    []string          `json:"tags,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	Raw     json.RawMessage   `json:"raw,omitempty"`
	Pointer *int              `json:"pointer"`
	Nested  struct {
		Flag bool `json:"flag"`
	} `json:"nested"`
}

// Every input decodes as encoding/json decodes it: the same value, or an error where it
// errs.
func TestSameAsEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"name":"a","count":3,"at":"2026-11-24T10:00:00Z","wait":1500000000,"tags":["x","y"],"meta":{"k":"v"},"raw":{"z":[1,2]},"pointer":7,"nested":{"flag":true}}`,
		`{"NAME":"case-insensitive","Count":1}`,
		`{"name":"first","name":"last"}`,
		`{"name":"unknown members are ignored","extra":{"deep":[1,2,3]}}`,
		"{\"name\":\"bad utf-8 \xff\"}",
		`{"name":null,"pointer":null,"tags":null}`,
		`{"name":"escapes \u003c\u00e9\n"}`,
		`{"count":"not a number"}`,
		`{"name":"truncated"`,
		`[]`,
		``,
	} {
		var want, got record
		werr := json.Unmarshal([]byte(in), &want)
		gerr := jsondec.Unmarshal([]byte(in), &got)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%q: encoding/json error %v, jsondec error %v", in, werr, gerr)
			continue
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", in, got, want)
		}
	}
}
