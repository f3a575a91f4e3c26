package voucher

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzObjectMembers checks the member scanner against encoding/json: whatever it
// accepts, encoding/json reads as the same object, member for member; what it refuses
// is not a JSON object or repeats a member name.
func FuzzObjectMembers(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : 1 , "b":[1,{"c":"}"}],"d":"x\"y","e":null,"f":true,"g":-1.5e3 } `,
		`{"a":1,"a":2}`, `{"a\u0062":1,"ab":2}`, `[1]`, `"s"`, `{"a":1} x`, `{"a":{"b":{"c":[[]]}}}`,
		`{"\\":"\\\\"}`, `{"a":"\u00e9"}`, ``, `{`, `{"a":}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		members, msg := objectMembers(data)
		var want map[string]json.RawMessage
		err := json.Unmarshal(data, &want)
		if msg != "" {
			if err == nil && !strings.Contains(msg, "twice") && utf8.Valid(data) {
				t.Fatalf("refused %q (%s), which encoding/json reads as an object", data, msg)
			}
			return
		}
		if err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", data, err)
		}
		if len(members) != len(want) {
			t.Fatalf("%q: %d members, encoding/json %d", data, len(members), len(want))
		}
		for name, raw := range want {
			got, ok := members[name]
			if !ok {
				t.Fatalf("%q: member %q missing", data, name)
			}
			var a, b bytes.Buffer
			if json.Compact(&a, got) != nil || json.Compact(&b, raw) != nil || a.String() != b.String() {
				t.Fatalf("%q: member %q is %q, encoding/json %q", data, name, got, raw)
			}
		}
	})
}
