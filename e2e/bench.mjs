#!/usr/bin/env node
// bench.mjs: one stdio session of the official MCP TypeScript SDK client
// against a scopemem binary, as the reference figures were taken:
// preload memories with add_memory, then call one tool back to back for a
// while and print calls/s and latency percentiles. The client is the
// SDK's, not scopebench's, so that the figures compare with servers
// measured the same way.
//
//   node e2e/bench.mjs --bin ./scopemem [--preload 2000] [--duration 8]
//        [--warmup 2] [--tool search|add] [--dims 768]
//
// The server runs with the fake embedder (no model) and a new SQLite file
// in a temporary directory, removed afterwards. Run `npm ci` in e2e/ first.
//
// --url URL measures a running `scopemem serve --http` instead (URL its
// /mcp endpoint), with HS256 tokens minted from --jwt-secret-file for one
// user of a new org, or of --org (--issuer and --audience when the server
// checks them). --queries N searches for the first N sentences (default:
// the preloaded ones), for a run on an org an earlier run loaded.
// --sessions N runs N clients in closed loops (over stdio, N processes on
// one file) after one of them has preloaded.
//
// --workers W runs the lost-writes check instead: W clients, each with a
// server process of its own on the same file, send --creates adds between
// them at once; afterwards a new process counts what was kept.
//
// The same loops measure the reference server of the MCP project,
// @modelcontextprotocol/server-memory (a knowledge graph in a JSON-lines
// file): --server server-memory --peer PATH, PATH its dist/index.js, e.g.
//
//   npm install --prefix /tmp/peer @modelcontextprotocol/server-memory@2026.8.31
//   node e2e/bench.mjs --server server-memory \
//        --peer /tmp/peer/node_modules/@modelcontextprotocol/server-memory/dist/index.js
//
// There an add is create_entities with one entity (its name unique, the
// sentence its observation), a search is search_nodes with the sentence,
// and the count is read_graph's entities.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { mintJWT } from './helpers.mjs';

const { values: opt } = parseArgs({
    options: {
        bin: { type: 'string' },
        preload: { type: 'string', default: '2000' },
        duration: { type: 'string', default: '8' },
        warmup: { type: 'string', default: '2' },
        tool: { type: 'string', default: 'search' },
        dims: { type: 'string', default: '768' },
        server: { type: 'string', default: 'scopemem' },
        peer: { type: 'string' },
        workers: { type: 'string', default: '0' },
        creates: { type: 'string', default: '1000' },
        sessions: { type: 'string', default: '1' },
        url: { type: 'string' },
        'jwt-secret-file': { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
        org: { type: 'string' },
        queries: { type: 'string' },
    },
});
if (opt.server !== 'scopemem' && opt.server !== 'server-memory') {
    console.error(`bench.mjs: --server is scopemem or server-memory, not ${JSON.stringify(opt.server)}`);
    process.exit(2);
}
if (opt.server === 'scopemem' && !opt.bin === !opt.url) {
    console.error('bench.mjs: one of --bin PATH (the scopemem binary) and --url URL (a running server\'s /mcp) is required');
    process.exit(2);
}
if (opt.url && !opt['jwt-secret-file']) {
    console.error('bench.mjs: --url needs --jwt-secret-file (the server\'s HS256 secret)');
    process.exit(2);
}
if (opt.server === 'server-memory' && !opt.peer) {
    console.error('bench.mjs: --peer PATH (server-memory\'s dist/index.js) is required with --server server-memory');
    process.exit(2);
}
if (opt.tool !== 'search' && opt.tool !== 'add') {
    console.error(`bench.mjs: --tool is search or add, not ${JSON.stringify(opt.tool)}`);
    process.exit(2);
}
// Over HTTP the SDK's transport gives every request the same AbortSignal,
// and node's fetch adds a listener to it for each one: a long run passes
// node's limit of listeners and warns for every further request. The
// warning is about the client, so it is not printed.
process.removeAllListeners('warning');
process.on('warning', (w) => {
    if (w.name !== 'MaxListenersExceededWarning') {
        console.error(w);
    }
});

const preload = Number(opt.preload);
const duration = Number(opt.duration) * 1000;
const warmup = Number(opt.warmup) * 1000;
const workers = Number(opt.workers);
const creates = Number(opt.creates);
const sessions = Number(opt.sessions);
const queries = Number(opt.queries ?? opt.preload);
for (const [name, v] of [['sessions', sessions], ['queries', queries], ['preload', preload], ['duration', duration], ['warmup', warmup], ['workers', workers], ['creates', creates]]) {
    if (!Number.isInteger(v) || v < 0) {
        console.error(`bench.mjs: --${name} must be a whole number, not ${JSON.stringify(opt[name])}`);
        process.exit(2);
    }
}
if (sessions < 1) {
    console.error('bench.mjs: --sessions must be at least 1');
    process.exit(2);
}

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet',
    'kilo', 'lima', 'mike', 'november', 'oscar', 'papa', 'quebec', 'romeo', 'sierra', 'tango'];

/** A distinct sentence for n: no two are near-duplicates of each other. */
function fact(n) {
    const w = [];
    for (let i = 0, x = n + 1; i < 8; i++, x = Math.floor(x / 3) + i * 7919 + n) {
        w.push(WORDS[x % WORDS.length]);
    }
    return `memory ${n}: ${w.join(' ')} noted on day ${n % 365}`;
}

function percentile(sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const dir = mkdtempSync(join(tmpdir(), 'scopemem-bench-'));

/** A token for one user of a new org, so that a run counts only its own memories. */
function bearer() {
    const secret = readFileSync(opt['jwt-secret-file'], 'utf8').trim();
    const now = Math.floor(Date.now() / 1000);
    const claims = {
        sub: 'bench',
        org_id: opt.org ?? `bench-${randomBytes(6).toString('hex')}`,
        scope: 'memory:read memory:write',
        iat: now,
        exp: now + 3600,
    };
    if (opt.issuer) {
        claims.iss = opt.issuer;
    }
    if (opt.audience) {
        claims.aud = opt.audience;
    }
    return mintJWT(secret, claims);
}
const token = opt.url ? bearer() : '';

/** A client connected to a new server process on the benchmark's file. */
async function connect() {
    const transport = opt.url
        ? new StreamableHTTPClientTransport(new URL(opt.url), {
            requestInit: { headers: { Authorization: `Bearer ${token}` } },
        })
        : opt.server === 'scopemem'
        ? new StdioClientTransport({
            command: opt.bin,
            args: ['serve', '--db', join(dir, 'bench.db'), '--embedder', 'fake', '--fake-dims', opt.dims,
                '--fake-delay', '0s', '--org', 'bench', '--user', 'bench'],
            env: { ...process.env, SCOPEMEM_LOG_LEVEL: 'warn' },
            stderr: 'inherit',
        })
        : new StdioClientTransport({
            command: process.execPath,
            args: [opt.peer],
            env: { ...process.env, MEMORY_FILE_PATH: join(dir, 'memory.jsonl') },
            stderr: 'inherit',
        });
    const client = new Client({ name: 'scopemem-bench', version: '1.0.0' });
    await client.connect(transport);
    return client;
}

/** Adds the n-th memory (the n-th entity). */
function add(client, n) {
    if (opt.server === 'scopemem') {
        return client.callTool({ name: 'add_memory', arguments: { content: fact(n) } });
    }
    return client.callTool({
        name: 'create_entities',
        arguments: { entities: [{ name: `entity ${n}`, entityType: 'fact', observations: [fact(n)] }] },
    });
}

/** Searches for the n-th memory's sentence. */
function search(client, n) {
    if (opt.server === 'scopemem') {
        return client.callTool({ name: 'search_memory', arguments: { query: fact(n), limit: 10 } });
    }
    return client.callTool({ name: 'search_nodes', arguments: { query: fact(n) } });
}

/** How many memories (entities) the file holds, read by client. */
async function count(client) {
    if (opt.server === 'scopemem') {
        const r = await client.callTool({ name: 'list_scopes', arguments: {} });
        return r.structuredContent.scopes.reduce((sum, s) => sum + s.count, 0);
    }
    const r = await client.callTool({ name: 'read_graph', arguments: {} });
    return r.structuredContent.entities.length;
}

/**
 * The lost-writes check: workers clients, each with its own server
 * process on the file, send creates adds between them, all at once.
 */
async function lostWrites() {
    const clients = [];
    try {
        for (let w = 0; w < workers; w++) {
            clients.push(await connect());
        }
        let acked = 0;
        let failed = 0;
        const t0 = performance.now();
        await Promise.all(clients.map(async (c, w) => {
            for (let n = w; n < creates; n += workers) {
                try {
                    const r = await add(c, n);
                    if (r.isError) {
                        failed++;
                    } else {
                        acked++;
                    }
                } catch {
                    failed++;
                }
            }
        }));
        const secs = (performance.now() - t0) / 1000;
        for (const c of clients.splice(0)) {
            await c.close();
        }
        const reader = await connect();
        let kept;
        try {
            kept = await count(reader);
        } finally {
            await reader.close();
        }
        console.log(`${opt.server}: ${workers} processes on one file, ${creates} adds in ${secs.toFixed(2)} s: ` +
            `${acked} acknowledged, ${failed} failed, ${kept} kept, ${Math.max(acked - kept, 0)} acknowledged and lost`);
        if (kept < acked) {
            process.exitCode = 1;
        }
    } finally {
        for (const c of clients) {
            await c.close();
        }
    }
}

/** Preloads with one client, then times one tool back to back in every session. */
async function throughput() {
    const clients = [];
    try {
        for (let c = 0; c < sessions; c++) {
            clients.push(await connect());
        }
        let n = 0;
        const call = (client, tool) => {
            n++;
            return tool === 'add' ? add(client, n) : search(client, n % Math.max(queries, 1));
        };

        const t0 = performance.now();
        for (let i = 0; i < preload; i++) {
            const r = await call(clients[0], 'add');
            if (r.isError) {
                throw new Error(`preload add failed: ${JSON.stringify(r.content)}`);
            }
        }
        const loadSecs = (performance.now() - t0) / 1000;
        console.log(`preloaded ${preload} memories in ${loadSecs.toFixed(2)} s (${(preload / loadSecs).toFixed(0)} adds/s)`);

        const warmEnd = performance.now() + warmup;
        await Promise.all(clients.map(async (c) => {
            while (performance.now() < warmEnd) {
                await call(c, opt.tool);
            }
        }));
        const lat = [];
        let errors = 0;
        const start = performance.now();
        const end = start + duration;
        await Promise.all(clients.map(async (c) => {
            for (let now = performance.now(); now < end;) {
                const r = await call(c, opt.tool);
                const after = performance.now();
                lat.push(after - now);
                if (r.isError) {
                    errors++;
                }
                now = after;
            }
        }));
        const secs = (performance.now() - start) / 1000;
        lat.sort((a, b) => a - b);
        const ms = (v) => `${v.toFixed(2)} ms`;
        const who = sessions > 1 ? `${sessions} sessions, ` : '';
        console.log(`${opt.tool}: ${who}${lat.length} calls in ${secs.toFixed(2)} s: ${(lat.length / secs).toFixed(0)} calls/s, ` +
            `p50 ${ms(percentile(lat, 0.5))}, p95 ${ms(percentile(lat, 0.95))}, p99 ${ms(percentile(lat, 0.99))}, ` +
            `max ${ms(lat[lat.length - 1])}, errors ${errors}`);
        if (errors > 0) {
            process.exitCode = 1;
        }
    } finally {
        for (const c of clients) {
            await c.close();
        }
    }
}

try {
    await (workers > 0 ? lostWrites() : throughput());
} finally {
    rmSync(dir, { recursive: true, force: true });
}
