// Shared helpers for the end-to-end tests: they start the real scopemem
// binary (named by SCOPEMEM_BIN, which run.sh builds) and talk to it with the
// official MCP TypeScript SDK client, as a third-party MCP host would.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

/** The scopemem binary under test. */
export function binary() {
    const bin = process.env.SCOPEMEM_BIN;
    if (!bin) {
        throw new Error('SCOPEMEM_BIN is not set: run e2e/run.sh, or build scopemem and set SCOPEMEM_BIN to its path');
    }
    return bin;
}

/** The six tools a writable server offers. */
export const ALL_TOOLS = ['add_memory', 'delete_memory', 'list_scopes', 'purge', 'search_memory', 'update_memory'];

/** Every permission a token can carry. */
export const ALL_PERMS = ['memory:read', 'memory:write', 'memory:share', 'memory:purge', 'memory:admin'];

const cleanups = new WeakMap();

/**
 * Runs fn when the test (or shared scope) t ends, last registered first, so
 * that a server stops before the directory holding its database goes. Every
 * cleanup runs even when an earlier one fails; the first failure is thrown.
 */
export function defer(t, fn) {
    let stack = cleanups.get(t);
    if (!stack) {
        stack = [];
        cleanups.set(t, stack);
        t.after(async () => {
            let first = null;
            for (const f of stack.reverse()) {
                try {
                    await f();
                } catch (err) {
                    first ??= err;
                }
            }
            if (first) {
                throw first;
            }
        });
    }
    stack.push(fn);
}

/** A temporary directory removed when the test ends. */
export function tempDir(t) {
    const dir = mkdtempSync(join(tmpdir(), 'scopemem-e2e-'));
    defer(t, () => rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
    return dir;
}

/**
 * A new SDK client that records every error its transport or protocol layer
 * reports, so a test can assert that a session ran without any.
 */
function newClient() {
    const client = new Client({ name: 'scopemem-e2e', version: '1.0.0' });
    const errors = [];
    client.onerror = err => errors.push(err);
    return { client, errors };
}

/**
 * Starts `scopemem serve` on stdio with env added to this process's
 * environment, connects an SDK client and lists the tools (which is what
 * arms the client's outputSchema validation). The server's stderr is kept in
 * the returned `stderr()`.
 */
export async function connectStdio(t, env, args = []) {
    const { client, errors } = newClient();
    const transport = new StdioClientTransport({
        command: binary(),
        args: ['serve', ...args],
        env: { ...inheritedEnv(), ...env },
        stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr.on('data', chunk => {
        stderr += chunk;
    });
    defer(t, () => client.close());
    await client.connect(transport);
    const tools = await client.listTools();
    return { client, transport, tools: tools.tools, errors, stderr: () => stderr };
}

// inheritedEnv keeps what a child needs to run (PATH, HOME, TMPDIR) and drops
// any SCOPEMEM_ setting of the caller's shell, so a test sees only its own.
function inheritedEnv() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (!k.startsWith('SCOPEMEM_') && k !== 'OLLAMA_HOST') {
            env[k] = v;
        }
    }
    return env;
}

/** A free TCP port on the loopback interface. */
async function freePort() {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/** The issuer and audience the HTTP server is started with. */
export const ISSUER = 'https://auth.e2e.scopemem.test';
export const AUDIENCE = 'https://memory.e2e.scopemem.test';

/**
 * Starts `scopemem serve --http` on a free loopback port with an HS256
 * secret, waits until /healthz answers, and stops the server when the test
 * ends. Returns the base URL, the secret and the server's stderr.
 */
export async function startHTTPServer(t, extraArgs = []) {
    const dir = tempDir(t);
    // As `openssl rand -base64 48 > file` would write it: the text, without
    // its trailing newline, is the key.
    const secret = randomBytes(48).toString('base64url');
    const secretFile = join(dir, 'jwt-secret');
    writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
    for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        const addr = `127.0.0.1:${port}`;
        const proc = spawn(binary(), [
            'serve', '--http', addr,
            '--jwt-secret-file', secretFile,
            '--jwt-issuer', ISSUER,
            '--jwt-audience', AUDIENCE,
            '--db', join(dir, 'memories.db'),
            '--embedder', 'builtin',
            ...extraArgs,
        ], { env: inheritedEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        let stdout = '';
        proc.stderr.on('data', chunk => {
            stderr += chunk;
        });
        proc.stdout.on('data', chunk => {
            stdout += chunk;
        });
        const exited = new Promise(resolve => proc.once('exit', (code, signal) => resolve({ code, signal })));
        const base = `http://${addr}`;
        const up = await waitHealthy(base, exited);
        if (up === true) {
            defer(t, async () => {
                proc.kill('SIGTERM');
                const { code, signal } = await exited;
                // A SIGTERM is a graceful shutdown: the server drains and exits 0.
                assert.equal(code, 0, `scopemem exited with ${code} (signal ${signal}) after SIGTERM; stderr:\n${stderr}`);
                assert.equal(stdout, '', 'the HTTP server wrote to stdout, which is reserved for the stdio transport');
            });
            return { base, url: new URL('/mcp', base), secret: Buffer.from(secret), stderr: () => stderr };
        }
        proc.kill('SIGKILL');
        // Another process may have taken the port between freePort and the
        // bind; try a new one a few times before giving up.
        if (attempt >= 3 || !/address already in use/i.test(stderr)) {
            throw new Error(`scopemem serve --http did not become healthy (${up}); stderr:\n${stderr}`);
        }
    }
}

// waitHealthy polls /healthz until it answers 200, the process exits, or 20 s
// pass. It returns true when healthy, else a reason.
async function waitHealthy(base, exited) {
    let done = null;
    exited.then(r => {
        done = r;
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
        if (done) {
            return `exited with code ${done.code}, signal ${done.signal}`;
        }
        try {
            const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
            if (res.status === 200) {
                const body = await res.json();
                assert.equal(body.status, 'ok');
                return true;
            }
            await res.body?.cancel();
        } catch {
            // not listening yet
        }
        await sleep(50);
    }
    return 'timed out after 20s';
}

/** A compact HS256 JWT over claims, signed with secret. */
export function mintJWT(secret, claims) {
    const enc = obj => Buffer.from(JSON.stringify(obj)).toString('base64url');
    const signingInput = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
    const sig = createHmac('sha256', secret).update(signingInput).digest('base64url');
    return `${signingInput}.${sig}`;
}

/**
 * A token for org/user with the given teams and permissions, valid for an
 * hour unless claims overrides it.
 */
export function token(server, { org, user, teams = [], perms = ALL_PERMS, ...claims }) {
    const now = Math.floor(Date.now() / 1000);
    return mintJWT(server.secret, {
        iss: ISSUER,
        aud: AUDIENCE,
        sub: user,
        org_id: org,
        teams,
        scope: perms.join(' '),
        iat: now,
        exp: now + 3600,
        ...claims,
    });
}

/**
 * Connects an SDK client over streamable HTTP with `Authorization: Bearer`
 * and lists the tools. fetch, when given, replaces the transport's fetch.
 */
export async function connectHTTP(t, server, bearer, { fetch: fetchFn, list = true } = {}) {
    const { client, errors } = newClient();
    const headers = bearer === undefined ? {} : { Authorization: `Bearer ${bearer}` };
    const transport = new StreamableHTTPClientTransport(server.url, { requestInit: { headers }, fetch: fetchFn });
    defer(t, () => client.close());
    await client.connect(transport);
    const tools = list ? (await client.listTools()).tools : [];
    return { client, transport, tools, errors };
}

/**
 * Calls a tool that must succeed and returns its structured content, after
 * checking what every well-behaved MCP result carries: no isError, a
 * structuredContent object, and a text block holding the same JSON for
 * clients that do not read structured content.
 */
export async function ok(client, name, args = {}) {
    const res = await client.callTool({ name, arguments: args });
    assert.ok(!res.isError, `${name}(${JSON.stringify(args)}) failed: ${textOf(res)}`);
    assert.equal(typeof res.structuredContent, 'object', `${name} returned no structuredContent`);
    const texts = res.content.filter(c => c.type === 'text');
    assert.equal(texts.length, 1, `${name} returned ${texts.length} text blocks, want 1`);
    assert.deepEqual(JSON.parse(texts[0].text), res.structuredContent, `${name}: the text block and structuredContent differ`);
    return res.structuredContent;
}

/**
 * Calls a tool that must fail with a tool error (isError, not a protocol
 * error) and returns the error text.
 */
export async function fails(client, name, args = {}) {
    const res = await client.callTool({ name, arguments: args });
    assert.equal(res.isError, true, `${name}(${JSON.stringify(args)}) succeeded, want a tool error: ${textOf(res)}`);
    const msg = textOf(res);
    assert.ok(msg.trim() !== '', `${name}: the tool error has no message`);
    return msg;
}

/** The concatenated text blocks of a tool result. */
export function textOf(res) {
    return (res.content ?? []).filter(c => c.type === 'text').map(c => c.text).join('\n');
}

/** Reads a JSON resource and returns its parsed text. */
export async function readJSON(client, uri) {
    const res = await client.readResource({ uri });
    assert.equal(res.contents.length, 1, `${uri}: want one content block`);
    const [c] = res.contents;
    assert.equal(c.uri, uri);
    assert.equal(c.mimeType, 'application/json');
    return JSON.parse(c.text);
}

/** The ids of search results. */
export function ids(results) {
    return results.map(r => r.id);
}

/**
 * An object with the `after` method the helpers take from a test context,
 * for resources shared by the tests of one describe block: call run from
 * that block's after hook.
 */
export function sharedScope() {
    let hook = null;
    return {
        after: fn => {
            hook = fn;
        },
        run: async () => {
            await hook?.();
        },
    };
}
