package keyring

import (
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain/domaintest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

func TestUploaderRemovedFlag(t *testing.T) {
	cases := []struct {
		name    string
		given   []any
		kid     string
		flagged bool
		since   time.Time
	}{
		{"member's key after removal", []any{
			MemberAdded{UserID: "sam", At: at(1)},
			KeyUploaded{KID: "k", UploadedBy: "sam", At: at(2)},
			MemberRemoved{UserID: "sam", At: at(3)},
		}, "k", true, at(3)},
		{"re-added member clears the flag", []any{
			MemberAdded{UserID: "sam", At: at(1)},
			KeyUploaded{KID: "k", UploadedBy: "sam", At: at(2)},
			MemberRemoved{UserID: "sam", At: at(3)},
			MemberAdded{UserID: "sam", At: at(4)},
		}, "k", false, time.Time{}},
		{"admin never a member", []any{
			KeyUploaded{KID: "k", UploadedBy: "ann", At: at(2)},
		}, "k", false, time.Time{}},
		{"admin removed as member before uploading", []any{
			MemberAdded{UserID: "ann", At: at(1)},
			MemberRemoved{UserID: "ann", At: at(2)},
			KeyUploaded{KID: "k", UploadedBy: "ann", At: at(3)},
		}, "k", false, time.Time{}},
	}
	for _, c := range cases {
		kr := New()
		for _, e := range c.given {
			kr.Apply(e)
		}
		k, _ := kr.Key(c.kid)
		flagged, since := kr.UploaderRemoved(k)
		if flagged != c.flagged || !since.Equal(c.since) {
			t.Errorf("%s: flagged %v since %s, want %v since %s", c.name, flagged, since, c.flagged, c.since)
		}
	}
}

func TestCloneSharesNothing(t *testing.T) {
	kr := New()
	kr.Apply(MemberAdded{UserID: "sam", At: at(1)})
	kr.Apply(KeyUploaded{KID: "a", UploadedBy: "sam", At: at(1)})
	kr.Apply(KeyUploaded{KID: "b", UploadedBy: "sam", At: at(1)})
	c := kr.Clone()
	c.Apply(MemberAdded{UserID: "intruder", At: at(2)})
	c.Apply(KeyDeleted{KID: "a"})
	if kr.IsMember("intruder") || len(kr.Keys()) != 2 || kr.Keys()[0].KID != "a" {
		t.Fatalf("changing the clone changed the original: members %v keys %v", kr.Members(), kr.Keys())
	}
}

func TestKeyNameCountsCharacters(t *testing.T) {
	kr := New()
	admin := domaintest.Admin("ann", "t")
	name := ""
	for range 60 {
		name += "è"
	}
	if _, err := kr.UploadKey(admin, "t", NewKey{KID: "k", Name: name, Use: "sig"}, 10, at(1)); err != nil {
		t.Fatalf("60-character name with accents refused: %v", err)
	}
	if _, err := kr.UploadKey(admin, "t", NewKey{KID: "k", Name: name + "x", Use: "sig"}, 10, at(1)); err == nil {
		t.Fatal("61-character name accepted")
	}
}
