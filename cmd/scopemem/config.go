package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kong"
)

// strictJSON is kong's JSON configuration resolver that also rejects keys
// naming no flag, so a misspelt setting in a --config file is an error
// rather than silently ignored.
func strictJSON(r io.Reader) (kong.Resolver, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("config file is not a JSON object: %w", err)
	}
	inner, err := kong.JSON(strings.NewReader(string(data)))
	if err != nil {
		return nil, err
	}
	return strictResolver{inner, keys}, nil
}

type strictResolver struct {
	kong.Resolver
	keys map[string]json.RawMessage
}

// Validate rejects a key naming no global flag and no flag of serve, the
// command that takes --config: the same keys whether app is the whole CLI
// or ServeCLI alone.
func (s strictResolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	nodes := []*kong.Node{app.Node}
	for _, c := range app.Children {
		if c.Name == "serve" {
			nodes = append(nodes, c)
		}
	}
	for _, n := range nodes {
		for _, f := range n.Flags {
			known[strings.ReplaceAll(f.Name, "-", "_")] = true
		}
	}
	for k := range s.keys {
		if !known[strings.ReplaceAll(k, "-", "_")] {
			return fmt.Errorf("config file: unknown setting %q", k)
		}
	}
	return nil
}
