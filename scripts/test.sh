#!/usr/bin/env bash
# test.sh: every test scopemem has, against a real PostgreSQL.
#
# Starts a throwaway PostgreSQL 15 with pgvector (scripts/testdb.sh) unless
# SCOPEMEM_TEST_DATABASE_URL names one, then vets and runs the whole Go test
# suite with the race detector. Extra arguments go to `go test`
# (e.g. scripts/test.sh -run TestHTTP ./internal/app).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
	set -- ./...
fi
go vet ./...
exec scripts/testdb.sh run -- go test -race -count=1 -timeout 20m "$@"
