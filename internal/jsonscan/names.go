package jsonscan

import (
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// NameError is a member of a JSON object that names no field of the
// struct it decodes into, exactly.
type NameError struct {
	// Path locates the object: "" for the document itself, else its
	// members and array indexes joined by dots (orgs.acme.principal).
	Path string
	Name string
}

func (e *NameError) Error() string {
	if e.Path == "" {
		return "unknown field " + strconv.Quote(e.Name)
	}
	return fmt.Sprintf("unknown field %q in %s", e.Name, e.Path)
}

// ExactNames checks that every member of every JSON object in data that
// decodes into a struct of t (t itself, or one reached through pointers,
// struct fields, maps with string keys, slices and arrays) is named
// exactly as encoding/json names one of that struct's fields, and
// returns a [*NameError] for the first that is not, in sorted order.
//
// encoding/json matches member names to fields in any case, and of two
// members naming one field keeps the later, so {"org":"a","Org":"b"}
// decodes to b where a reader matching names exactly (a map, another
// language's decoder, a person) sees a. Checking the names first makes
// such a document an error instead.
//
// Data that is not valid JSON, or whose values do not fit t, passes:
// decoding it reports what is wrong better. Types with their own
// UnmarshalJSON or UnmarshalText are not looked into.
func ExactNames(data []byte, t reflect.Type) error {
	return exactNames(data, t, "")
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func exactNames(data []byte, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if p := reflect.PointerTo(t); p.Implements(unmarshalerType) || p.Implements(textUnmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		fields := FieldTypes(t)
		return eachMember(data, path, func(name string) (reflect.Type, bool) {
			ft, ok := fields[name]
			return ft, ok
		})
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil
		}
		return eachMember(data, path, func(string) (reflect.Type, bool) { return t.Elem(), true })
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte is a base64 string; [n]byte an array of numbers
		}
		var elems []json.RawMessage
		if json.Unmarshal(data, &elems) != nil {
			return nil
		}
		for i, e := range elems {
			if err := exactNames(e, t.Elem(), join(path, strconv.Itoa(i))); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachMember checks the members of the object data, in sorted order:
// a name typeOf does not know is a NameError, the others' values are
// checked against the type it gives. Data that is not an object passes.
func eachMember(data []byte, path string, typeOf func(name string) (reflect.Type, bool)) error {
	var members map[string]json.RawMessage
	if json.Unmarshal(data, &members) != nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		t, ok := typeOf(name)
		if !ok {
			return &NameError{Path: path, Name: name}
		}
		if err := exactNames(members[name], t, join(path, name)); err != nil {
			return err
		}
	}
	return nil
}

// FieldTypes returns the member names encoding/json decodes into the
// fields of the struct type t, with the fields' types, including those of
// embedded structs it promotes.
func FieldTypes(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	addFields(t, out, 0)
	return out
}

func addFields(t reflect.Type, out map[string]reflect.Type, depth int) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && depth < 8 {
				// Promoted fields; a field of the outer struct wins.
				inner := map[string]reflect.Type{}
				addFields(ft, inner, depth+1)
				for n, it := range inner {
					if _, ok := out[n]; !ok {
						out[n] = it
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
