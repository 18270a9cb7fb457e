package tools

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// jsonAppender is an output that writes its own JSON, byte for byte what
// encoding/json would write, without reflection: search results are most
// of what a busy server encodes.
type jsonAppender interface {
	appendJSON(b []byte) ([]byte, error)
	// jsonSize estimates the length of the JSON from above, so that
	// it is written into one buffer, allocated once.
	jsonSize() int
}

// encodeOutput returns out as JSON.
func encodeOutput(out any) ([]byte, error) {
	if a, ok := out.(jsonAppender); ok {
		return a.appendJSON(make([]byte, 0, a.jsonSize()))
	}
	return json.Marshal(out)
}

// appendJSONFloat appends f as encoding/json writes a float64.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, &json.UnsupportedValueError{Str: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b, nil
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		q, err := json.Marshal(t) // returns the error encoding/json would
		return append(b, q...), err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// jsonSize returns about how many bytes appendJSON writes, to size its
// buffer.
func (o SearchMemoryOutput) jsonSize() int {
	n := 16
	for i := range o.Results {
		h := &o.Results[i]
		// The members' names, a UUID, a time and two floats take about
		// 200 bytes; text grows by its escapes, a few per cent for prose.
		n += 256 + len(h.Scope) + len(h.CreatedBy) + len(h.Content) + len(h.Content)/8
		for _, t := range h.Tags {
			n += len(t) + 3
		}
		if len(h.Metadata) > 0 {
			n += 256
		}
	}
	return n
}

// appendJSON writes the search results as encoding/json would.
func (o SearchMemoryOutput) appendJSON(b []byte) ([]byte, error) {
	if o.Results == nil {
		return append(b, `{"results":null}`...), nil
	}
	b = append(b, `{"results":[`...)
	var err error
	for i := range o.Results {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = o.Results[i].appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// appendJSON writes the hit as encoding/json would.
func (h *SearchHit) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = jsonscan.AppendString(b, h.ID)
	b = append(b, `,"content":`...)
	b = jsonscan.AppendString(b, h.Content)
	b = append(b, `,"scope":`...)
	b = jsonscan.AppendString(b, h.Scope)
	b = append(b, `,"score":`...)
	if b, err = appendJSONFloat(b, h.Score); err != nil {
		return nil, err
	}
	b = append(b, `,"tags":`...)
	if h.Tags == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, t := range h.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonscan.AppendString(b, t)
		}
		b = append(b, ']')
	}
	if len(h.Metadata) > 0 {
		m, err := json.Marshal(h.Metadata)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"metadata":`...)
		b = append(b, m...)
	}
	b = append(b, `,"created_by":`...)
	b = jsonscan.AppendString(b, h.CreatedBy)
	b = append(b, `,"created_at":`...)
	if b, err = appendJSONTime(b, h.CreatedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"similarity":`...)
	if b, err = appendJSONFloat(b, h.Similarity); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}
