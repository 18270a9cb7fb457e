#!/usr/bin/env bash
# run.sh: the end-to-end suite. Builds scopemem, installs the pinned MCP
# TypeScript SDK (npm ci, from package-lock.json) and drives the binary with
# the SDK's client over stdio and streamable HTTP using node's test runner.
# Needs Go and Node.js 18 or newer with npm; exits non-zero on any failure.
# Extra arguments go to `node --test` (e.g. e2e/run.sh --test-name-pattern=stdio).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "e2e/run.sh: node and npm are needed (Node.js 18 or newer): install Node.js, e.g. apt-get install nodejs npm" >&2
	exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
	echo "e2e/run.sh: Node.js $(node --version) is too old: the MCP SDK needs 18 or newer" >&2
	exit 1
fi

bindir=$(mktemp -d "${TMPDIR:-/tmp}/scopemem-e2e-bin.XXXXXX")
trap 'rm -rf "$bindir"' EXIT
echo "e2e: building scopemem" >&2
(cd .. && go build -o "$bindir/scopemem" ./cmd/scopemem)

echo "e2e: installing the MCP TypeScript SDK (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >&2

export SCOPEMEM_BIN="$bindir/scopemem"
# --test-timeout bounds a hung test; the suites carry their own timeouts too.
node --test --test-reporter=spec --test-timeout=120000 "$@" ./*.test.mjs
