#!/usr/bin/env bash
# test.sh: every test scopemem has, against a real PostgreSQL.
#
# Starts a throwaway PostgreSQL 15 with pgvector (scripts/testdb.sh) unless
# SCOPEMEM_TEST_DATABASE_URL names one, then vets, runs the end-to-end suite
# of the official MCP TypeScript SDK client (e2e/, needs Node 18+ and npm),
# runs each fuzz target briefly, and runs the whole Go test suite with the
# race detector. Extra arguments go to `go test` alone (e.g.
# scripts/test.sh -run TestHTTP ./internal/app).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
	set -- ./...
fi

# fuzz_briefly runs every fuzz target for SCOPEMEM_FUZZTIME (default 3s;
# 0 skips), one target per `go test -fuzz` as go requires. Targets are
# listed with `go test -list` in each package that declares one, so new
# targets run without changing this script. Their seed corpora (the f.Add
# calls and testdata/fuzz) also run in the main test run below; an input
# that fails here is written to testdata/fuzz/<target>/ for a regression
# test.
fuzz_briefly() {
	local fuzztime=${SCOPEMEM_FUZZTIME:-3s} pkgs pkg list name corpus before after fuzzlog
	if [ "$fuzztime" = 0 ]; then
		return
	fi
	fuzzlog=$(mktemp)
	trap 'rm -f "$fuzzlog"' RETURN
	pkgs=$(grep -rl --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git '^func Fuzz' . | xargs -r -n1 dirname | sort -u)
	for pkg in $pkgs; do
		list=$(go test -list '^Fuzz' "$pkg")
		for name in $(grep '^Fuzz' <<<"$list"); do
			echo "fuzz: $name in $pkg for $fuzztime" >&2
			corpus="$pkg/testdata/fuzz/$name"
			before=$( (ls "$corpus" 2>/dev/null || true) | wc -l)
			if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$fuzzlog"; then
				# Go 1.26's fuzz coordinator can fail a target with a bare
				# "context deadline exceeded" as -fuzztime ends
				# (go.dev/issue/75804, fixed in Go 1.27). A real failure
				# writes its input to testdata/fuzz/<target>/; that one
				# does not, and is only reported.
				after=$( (ls "$corpus" 2>/dev/null || true) | wc -l)
				if [ "$after" = "$before" ] && grep -q '^    context deadline exceeded$' "$fuzzlog"; then
					echo "fuzz: $name: the fuzz coordinator's deadline race (go.dev/issue/75804), no failing input: not a failure" >&2
				else
					return 1
				fi
			fi
		done
	done
}

go vet ./...
if [ "$*" = "./..." ]; then
	# The official TypeScript SDK client against the real binary, then the
	# official MCP conformance suite.
	e2e/run.sh
	e2e/conformance.sh
	fuzz_briefly
fi
exec scripts/testdb.sh run -- go test -race -count=1 -timeout 20m "$@"
