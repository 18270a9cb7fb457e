package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// errUsage marks a bad option; main prints it with the usage hint.
var errUsage = errors.New("bad option")

// The tools a mix can call.
const (
	opAdd    = "add_memory"
	opSearch = "search_memory"
	opList   = "list_scopes"
)

// mixNames maps the names used in --mix to tools.
var mixNames = map[string]string{"add": opAdd, "search": opSearch, "list": opList}

// mix is a weighted choice of tools.
type mix struct {
	ops     []string
	cum     []float64 // cumulative weights, last = 1
	weights map[string]float64
}

// parseMix reads "add=20,search=75,list=5". Weights are relative: they need
// not sum to 100.
func parseMix(s string) (mix, error) {
	m := mix{weights: map[string]float64{}}
	total := 0.0
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return mix{}, fmt.Errorf("--mix %q: write each entry as name=weight, e.g. add=20,search=75,list=5: %w", s, errUsage)
		}
		op, known := mixNames[strings.TrimSpace(name)]
		if !known {
			return mix{}, fmt.Errorf("--mix: unknown tool %q (use add, search or list): %w", name, errUsage)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return mix{}, fmt.Errorf("--mix: weight %q of %s is not a non-negative number: %w", w, name, errUsage)
		}
		if _, dup := m.weights[op]; dup {
			return mix{}, fmt.Errorf("--mix: %s named twice: %w", name, errUsage)
		}
		m.weights[op] = f
		if f > 0 {
			m.ops = append(m.ops, op)
			total += f
			m.cum = append(m.cum, total)
		}
	}
	if total == 0 {
		return mix{}, fmt.Errorf("--mix %q: give at least one tool a positive weight: %w", s, errUsage)
	}
	for i := range m.cum {
		m.cum[i] /= total
	}
	m.cum[len(m.cum)-1] = 1
	return m, nil
}

func (m mix) pick(r *rand.Rand) string {
	return m.ops[min(sort.SearchFloat64s(m.cum, r.Float64()), len(m.ops)-1)]
}

// identity is one caller: an org and a user in it.
type identity struct {
	Org  string
	User string
}

func (id identity) String() string { return id.Org + "/" + id.User }

// tenants is the set of identities a run uses, orgs x users per org, and how
// calls spread over them.
type tenants struct {
	ids   []identity
	users int
	orgs  sampler
}

// newTenants builds orgs x users identities named org-NNN / user-NN.
// Orgs are chosen by dist ("uniform" or "zipf" with exponent s), users
// within an org uniformly.
func newTenants(orgs, users int, dist string, s float64) (*tenants, error) {
	if orgs < 1 || users < 1 {
		return nil, fmt.Errorf("--orgs %d and --users %d must be at least 1: %w", orgs, users, errUsage)
	}
	t := &tenants{users: users}
	for o := range orgs {
		for u := range users {
			t.ids = append(t.ids, identity{Org: fmt.Sprintf("org-%03d", o), User: fmt.Sprintf("user-%02d", u)})
		}
	}
	switch dist {
	case "uniform", "":
		t.orgs = uniform(orgs)
	case "zipf":
		z, err := newZipf(orgs, s)
		if err != nil {
			return nil, err
		}
		t.orgs = z
	default:
		return nil, fmt.Errorf("--distribution %q: use uniform or zipf: %w", dist, errUsage)
	}
	return t, nil
}

// pick returns the index in t.ids of a random identity.
func (t *tenants) pick(r *rand.Rand) int {
	return t.orgs.sample(r)*t.users + r.IntN(t.users)
}

// sampler draws an index in [0, n).
type sampler interface{ sample(r *rand.Rand) int }

type uniform int

func (u uniform) sample(r *rand.Rand) int { return r.IntN(int(u)) }

// zipf draws k in [0, n) with probability proportional to 1/(k+1)^s, by
// binary search in the cumulative distribution. Unlike math/rand's Zipf it
// accepts any s > 0, including the classic s = 1.
type zipf struct{ cum []float64 }

func newZipf(n int, s float64) (zipf, error) {
	if s <= 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return zipf{}, fmt.Errorf("--zipf-s %v must be a positive number: %w", s, errUsage)
	}
	z := zipf{cum: make([]float64, n)}
	total := 0.0
	for k := range n {
		total += 1 / math.Pow(float64(k+1), s)
		z.cum[k] = total
	}
	for k := range z.cum {
		z.cum[k] /= total
	}
	z.cum[n-1] = 1
	return z, nil
}

func (z zipf) sample(r *rand.Rand) int {
	return min(sort.SearchFloat64s(z.cum, r.Float64()), len(z.cum)-1)
}

// vocabulary is a fixed list of made-up words, so that contents and
// queries share words (the full-text half of search finds something and
// the fake embedder groups related texts) without shipping a dictionary.
type vocabulary []string

func newVocabulary(n int) vocabulary {
	onsets := []string{"b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl", "gr"}
	vowels := []string{"a", "e", "i", "o", "u", "ai", "ou"}
	codas := []string{"", "n", "r", "s", "l", "x", "nd", "st"}
	r := rand.New(rand.NewPCG(7, 11))
	seen := map[string]bool{}
	var v vocabulary
	for len(v) < n {
		var b strings.Builder
		for range 2 + r.IntN(2) {
			b.WriteString(onsets[r.IntN(len(onsets))])
			b.WriteString(vowels[r.IntN(len(vowels))])
		}
		b.WriteString(codas[r.IntN(len(codas))])
		w := b.String()
		if !seen[w] {
			seen[w] = true
			v = append(v, w)
		}
	}
	return v
}

// content returns a memory of about size bytes ending with a unique tag,
// so that no two contents of a run (or of two runs) are the same.
func (v vocabulary) content(r *rand.Rand, size int, unique string) string {
	var b strings.Builder
	tail := " (note " + unique + ")"
	for b.Len()+len(tail) < size || b.Len() == 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(v[r.IntN(len(v))])
	}
	b.WriteString(tail)
	return b.String()
}

// query returns 2 to 5 words of the vocabulary.
func (v vocabulary) query(r *rand.Rand) string {
	n := 2 + r.IntN(4)
	words := make([]string, n)
	for i := range words {
		words[i] = v[r.IntN(len(v))]
	}
	return strings.Join(words, " ")
}
