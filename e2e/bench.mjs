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

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const { values: opt } = parseArgs({
    options: {
        bin: { type: 'string' },
        preload: { type: 'string', default: '2000' },
        duration: { type: 'string', default: '8' },
        warmup: { type: 'string', default: '2' },
        tool: { type: 'string', default: 'search' },
        dims: { type: 'string', default: '768' },
    },
});
if (!opt.bin) {
    console.error('bench.mjs: --bin PATH (the scopemem binary) is required');
    process.exit(2);
}
if (opt.tool !== 'search' && opt.tool !== 'add') {
    console.error(`bench.mjs: --tool is search or add, not ${JSON.stringify(opt.tool)}`);
    process.exit(2);
}
const preload = Number(opt.preload);
const duration = Number(opt.duration) * 1000;
const warmup = Number(opt.warmup) * 1000;

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
const transport = new StdioClientTransport({
    command: opt.bin,
    args: ['serve', '--db', join(dir, 'bench.db'), '--embedder', 'fake', '--fake-dims', opt.dims, '--fake-delay', '0s',
        '--org', 'bench', '--user', 'bench'],
    env: { ...process.env, SCOPEMEM_LOG_LEVEL: 'warn' },
    stderr: 'inherit',
});
const client = new Client({ name: 'scopemem-bench', version: '1.0.0' });
try {
    await client.connect(transport);

    let n = 0;
    const call = (tool) => {
        n++;
        if (tool === 'add') {
            return client.callTool({ name: 'add_memory', arguments: { content: fact(n) } });
        }
        return client.callTool({ name: 'search_memory', arguments: { query: fact(n % Math.max(preload, 1)), limit: 10 } });
    };

    const t0 = performance.now();
    for (let i = 0; i < preload; i++) {
        const r = await call('add');
        if (r.isError) {
            throw new Error(`preload add failed: ${JSON.stringify(r.content)}`);
        }
    }
    const loadSecs = (performance.now() - t0) / 1000;
    console.log(`preloaded ${preload} memories in ${loadSecs.toFixed(2)} s (${(preload / loadSecs).toFixed(0)} adds/s)`);

    for (const end = performance.now() + warmup; performance.now() < end;) {
        await call(opt.tool);
    }
    const lat = [];
    let errors = 0;
    const start = performance.now();
    const end = start + duration;
    for (let now = start; now < end;) {
        const r = await call(opt.tool);
        const after = performance.now();
        lat.push(after - now);
        if (r.isError) {
            errors++;
        }
        now = after;
    }
    const secs = (performance.now() - start) / 1000;
    lat.sort((a, b) => a - b);
    const ms = (v) => `${v.toFixed(2)} ms`;
    console.log(`${opt.tool}: ${lat.length} calls in ${secs.toFixed(2)} s: ${(lat.length / secs).toFixed(0)} calls/s, ` +
        `p50 ${ms(percentile(lat, 0.5))}, p95 ${ms(percentile(lat, 0.95))}, p99 ${ms(percentile(lat, 0.99))}, ` +
        `max ${ms(lat[lat.length - 1])}, errors ${errors}`);
    if (errors > 0) {
        process.exitCode = 1;
    }
} finally {
    await client.close();
    rmSync(dir, { recursive: true, force: true });
}
