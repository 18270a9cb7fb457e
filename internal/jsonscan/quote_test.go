package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// plainPrefixRef is PlainPrefix a byte at a time, from what json.Marshal
// writes: the bytes it leaves as they are.
func plainPrefixRef(s string) int {
	for i := range len(s) {
		q, _ := json.Marshal(s[i : i+1])
		if len(q) != 3 || q[1] != s[i] {
			return i
		}
	}
	return len(s)
}

func TestPlainPrefix(t *testing.T) {
	long := strings.Repeat("plain text ", 20)
	for _, s := range []string{"", "a", "abcdefg", "abcdefgh", "abcdefghi", long, long + `"`, long + "é", `a"b`, "abcdefg\\", "abcdefgh<",
		"\x00", "\x1f", "\x7f", " !#$%'()*+,-./09:;=?@AZ[]^_`az{|}~", "abcdefghijklmno&", "ab>", "abcdefghijklmnop\x80", "\xe2\x80\xa8"} {
		if got, want := PlainPrefix(s), plainPrefixRef(s); got != want {
			t.Errorf("PlainPrefix(%q) = %d, want %d", s, got, want)
		}
		if got, want := PlainPrefix([]byte(s)), plainPrefixRef(s); got != want {
			t.Errorf("PlainPrefix([]byte(%q)) = %d, want %d", s, got, want)
		}
	}
}

func FuzzPlainPrefix(f *testing.F) {
	for _, s := range []string{"", "abcdefgh\"", "<>&\\\x00\x80", "0123456789abcdef\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := PlainPrefix(s), plainPrefixRef(s); got != want {
			t.Errorf("PlainPrefix(%q) = %d, want %d", s, got, want)
		}
	})
}

func BenchmarkPlainPrefix(b *testing.B) {
	s := strings.Repeat("the staging database is called pluto ", 30)
	for b.Loop() {
		if PlainPrefix(s) != len(s) {
			b.Fatal("not plain")
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "<>&", "\u2028\u2029", "\x00\x1f\x7f", "\xff\xfe", "é日本🙂", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}
