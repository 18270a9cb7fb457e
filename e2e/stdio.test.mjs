// scopemem over stdio, driven by the official MCP TypeScript SDK client the
// way a desktop MCP host starts it: one child process, identity from the
// environment.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';

import { ALL_TOOLS, binary, connectStdio, defer, fails, ids, ok, readJSON, tempDir } from './helpers.mjs';

function agentEnv(dir, extra = {}) {
    return {
        SCOPEMEM_DB: join(dir, 'memories.db'),
        SCOPEMEM_EMBEDDER: 'builtin',
        SCOPEMEM_ORG: 'acme',
        SCOPEMEM_USER: 'alice',
        SCOPEMEM_TEAMS: 'api,web',
        SCOPEMEM_AGENT: 'coder',
        ...extra,
    };
}

describe('stdio', { timeout: 60_000 }, () => {
    test('the agent config in the environment is the identity, and every tool works', async t => {
        const { client, tools, errors, stderr } = await connectStdio(t, agentEnv(tempDir(t)));
        assert.equal(client.getServerVersion().name, 'scopemem');
        assert.deepEqual(tools.map(tool => tool.name).sort(), ALL_TOOLS);
        const ajv = new AjvJsonSchemaValidator();
        const validators = Object.fromEntries(tools.map(tool => [tool.name, ajv.getValidator(tool.outputSchema)]));
        const call = async (name, args) => {
            const out = await ok(client, name, args);
            const v = validators[name](out);
            assert.ok(v.valid, `${name} output breaks its schema: ${v.errorMessage}`);
            return out;
        };

        const scopes = await call('list_scopes', {});
        assert.equal(scopes.org, 'acme');
        assert.equal(scopes.user, 'alice');
        assert.equal(scopes.default_scope, 'user');
        assert.deepEqual(scopes.scopes.map(s => s.scope), ['session', 'agent', 'user', 'team:api', 'team:web', 'org']);

        const added = {};
        for (const scope of ['session', 'agent', 'user', 'team:api', 'team:web', 'org']) {
            const m = await call('add_memory', { content: `the release checklist lives in the ${scope} notes`, scope, tags: ['release'] });
            assert.equal(m.scope, scope);
            added[scope] = m.id;
        }
        const plain = await call('add_memory', { content: 'The staging database is called pluto' });
        assert.equal(plain.scope, 'user', 'the default scope should be user');

        let res = await call('search_memory', { query: 'staging database name' });
        assert.equal(res.results[0]?.id, plain.id);
        res = await call('search_memory', { query: 'release checklist notes', tags: ['release'], limit: 50 });
        assert.deepEqual(ids(res.results).sort(), Object.values(added).sort(), 'search should span every visible scope');
        res = await call('search_memory', { query: 'release checklist notes', scopes: ['agent', 'org'] });
        assert.deepEqual(ids(res.results).sort(), [added.agent, added.org].sort());

        const counts = Object.fromEntries((await call('list_scopes', {})).scopes.map(s => [s.scope, s.count]));
        assert.deepEqual(counts, { session: 1, agent: 1, user: 2, 'team:api': 1, 'team:web': 1, org: 1 });

        const upd = await call('update_memory', { id: plain.id, tags: ['infra', 'db'], metadata: { env: 'staging' } });
        assert.deepEqual(upd.tags, ['infra', 'db']);
        assert.deepEqual(upd.metadata, { env: 'staging' });
        assert.equal(upd.content, 'The staging database is called pluto', 'omitted fields should stay');
        assert.deepEqual((await readJSON(client, `memory://memories/${plain.id}`)).tags, ['infra', 'db']);

        assert.deepEqual(await call('delete_memory', { id: plain.id }), { id: plain.id, deleted: true });
        const purged = await call('purge', { scope: 'agent', confirm: 'agent' });
        // Purge counts name the caller's own scopes as the caller writes
        // them; an admin's erasure of other users keeps qualified names.
        assert.deepEqual(purged.purged, { agent: 1 });
        assert.equal(purged.total, 1);

        const final = Object.fromEntries((await readJSON(client, 'memory://scopes')).scopes.map(s => [s.scope, s.count]));
        assert.deepEqual(final, { session: 1, agent: 0, user: 1, 'team:api': 1, 'team:web': 1, org: 1 });

        // Anything but JSON-RPC on stdout would surface here as a parse error.
        assert.deepEqual(errors, [], 'the client reported transport or protocol errors');
        assert.doesNotMatch(stderr(), /panic|goroutine \d+/);
    });

    test('text survives the round trip byte for byte', async t => {
        const { client } = await connectStdio(t, agentEnv(tempDir(t)));
        const content = 'Deploy checklist:\n\t1. 東京 region first\n\t2. ping #ops 🚀\n"quotes", \\backslashes\\ and \u00e9t\u00e9';
        const m = await ok(client, 'add_memory', { content, tags: ['ünïcode', '运维'], metadata: { emoji: '🧠', line: 'a\nb' } });
        assert.equal(m.content, content);
        const mem = await readJSON(client, `memory://memories/${m.id}`);
        assert.equal(mem.content, content);
        assert.deepEqual(mem.tags, ['ünïcode', '运维']);
        assert.deepEqual(mem.metadata, { emoji: '🧠', line: 'a\nb' });
        const res = await ok(client, 'search_memory', { query: 'deploy checklist region', tags: ['运维'] });
        assert.deepEqual(ids(res.results), [m.id]);
        assert.equal(res.results[0].content, content);
    });

    test('the server exits on its own when the client closes stdin', async t => {
        const { client, transport } = await connectStdio(t, agentEnv(tempDir(t)));
        await ok(client, 'add_memory', { content: 'a memory written just before the host quits' });
        const pid = transport.pid;
        assert.ok(pid > 0);
        // The SDK ends stdin and sends SIGTERM only if the process is still
        // running two seconds later; a server that notices EOF is gone well
        // before that.
        const start = Date.now();
        await client.close();
        const took = Date.now() - start;
        assert.ok(took < 1500, `closing took ${took} ms: the server did not exit on end of input`);
        assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the server process is still running');
    });

    test('a second process on the same file shares memories but not the session', async t => {
        const dir = tempDir(t);
        const first = await connectStdio(t, agentEnv(dir));
        const shared = await ok(first.client, 'add_memory', { content: 'the on-call rotation changes every Monday', scope: 'team:api' });
        const scratch = await ok(first.client, 'add_memory', { content: 'the on-call scratch note for this run', scope: 'session' });

        const second = await connectStdio(t, agentEnv(dir));
        const res = await ok(second.client, 'search_memory', { query: 'on-call rotation scratch note', limit: 50 });
        assert.ok(ids(res.results).includes(shared.id), 'the second window does not see the team memory');
        assert.ok(!ids(res.results).includes(scratch.id), 'the second window sees the first one\'s session memory');
        await assert.rejects(second.client.readResource({ uri: `memory://memories/${scratch.id}` }), McpError);
    });

    test('--read-only offers only the reading tools', async t => {
        const dir = tempDir(t);
        const writer = await connectStdio(t, agentEnv(dir));
        const m = await ok(writer.client, 'add_memory', { content: 'read-only servers can still recall this' });

        const { client, tools } = await connectStdio(t, agentEnv(dir, { SCOPEMEM_READ_ONLY: 'true' }));
        assert.deepEqual(tools.map(tool => tool.name).sort(), ['list_scopes', 'search_memory']);
        assert.deepEqual(ids((await ok(client, 'search_memory', { query: 'read-only servers recall' })).results), [m.id]);
        await assert.rejects(client.callTool({ name: 'add_memory', arguments: { content: 'x' } }), McpError);
    });

    test('SCOPEMEM_PERMISSIONS narrows what the stdio caller may do', async t => {
        const { client } = await connectStdio(t, agentEnv(tempDir(t), { SCOPEMEM_PERMISSIONS: 'memory:read' }));
        const scopes = await ok(client, 'list_scopes');
        assert.ok(scopes.scopes.every(s => !s.writable), 'a read-only agent should see no writable scope');
        assert.match(await fails(client, 'add_memory', { content: 'not allowed' }), /memory:write/);
        assert.match(await fails(client, 'purge', { scope: 'user', confirm: 'user' }), /memory:purge/);
    });

    test('a bad agent config fails the connection with an explanation on stderr', async t => {
        const transport = new StdioClientTransport({
            command: binary(),
            args: ['serve'],
            env: { PATH: process.env.PATH ?? '', HOME: tempDir(t), ...agentEnv(tempDir(t), { SCOPEMEM_ORG: 'a/b' }) },
            stderr: 'pipe',
        });
        let stderr = '';
        transport.stderr.on('data', chunk => {
            stderr += chunk;
        });
        const client = new Client({ name: 'scopemem-e2e', version: '1.0.0' });
        defer(t, () => client.close());
        await assert.rejects(client.connect(transport), McpError, 'connect succeeded with an invalid org');
        assert.match(stderr, /org.*"a\/b"/, `stderr does not explain the problem:\n${stderr}`);
    });
});
