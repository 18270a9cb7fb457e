package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
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

func (s strictResolver) Validate(app *kong.Application) error {
	var known []string
	_ = kong.Visit(app, func(n kong.Visitable, next kong.Next) error {
		if f, ok := n.(*kong.Flag); ok {
			known = append(known, strings.ReplaceAll(f.Name, "-", "_"))
		}
		return next(nil)
	})
	for k := range s.keys {
		if !slices.Contains(known, strings.ReplaceAll(k, "-", "_")) {
			return fmt.Errorf("config file: unknown setting %q", k)
		}
	}
	return nil
}
