package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/view"
	"github.com/scopemem/scopemem/tools"
)

const maxExamples = 10

// verify reads back every acknowledged add through fresh sessions, as the
// identity that made it, and compares each user scope's count with the
// count before the run. conc bounds the reads in flight.
func verify(ctx context.Context, tgt target, ten *tenants, acks []ack, before map[int]int, conc int) VerifyResult {
	var (
		res VerifyResult
		mu  sync.Mutex
	)
	note := func(f func(*VerifyResult), example string) {
		mu.Lock()
		defer mu.Unlock()
		f(&res)
		if example != "" && len(res.Examples) < maxExamples {
			res.Examples = append(res.Examples, example)
		}
	}
	res.Acknowledged = len(acks)

	// One id for two contents means two writes became one row.
	byID := map[string]ack{}
	newPerIdent := map[int]int{}
	var unique []ack
	for _, a := range acks {
		if a.duplicate {
			note(func(r *VerifyResult) { r.Merged++ }, fmt.Sprintf("merged: %q was answered as a duplicate of %s", a.content, a.id))
		}
		if prev, seen := byID[a.id]; seen {
			if prev.content != a.content {
				note(func(r *VerifyResult) { r.Duplicated++ }, fmt.Sprintf("duplicated: id %s acknowledged for two contents", a.id))
			}
			continue
		}
		byID[a.id] = a
		unique = append(unique, a)
		if !a.duplicate {
			newPerIdent[a.ident]++
		}
	}
	// Read in identity order, so that a stdio verifier process serves one
	// run of reads.
	slices.SortStableFunc(unique, func(x, y ack) int { return x.ident - y.ident })

	jobs := make(chan ack)
	var wg sync.WaitGroup
	for range max(conc, 1) {
		wg.Go(func() {
			open := map[int]*session{}
			defer func() {
				for _, s := range open {
					s.close()
				}
			}()
			for a := range jobs {
				key := 0
				if tgt.perIdentity() {
					key = a.ident
				}
				s := open[key]
				if s == nil {
					var err error
					if s, err = tgt.verifier(ctx, a.ident); err != nil {
						note(func(r *VerifyResult) { r.Unverified++ }, "cannot connect to verify: "+err.Error())
						continue
					}
					open[key] = s
				}
				checkAck(ctx, s, a, note)
			}
		})
	}
	for _, a := range unique {
		select {
		case jobs <- a:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()

	// Compare scope counts: stored twice shows as more rows than acks.
	if before != nil {
		idents := make([]int, 0, len(before))
		for ident := range before {
			idents = append(idents, ident)
		}
		slices.Sort(idents)
		for _, ident := range idents {
			s, err := tgt.verifier(ctx, ident)
			if err != nil {
				note(func(r *VerifyResult) { r.CountErrors++ }, "cannot connect to count: "+err.Error())
				continue
			}
			n, err := userCount(ctx, s, ident)
			s.close()
			if err != nil {
				note(func(r *VerifyResult) { r.CountErrors++ }, fmt.Sprintf("counting %s: %v", ten.ids[ident], err))
				continue
			}
			if d := n - before[ident] - newPerIdent[ident]; d != 0 {
				note(func(r *VerifyResult) { r.CountDelta += d }, fmt.Sprintf("%s holds %d memories: %d before + %d acknowledged new ones would be %d",
					ten.ids[ident], n, before[ident], newPerIdent[ident], before[ident]+newPerIdent[ident]))
			}
		}
	}
	return res
}

// checkAck reads one memory back as its identity. A read that fails with
// anything but a plain not-found (scopemem answers a missing memory with a
// JSON-RPC internal error, since mcp-go gives every resource handler error
// that code) is settled by searching for the memory's unique content: found
// means the read failed for another reason, retried twice; not found means
// lost.
func checkAck(ctx context.Context, s *session, a ack, note func(func(*VerifyResult), string)) {
	lost := func() { note(func(r *VerifyResult) { r.Lost++ }, fmt.Sprintf("lost: %s (%q)", a.id, a.content)) }
	m, err := readMemory(ctx, s, a)
	if errors.Is(err, mcp.ErrResourceNotFound) {
		lost()
		return
	}
	if err != nil {
		found, serr := searchFor(ctx, s, a)
		switch {
		case serr != nil:
			note(func(r *VerifyResult) { r.Unverified++ }, fmt.Sprintf("unverified: %s: read: %v; search: %v", a.id, err, serr))
			return
		case !found:
			lost()
			return
		}
		for attempt := 1; attempt <= 2 && err != nil; attempt++ {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			m, err = readMemory(ctx, s, a)
		}
		if err != nil {
			note(func(r *VerifyResult) { r.Unverified++ }, fmt.Sprintf("unverified: %s is found by search but cannot be read: %v", a.id, err))
			return
		}
	}
	if m.Content == a.content || a.duplicate {
		note(func(r *VerifyResult) { r.Present++ }, "")
		return
	}
	note(func(r *VerifyResult) { r.Mismatched++ }, fmt.Sprintf("mismatch: %s holds %q, sent %q", a.id, m.Content, a.content))
}

// readMemory reads memory://memories/{id} as the ack's identity.
func readMemory(ctx context.Context, s *session, a ack) (view.Memory, error) {
	req := mcp.ReadResourceRequest{}
	req.Params.URI = "memory://memories/" + a.id
	cctx, cancel := context.WithTimeout(withIdent(ctx, a.ident), 30*time.Second)
	defer cancel()
	res, err := s.c.ReadResource(cctx, req)
	if err != nil {
		return view.Memory{}, err
	}
	var m view.Memory
	if len(res.Contents) != 1 {
		return m, fmt.Errorf("read %s: %d contents, want 1", req.Params.URI, len(res.Contents))
	}
	tc, ok := res.Contents[0].(mcp.TextResourceContents)
	if !ok {
		return m, fmt.Errorf("read %s: contents are not text", req.Params.URI)
	}
	if err := json.Unmarshal([]byte(tc.Text), &m); err != nil {
		return m, fmt.Errorf("read %s: %w", req.Params.URI, err)
	}
	return m, nil
}

// searchFor reports whether searching for the ack's content, which is
// unique to it, finds its id.
func searchFor(ctx context.Context, s *session, a ack) (bool, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = opSearch
	req.Params.Arguments = map[string]any{"query": a.content, "limit": 100, "scopes": []string{"user"}}
	cctx, cancel := context.WithTimeout(withIdent(ctx, a.ident), 30*time.Second)
	defer cancel()
	res, err := s.c.CallTool(cctx, req)
	if err != nil {
		return false, err
	}
	if res.IsError {
		return false, fmt.Errorf("search_memory: %s", resultText(res))
	}
	var out tools.SearchMemoryOutput
	if err := decodeStructured(res, &out); err != nil {
		return false, err
	}
	for _, h := range out.Results {
		if h.ID == a.id {
			return true, nil
		}
	}
	return false, nil
}
