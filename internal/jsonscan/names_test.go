package jsonscan

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type limitsDoc struct {
	Default limitsEntry            `json:"default"`
	Orgs    map[string]limitsEntry `json:"orgs"`
	List    []*limitsEntry         `json:"list,omitempty"`
	When    time.Time              `json:"when,omitzero"`
	Raw     json.RawMessage        `json:"raw,omitempty"`
	Bytes   []byte                 `json:"bytes,omitempty"`
	Plain   string                 // no tag: named Plain
	Skipped string                 `json:"-"`
	hidden  string
	embedded
}

type limitsEntry struct {
	Max  int64     `json:"max,omitempty"`
	Rate rateEntry `json:"rate"`
}

type rateEntry struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

type embedded struct {
	Extra string `json:"extra"`
	Plain int    `json:"plain_inner"`
}

func TestExactNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want *NameError // nil: no error
	}{
		{"exact", `{"default":{"max":1,"rate":{"rate":1,"burst":2}},"orgs":{"acme":{"max":2}},"Plain":"p","extra":"e","plain_inner":1}`, nil},
		{"empty object", `{}`, nil},
		{"not an object", `[1,2]`, nil},
		{"invalid JSON", `{"Default":`, nil},
		{"wrong type for a struct", `{"default":"x"}`, nil},
		{"null member", `{"default":null,"orgs":null}`, nil},
		{"capitalized", `{"Default":{}}`, &NameError{"", "Default"}},
		{"two cases of one name", `{"orgs":{},"Orgs":{"evil":{}}}`, &NameError{"", "Orgs"}},
		{"unknown name", `{"colour":"blue"}`, &NameError{"", "colour"}},
		{"first in sorted order", `{"zeta":1,"Alpha":2}`, &NameError{"", "Alpha"}},
		{"in a nested struct", `{"default":{"rate":{"Rate":1}}}`, &NameError{"default.rate", "Rate"}},
		{"in a map's value", `{"orgs":{"acme":{"MAX":3}}}`, &NameError{"orgs.acme", "MAX"}},
		{"map keys are free", `{"orgs":{"Acme":{},"ACME":{}}}`, nil},
		{"in a slice", `{"list":[{"max":1},{"Max":2}]}`, &NameError{"list.1", "Max"}},
		{"a field tagged -", `{"Skipped":"x"}`, &NameError{"", "Skipped"}},
		{"an unexported field", `{"hidden":"x"}`, &NameError{"", "hidden"}},
		{"a lower-case untagged name", `{"plain":"x"}`, &NameError{"", "plain"}},
		{"the embedded struct's field", `{"Extra":"x"}`, &NameError{"", "Extra"}},
		{"own unmarshalers are not looked into", `{"when":"2025-01-01T00:00:00Z","raw":{"Any":1},"bytes":"AAE="}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ExactNames([]byte(tc.doc), reflect.TypeFor[limitsDoc]())
			var ne *NameError
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("ExactNames = %v, want nil", err)
			case tc.want != nil && !errors.As(err, &ne):
				t.Fatalf("ExactNames = %v, want %v", err, tc.want)
			case tc.want != nil && *ne != *tc.want:
				t.Fatalf("ExactNames = %+v, want %+v", *ne, *tc.want)
			}
		})
	}
}

// FuzzExactNames checks the property ExactNames is for: a document it
// passes decodes to the same value whichever order its members are read
// in (here: directly, and through a map, whose members marshal sorted).
func FuzzExactNames(f *testing.F) {
	for _, s := range []string{`{"default":{"max":1}}`, `{"orgs":{"a":{"rate":{"burst":1}}},"Orgs":{}}`,
		`{"default":{"max":1},"Default":{"max":2}}`, `{"list":[{"max":1},{"MAX":2,"max":3}]}`, `{"extra":"a","Extra":"b"}`,
		"{\"Plain\":\"\\xff0\",\"PLAIN\":\"\"}", `{"plain_inner":1,"Plain":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var direct limitsDoc
		if json.Unmarshal([]byte(doc), &direct) != nil {
			return
		}
		var generic any
		if json.Unmarshal([]byte(doc), &generic) != nil {
			t.Fatalf("%q decodes into the struct but not into any", doc)
		}
		sorted, err := json.Marshal(generic)
		if err != nil {
			return
		}
		var viaMap limitsDoc
		if json.Unmarshal(sorted, &viaMap) != nil {
			return // numbers a float64 rounds, for example
		}
		if ExactNames([]byte(doc), reflect.TypeFor[limitsDoc]()) != nil {
			return
		}
		if diff := cmp.Diff(direct, viaMap, cmp.AllowUnexported(limitsDoc{})); diff != "" {
			t.Fatalf("%q passes ExactNames but decodes differently through a map (-direct +map):\n%s", doc, diff)
		}
	})
}
