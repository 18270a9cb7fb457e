package sqlite_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// corpus makes data that looks like what an embedding model and an agent
// produce, for benchmarks and the recall test: vectors that are clustered,
// anisotropic (a few dimensions carry most of the variance, a common offset
// makes unrelated texts still point the same way, and some "outlier"
// dimensions are large in every vector, as in transformer models) and
// normalized; and English-like sentences whose words follow a Zipf law,
// with the function words ("the", "to", "for") that make a naive full-text
// OR query match nearly every row.
type corpus struct {
	dims    int
	offset  []float64   // common to every vector
	scale   []float64   // per-dimension standard deviation
	centers [][]float64 // topic centres
	topic   *rand.Zipf
	word    *rand.Zipf
	words   []string
	r       *rand.Rand
}

// functionWords are frequent English words, most frequent first.
var functionWords = strings.Fields(`the to and of a in for is on that with it be as at this by we from
	should use our are not when all after before if can about do does how what which`)

var realWords = strings.Fields(`deploy build release api team user oauth token database index query
	search memory vector cache session agent review merge branch commit test bench latency error retry
	timeout network proxy config secret key policy audit log metric trace service client server request
	response schema table column migration backup restore replica shard tenant project roadmap deadline
	meeting friday monday lunch coffee editor theme dark light mode font keyboard shortcut terminal shell
	script python golang rust docker kubernetes helm chart grafana alert oncall pager incident postmortem
	customer invoice billing plan quota limit feature flag rollout canary staging production laptop
	prefers likes wants uses hates needs keeps runs writes reads checks approves rejects`)

// newCorpus returns a corpus of dims dimensions. Every corpus has the same
// "model" (offset, scales, topics and vocabulary); seed draws the texts and
// vectors.
func newCorpus(dims int, seed uint64) *corpus {
	r := rand.New(rand.NewPCG(1, 0x5eed))
	c := &corpus{dims: dims, offset: make([]float64, dims), scale: make([]float64, dims)}
	perm := r.Perm(dims)
	for i := range dims {
		// Power-law variance over a random order of the dimensions.
		c.scale[perm[i]] = 1 / math.Sqrt(float64(i+1))
		c.offset[i] = 0.03 * r.NormFloat64()
	}
	for i := range 6 {
		c.offset[perm[dims-1-i]] = 0.9 + 0.1*float64(i) // outlier dimensions
	}
	const topics = 400
	c.centers = make([][]float64, topics)
	for t := range c.centers {
		v := make([]float64, dims)
		for i := range v {
			v[i] = r.NormFloat64()
		}
		c.centers[t] = v
	}
	// A vocabulary of real and made-up words with Zipf-distributed use.
	seen := map[string]bool{}
	c.words = append(c.words, realWords...)
	for _, w := range realWords {
		seen[w] = true
	}
	syll := strings.Fields("ka to ri mu se la no vi pe du ga ro zi be fo")
	for len(c.words) < 5000 {
		var b strings.Builder
		for range 2 + r.IntN(3) {
			b.WriteString(syll[r.IntN(len(syll))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			c.words = append(c.words, w)
		}
	}
	// The real words are the most frequent ones, the made-up words follow
	// in random order.
	made := c.words[len(realWords):]
	r.Shuffle(len(made), func(i, j int) { made[i], made[j] = made[j], made[i] })
	c.r = rand.New(rand.NewPCG(seed, 0x5eed))
	c.topic = rand.NewZipf(c.r, 1.1, 2, topics-1)
	c.word = rand.NewZipf(c.r, 1.07, 2, uint64(len(c.words)-1))
	return c
}

// vector returns a unit vector near a random topic centre.
func (c *corpus) vector() []float32 {
	ctr := c.centers[c.topic.Uint64()]
	v := make([]float32, c.dims)
	var sum float64
	for i := range v {
		x := c.offset[i] + c.scale[i]*(ctr[i]+0.8*c.r.NormFloat64())
		v[i] = float32(x)
		sum += x * x
	}
	inv := 1 / math.Sqrt(sum)
	for i := range v {
		v[i] = float32(float64(v[i]) * inv)
	}
	return v
}

// sentence returns one or two English-like clauses of 10 to 30 words.
func (c *corpus) sentence() string {
	var b strings.Builder
	n := 10 + c.r.IntN(21)
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		if c.r.IntN(5) < 2 {
			// Function words: mostly the most frequent ones.
			b.WriteString(functionWords[min(len(functionWords)-1, int(c.r.ExpFloat64()*5))])
		} else {
			b.WriteString(c.words[c.word.Uint64()])
		}
	}
	b.WriteByte('.')
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

// question returns a query an agent might send: a question word, a few
// function words and two to four content words.
func (c *corpus) question() string {
	qs := []string{"what does the", "how do we", "when should the", "which", "does the user", "what is the"}
	var b strings.Builder
	b.WriteString(qs[c.r.IntN(len(qs))])
	for range 2 + c.r.IntN(3) {
		b.WriteByte(' ')
		b.WriteString(c.words[c.word.Uint64()])
		if c.r.IntN(3) == 0 {
			b.WriteString(" for")
		}
	}
	return b.String()
}

// records returns n memories of org spread round-robin over scopes, with
// vectors and sentences from c, ready for [store.Importer.Import].
func (c *corpus) records(n int, org string, scopes []scope.Scope) []store.Record {
	out := make([]store.Record, n)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		at = at.Add(time.Second)
		out[i] = store.Record{
			Memory: store.Memory{
				ID: uuid.Must(uuid.NewV7()).String(), Org: org, Scope: scopes[i%len(scopes)], Content: c.sentence(),
				CreatedBy: "alice", CreatedAt: at, UpdatedAt: at,
			},
			Vector: c.vector(),
		}
	}
	return out
}
