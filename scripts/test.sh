#!/usr/bin/env bash
# test.sh: every test scopemem has, against a real PostgreSQL.
#
# Starts a throwaway PostgreSQL 15 with pgvector (scripts/testdb.sh) unless
# SCOPEMEM_TEST_DATABASE_URL names one, then vets, runs the end-to-end suite
# of the official MCP TypeScript SDK client (e2e/, needs Node 18+ and npm),
# and runs the whole Go test suite with the race detector. Extra arguments
# go to `go test` alone (e.g. scripts/test.sh -run TestHTTP ./internal/app).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
	set -- ./...
fi
go vet ./...
if [ "$*" = "./..." ]; then
	# The official TypeScript SDK client against the real binary, then the
	# official MCP conformance suite.
	e2e/run.sh
	e2e/conformance.sh
fi
exec scripts/testdb.sh run -- go test -race -count=1 -timeout 20m "$@"
