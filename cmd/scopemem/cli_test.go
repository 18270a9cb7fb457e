package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"
)

// parseWith parses args into model as main does, returning what kong wrote
// (help, usage) and the parse error.
func parseWith(t *testing.T, model any, args []string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	p, err := kong.New(model,
		kong.Name("scopemem"),
		kong.Description("A Model Context Protocol memory server with scoped, isolated memories."),
		kong.UsageOnError(),
		kong.Configuration(strictJSON),
		kong.Writers(&out, &out),
		kong.Exit(func(int) {}),
	)
	if err != nil {
		t.Fatalf("kong.New: %v", err)
	}
	_, err = p.Parse(args)
	return out.String(), err
}

// TestServeModelMatchesCLI checks that a command line starting with serve,
// parsed into ServeCLI alone, gives what the whole CLI gives: the same
// values, the same errors, the same help.
func TestServeModelMatchesCLI(t *testing.T) {
	for _, k := range []string{"SCOPEMEM_DB", "SCOPEMEM_EMBEDDER", "SCOPEMEM_LOG_LEVEL", "SCOPEMEM_ORG", "SCOPEMEM_TEAMS"} {
		if _, ok := os.LookupEnv(k); ok {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"org":"acme","teams":["red","blue"],"db":"from-config.db","log_level":"debug"}`)
	misspelt := write("misspelt.json", `{"org":"acme","temas":["x"]}`)
	// secret_file is a flag of token, not of serve: a serve config naming
	// it sets nothing, so it is refused like a misspelt key.
	otherCmd := write("other.json", `{"secret_file":"s"}`)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"bare", []string{"serve"}, false},
		{"stdio flags", []string{"serve", "--db", "x.db", "--embedder", "fake", "--fake-dims", "8", "--log-format", "json"}, false},
		{"http flags", []string{"serve", "--http", "127.0.0.1:0", "--jwt-secret-file", "s", "--rate-limit", "0"}, false},
		{"config file", []string{"serve", "--config", good, "--db", "flag-wins.db"}, false},
		{"misspelt config key", []string{"serve", "--config", misspelt}, true},
		{"config key of another command", []string{"serve", "--config", otherCmd}, true},
		{"unknown flag", []string{"serve", "--no-such-flag"}, true},
		{"help", []string{"serve", "--help"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var whole, alone CLI
			if m := cliModel(&alone, tc.args); m != &alone.ServeCLI {
				t.Fatalf("cliModel(%q) is not ServeCLI", tc.args)
			}
			wholeOut, wholeErr := parseWith(t, &whole, tc.args)
			aloneOut, aloneErr := parseWith(t, cliModel(&alone, tc.args), tc.args)
			if (wholeErr != nil) != tc.wantErr || (aloneErr != nil) != tc.wantErr {
				t.Fatalf("errors: whole CLI %v, ServeCLI %v; want an error: %v", wholeErr, aloneErr, tc.wantErr)
			}
			if wholeErr != nil && wholeErr.Error() != aloneErr.Error() {
				t.Errorf("errors differ: whole CLI %q, ServeCLI %q", wholeErr, aloneErr)
			}
			if diff := cmp.Diff(wholeOut, aloneOut); diff != "" {
				t.Errorf("output differs (-whole +alone):\n%s", diff)
			}
			if tc.name == "config file" {
				want := ServeCmd{Org: "acme", Teams: []string{"red", "blue"}, DB: "flag-wins.db"}
				got := ServeCmd{Org: alone.Serve.Org, Teams: alone.Serve.Teams, DB: alone.Serve.DB}
				if diff := cmp.Diff(want, got, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" || alone.LogLevel != slog.LevelDebug {
					t.Errorf("config file not applied (-want +got):\n%s\nlog level %v", diff, alone.LogLevel)
				}
			}
			if tc.name == "help" && !strings.Contains(aloneOut, "Usage: scopemem serve") {
				t.Errorf("serve --help printed %q", aloneOut)
			}
			if diff := cmp.Diff(whole.ServeCLI, alone.ServeCLI, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
				t.Errorf("parsed values differ (-whole +alone):\n%s", diff)
			}
		})
	}
	var cli CLI
	for _, args := range [][]string{nil, {"--log-level", "debug", "serve"}, {"migrate"}, {"--help"}} {
		if m := cliModel(&cli, args); m != &cli {
			t.Errorf("cliModel(%q) is not the whole CLI", args)
		}
	}
}
