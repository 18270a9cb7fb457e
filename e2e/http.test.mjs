// scopemem over streamable HTTP, driven by the official MCP TypeScript SDK
// client with bearer JWTs, as a multi-tenant back end or a remote MCP host
// would use it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { LATEST_PROTOCOL_VERSION, McpError } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';

import {
    ALL_PERMS, ALL_TOOLS, AUDIENCE, ISSUER, connectHTTP, defer, fails, ids, mintJWT, ok, readJSON, sharedScope,
    startHTTPServer, token,
} from './helpers.mjs';

describe('streamable HTTP', { timeout: 60_000 }, () => {
    const shared = sharedScope();
    let server;
    before(async () => {
        server = await startHTTPServer(shared);
    });
    after(() => shared.run());

    test('initialize negotiates the SDK\'s protocol version and reports the server', async t => {
        const { client, transport, errors } = await connectHTTP(t, server, token(server, { org: 'init', user: 'alice' }));
        assert.equal(transport.protocolVersion, LATEST_PROTOCOL_VERSION);
        assert.match(transport.sessionId ?? '', /^\S+$/, 'the server gave no Mcp-Session-Id');
        assert.equal(client.getServerVersion().name, 'scopemem');
        assert.ok(client.getServerVersion().version, 'server version is empty');
        const caps = client.getServerCapabilities();
        assert.ok(caps.tools, 'tools capability missing');
        assert.ok(caps.resources, 'resources capability missing');
        assert.match(client.getInstructions() ?? '', /search_memory/, 'instructions should tell the model when to search');
        await client.ping();
        // The SDK opens the optional GET stream after initialize; a server
        // without one must answer 405, which the SDK accepts silently.
        assert.deepEqual(errors, []);
        // Ending the session with DELETE is accepted.
        await transport.terminateSession();
        assert.deepEqual(errors, []);
    });

    test('tools/list offers six annotated tools with described schemas', async t => {
        const { tools } = await connectHTTP(t, server, token(server, { org: 'list', user: 'alice' }));
        assert.deepEqual(tools.map(tool => tool.name).sort(), ALL_TOOLS);
        const byName = Object.fromEntries(tools.map(tool => [tool.name, tool]));

        const hints = {
            search_memory: { readOnlyHint: true, destructiveHint: false },
            list_scopes: { readOnlyHint: true, destructiveHint: false },
            add_memory: { readOnlyHint: false, destructiveHint: false },
            update_memory: { readOnlyHint: false, destructiveHint: true },
            delete_memory: { readOnlyHint: false, destructiveHint: true },
            purge: { readOnlyHint: false, destructiveHint: true },
        };
        const required = {
            add_memory: ['content'],
            search_memory: ['query'],
            list_scopes: [],
            update_memory: ['id'],
            delete_memory: ['id'],
            purge: ['scope', 'confirm'],
        };
        const ajv = new AjvJsonSchemaValidator();
        for (const name of ALL_TOOLS) {
            const tool = byName[name];
            for (const [hint, want] of Object.entries(hints[name])) {
                assert.equal(tool.annotations?.[hint], want, `${name}.annotations.${hint}`);
            }
            assert.equal(tool.annotations?.openWorldHint, false, `${name} touches nothing outside scopemem`);
            assert.ok(tool.title, `${name} has no title`);
            assert.ok(tool.description.length > 40, `${name} has no real description`);

            const input = tool.inputSchema;
            assert.equal(input.type, 'object', `${name} input schema`);
            assert.deepEqual([...(input.required ?? [])].sort(), required[name].sort(), `${name} required arguments`);
            assert.equal(input.additionalProperties, false, `${name} should refuse unknown arguments`);
            for (const [prop, schema] of Object.entries(input.properties ?? {})) {
                assert.ok(schema.description?.trim(), `${name}.${prop} has no description`);
            }

            assert.equal(tool.outputSchema?.type, 'object', `${name} declares no outputSchema`);
            // The schema must compile in the validator the SDK uses.
            ajv.getValidator(tool.outputSchema);
        }
        assert.ok(byName.add_memory.inputSchema.properties.scope.description.includes('team:<id>'));
        assert.equal(byName.search_memory.inputSchema.properties.limit.type, 'integer');
    });

    test('every tool works and its structured content validates against its outputSchema', async t => {
        const { client, tools, errors } = await connectHTTP(t, server,
            token(server, { org: 'flow', user: 'alice', teams: ['api'] }));
        // The SDK validates structuredContent itself once tools/list has
        // run; validate it here too so that a silently skipped check in the
        // client cannot hide a mismatch.
        const ajv = new AjvJsonSchemaValidator();
        const validators = Object.fromEntries(tools.map(tool => [tool.name, ajv.getValidator(tool.outputSchema)]));
        const call = async (name, args) => {
            const out = await ok(client, name, args);
            const v = validators[name](out);
            assert.ok(v.valid, `${name} output breaks its schema: ${v.errorMessage}`);
            return out;
        };

        const start = Date.now();
        const pref = await call('add_memory', {
            content: 'Alice prefers dark mode in every editor',
            tags: ['ui', 'editor'],
            metadata: { source: 'e2e', confidence: 0.9, nested: { ok: true } },
        });
        assert.equal(pref.scope, 'user');
        assert.equal(pref.duplicate, false);
        assert.match(pref.id, /^\S+$/);
        assert.equal(pref.content, 'Alice prefers dark mode in every editor');
        assert.ok(pref.message);

        const dup = await call('add_memory', { content: 'alice prefers dark mode in every editor.' });
        assert.equal(dup.duplicate, true, 'a near-identical memory should be reported as a duplicate');
        assert.equal(dup.id, pref.id);

        const team = await call('add_memory', { content: 'The API team deploys on Fridays after noon', scope: 'team:api', tags: ['deploy'] });
        assert.equal(team.scope, 'team:api');
        const org = await call('add_memory', { content: 'Every public API must use OAuth2', scope: 'org' });
        assert.equal(org.scope, 'org');
        const temp = await call('add_memory', { content: 'The incident bridge is open until tonight', ttl: '2h' });
        const expires = Date.parse(temp.expires_at);
        assert.ok(expires > start + 2 * 3600_000 - 60_000 && expires < Date.now() + 2 * 3600_000 + 60_000,
            `expires_at ${temp.expires_at} is not about two hours from now`);

        let res = await call('search_memory', { query: 'which color theme does alice like in her editor' });
        assert.equal(res.results[0]?.id, pref.id, 'the preference should rank first');
        const hit = res.results[0];
        assert.equal(hit.scope, 'user');
        assert.deepEqual(hit.tags, ['ui', 'editor']);
        assert.deepEqual(hit.metadata, { source: 'e2e', confidence: 0.9, nested: { ok: true } });
        assert.equal(hit.created_by, 'alice');
        assert.ok(hit.score > 0 && hit.score <= 1, `score ${hit.score} outside (0, 1]`);
        const created = Date.parse(hit.created_at);
        assert.ok(created >= start - 60_000 && created <= Date.now() + 60_000, `created_at ${hit.created_at} is not now`);

        res = await call('search_memory', { query: 'deploys', scopes: ['team:api'] });
        assert.deepEqual(ids(res.results), [team.id]);
        res = await call('search_memory', { query: 'dark mode editor', tags: ['ui'] });
        assert.deepEqual(ids(res.results), [pref.id]);
        res = await call('search_memory', { query: 'API', limit: 1 });
        assert.equal(res.results.length, 1);

        const scopes = await call('list_scopes', {});
        assert.equal(scopes.org, 'flow');
        assert.equal(scopes.user, 'alice');
        assert.equal(scopes.default_scope, 'user');
        const counts = Object.fromEntries(scopes.scopes.map(s => [s.scope, s.count]));
        assert.deepEqual(counts, { session: 0, user: 2, 'team:api': 1, org: 1 });
        for (const s of scopes.scopes) {
            assert.equal(s.writable, true, `${s.scope} should be writable with every permission`);
            assert.equal(s.kind, s.scope.split(':')[0]);
        }

        const upd = await call('update_memory', { id: pref.id, content: 'Alice prefers light mode now', tags: [] });
        assert.equal(upd.id, pref.id);
        assert.equal(upd.content, 'Alice prefers light mode now');
        assert.deepEqual(upd.tags, []);
        assert.ok(Date.parse(upd.updated_at) >= Date.parse(upd.created_at));

        // The resource shows the same memory the tools return.
        const mem = await readJSON(client, `memory://memories/${pref.id}`);
        assert.equal(mem.content, 'Alice prefers light mode now');
        assert.equal(mem.scope, 'user');
        assert.deepEqual(await readJSON(client, 'memory://scopes'), await call('list_scopes', {}));

        const del = await call('delete_memory', { id: pref.id });
        assert.deepEqual(del, { id: pref.id, deleted: true });
        await fails(client, 'delete_memory', { id: pref.id });
        await assert.rejects(client.readResource({ uri: `memory://memories/${pref.id}` }), McpError);

        const purged = await call('purge', { scope: 'team:api', confirm: 'team:api' });
        assert.equal(purged.total, 1);
        assert.deepEqual(purged.purged, { 'team:api': 1 });
        assert.ok(purged.message);
        res = await call('search_memory', { query: 'deploys on Fridays' });
        assert.ok(!ids(res.results).includes(team.id), 'purged memory still found');

        assert.deepEqual(errors, [], 'the client reported transport or protocol errors');
    });

    test('the client rejects structured content that breaks the declared outputSchema', async t => {
        // Prove that the SDK's output validation really runs against
        // scopemem's schemas: the same calls that pass above fail once a
        // field of the response is altered on its way to the client.
        const tamper = { mode: 'none' };
        const tamperingFetch = async (url, init) => {
            const res = await fetch(url, init);
            if (tamper.mode === 'none' || !(res.headers.get('content-type') ?? '').startsWith('application/json')) {
                return res;
            }
            const msg = await res.json();
            if (msg.result?.structuredContent) {
                if (tamper.mode === 'wrong-type') {
                    msg.result.structuredContent.duplicate = 'no';
                } else if (tamper.mode === 'extra-field') {
                    msg.result.structuredContent.org_id = 'someone-else';
                } else if (tamper.mode === 'drop') {
                    delete msg.result.structuredContent;
                }
            }
            return new Response(JSON.stringify(msg), { status: res.status, headers: res.headers });
        };
        const { client } = await connectHTTP(t, server, token(server, { org: 'tamper', user: 'alice' }), { fetch: tamperingFetch });
        await ok(client, 'add_memory', { content: 'untampered results pass validation' });
        for (const [mode, want] of [
            ['wrong-type', /output schema/],
            ['extra-field', /output schema/],
            ['drop', /did not return structured content/],
        ]) {
            tamper.mode = mode;
            await assert.rejects(client.callTool({ name: 'add_memory', arguments: { content: `tampered result, ${mode}` } }),
                err => err instanceof McpError && want.test(err.message), `${mode}: the client accepted a result that breaks the schema`);
        }
    });

    test('a request without a valid token gets 401 with a Bearer challenge', async t => {
        const now = Math.floor(Date.now() / 1000);
        const good = { iss: ISSUER, aud: AUDIENCE, sub: 'alice', org_id: 'acme', scope: ALL_PERMS.join(' '), exp: now + 3600 };
        const b64 = obj => Buffer.from(JSON.stringify(obj)).toString('base64url');
        const cases = [
            ['no Authorization header', undefined],
            ['expired', mintJWT(server.secret, { ...good, exp: now - 120 })],
            ['wrong audience', mintJWT(server.secret, { ...good, aud: 'https://other.example' })],
            ['wrong issuer', mintJWT(server.secret, { ...good, iss: 'https://evil.example' })],
            ['signed with another secret', mintJWT(Buffer.alloc(48, 7), good)],
            ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(good)}.`],
            ['not a JWT', 'not-a-jwt'],
        ];
        for (const [name, bearer] of cases) {
            const seen = [];
            const recording = async (url, init) => {
                const res = await fetch(url, init);
                seen.push({ status: res.status, challenge: res.headers.get('www-authenticate') });
                return res;
            };
            await assert.rejects(connectHTTP(t, server, bearer, { fetch: recording }),
                err => err instanceof StreamableHTTPError && err.code === 401 && !/add_memory/.test(err.message),
                `${name}: connect should fail with HTTP 401`);
            assert.equal(seen.length, 1, `${name}: the client should stop after the 401`);
            assert.equal(seen[0].status, 401, name);
            assert.match(seen[0].challenge ?? '', /^Bearer\b/, `${name}: WWW-Authenticate = ${seen[0].challenge}`);
            if (bearer !== undefined) {
                assert.match(seen[0].challenge, /error="invalid_token"/, `${name}: the challenge should say invalid_token`);
            }
        }
    });

    test('a token accepted by an OAuth auth provider is sent and honoured', async t => {
        // MCP hosts usually hand the SDK an OAuthClientProvider rather than a
        // fixed header; one that already holds a token never starts a flow.
        const access = token(server, { org: 'oauth', user: 'alice' });
        const noFlow = () => {
            throw new Error('the SDK started an OAuth flow for a valid token');
        };
        const authProvider = {
            redirectUrl: 'http://127.0.0.1/callback',
            clientMetadata: { redirect_uris: ['http://127.0.0.1/callback'] },
            clientInformation: () => undefined,
            tokens: () => ({ access_token: access, token_type: 'Bearer' }),
            saveTokens: noFlow,
            redirectToAuthorization: noFlow,
            saveCodeVerifier: noFlow,
            codeVerifier: noFlow,
        };
        const client = new Client({ name: 'scopemem-e2e', version: '1.0.0' });
        defer(t, () => client.close());
        await client.connect(new StreamableHTTPClientTransport(server.url, { authProvider }));
        await client.listTools();
        const scopes = await ok(client, 'list_scopes');
        assert.equal(scopes.org, 'oauth');
        assert.equal(scopes.user, 'alice');
    });

    test('a read-only token can search but gets tool errors naming the missing permission', async t => {
        const writer = await connectHTTP(t, server, token(server, { org: 'ro', user: 'alice', teams: ['api'] }));
        const shared = await ok(writer.client, 'add_memory', { content: 'The API team uses trunk-based development', scope: 'team:api' });

        const reader = await connectHTTP(t, server, token(server, { org: 'ro', user: 'carol', teams: ['api'], perms: ['memory:read'] }));
        // The server is not --read-only: the token, not the tool list, limits the caller.
        assert.deepEqual(reader.tools.map(tool => tool.name).sort(), ALL_TOOLS);
        const res = await ok(reader.client, 'search_memory', { query: 'trunk-based development' });
        assert.deepEqual(ids(res.results), [shared.id]);
        const scopes = await ok(reader.client, 'list_scopes');
        assert.ok(scopes.scopes.every(s => s.writable === false), 'a read-only caller should see no writable scope');

        assert.match(await fails(reader.client, 'add_memory', { content: 'readers cannot write' }), /memory:write/);
        assert.match(await fails(reader.client, 'update_memory', { id: shared.id, content: 'overwritten' }), /memory:write/);
        assert.match(await fails(reader.client, 'delete_memory', { id: shared.id }), /memory:write/);
        assert.match(await fails(reader.client, 'purge', { scope: 'team:api', confirm: 'team:api' }), /memory:purge/);

        // Writing without memory:share stops at the shared scopes.
        const plain = await connectHTTP(t, server, token(server, { org: 'ro', user: 'dave', teams: ['api'], perms: ['memory:read', 'memory:write'] }));
        await ok(plain.client, 'add_memory', { content: 'dave keeps his own notes' });
        assert.match(await fails(plain.client, 'add_memory', { content: 'dave shares with the team', scope: 'team:api' }), /memory:share/);

        const later = await ok(writer.client, 'search_memory', { query: 'trunk-based development' });
        assert.equal(later.results[0]?.content, 'The API team uses trunk-based development', 'the reader changed the memory');
    });

    test('two orgs are isolated, even with the same user and team names', async t => {
        const tokens = {
            acme: token(server, { org: 'iso-acme', user: 'alice', teams: ['api'] }),
            globex: token(server, { org: 'iso-globex', user: 'alice', teams: ['api'] }),
        };
        const clients = {};
        const added = {};
        for (const org of ['acme', 'globex']) {
            clients[org] = (await connectHTTP(t, server, tokens[org])).client;
            added[org] = [];
            for (const scope of ['user', 'team:api', 'org']) {
                const m = await ok(clients[org], 'add_memory', { content: `${org} secret launch code kept in ${scope}`, scope });
                assert.equal(m.duplicate, false, `${org} ${scope}: the other org's memory was taken for a duplicate`);
                added[org].push(m.id);
            }
        }
        for (const [org, other] of [['acme', 'globex'], ['globex', 'acme']]) {
            const c = clients[org];
            const res = await ok(c, 'search_memory', { query: 'secret launch code kept in', limit: 100 });
            assert.deepEqual(ids(res.results).sort(), [...added[org]].sort(), `${org} should see exactly its own three memories`);
            const scopes = await ok(c, 'list_scopes');
            assert.equal(scopes.org, `iso-${org}`);
            assert.deepEqual(scopes.scopes.filter(s => s.count > 0).map(s => [s.scope, s.count]),
                [['user', 1], ['team:api', 1], ['org', 1]]);
            for (const id of added[other]) {
                await fails(c, 'update_memory', { id, content: 'overwritten by another org' });
                await fails(c, 'delete_memory', { id });
                await assert.rejects(c.readResource({ uri: `memory://memories/${id}` }), McpError,
                    `${org} read ${other}'s memory ${id}`);
            }
            // Naming the other org in arguments is refused, not obeyed.
            await fails(c, 'search_memory', { query: 'launch code', org_id: `iso-${other}` });
        }
        // An admin erasing their whole org leaves the other org untouched.
        const purged = await ok(clients.globex, 'purge', { scope: 'all', confirm: 'all' });
        assert.equal(purged.total, 3);
        const res = await ok(clients.acme, 'search_memory', { query: 'secret launch code kept in', limit: 100 });
        assert.deepEqual(ids(res.results).sort(), [...added.acme].sort(), 'purging globex removed acme memories');
    });

    test('resources list and read', async t => {
        const { client } = await connectHTTP(t, server, token(server, { org: 'res', user: 'alice', teams: ['web'] }));
        const { resources } = await client.listResources();
        assert.deepEqual(resources.map(r => [r.uri, r.mimeType]), [['memory://scopes', 'application/json']]);
        const { resourceTemplates } = await client.listResourceTemplates();
        assert.deepEqual(resourceTemplates.map(r => [r.uriTemplate, r.mimeType]), [['memory://memories/{id}', 'application/json']]);

        const m = await ok(client, 'add_memory', { content: 'The web team ships on Tuesdays', scope: 'team:web', tags: ['release'], metadata: { owner: 'web' } });
        const mem = await readJSON(client, `memory://memories/${m.id}`);
        assert.equal(mem.id, m.id);
        assert.equal(mem.scope, 'team:web');
        assert.equal(mem.content, 'The web team ships on Tuesdays');
        assert.deepEqual(mem.tags, ['release']);
        assert.deepEqual(mem.metadata, { owner: 'web' });
        assert.equal(mem.created_by, 'alice');
        assert.ok(!Number.isNaN(Date.parse(mem.created_at)));

        const scopes = await readJSON(client, 'memory://scopes');
        assert.equal(scopes.org, 'res');
        assert.deepEqual(scopes.scopes.find(s => s.scope === 'team:web'), { scope: 'team:web', kind: 'team', count: 1, writable: true });

        await assert.rejects(client.readResource({ uri: 'memory://memories/no-such-memory' }), McpError);
        await assert.rejects(client.readResource({ uri: 'memory://nothing-here' }), McpError);
    });

    test('session memories follow the Mcp-Session-Id the SDK sends', async t => {
        const bearer = token(server, { org: 'sess', user: 'alice' });
        const one = await connectHTTP(t, server, bearer);
        const two = await connectHTTP(t, server, bearer);
        assert.notEqual(one.transport.sessionId, two.transport.sessionId);
        const note = await ok(one.client, 'add_memory', { content: 'scratch: the build on main is red', scope: 'session' });
        assert.equal(note.scope, 'session');
        assert.ok(note.expires_at, 'a session memory should expire');
        assert.ok(ids((await ok(one.client, 'search_memory', { query: 'build on main is red' })).results).includes(note.id));
        assert.ok(!ids((await ok(two.client, 'search_memory', { query: 'build on main is red' })).results).includes(note.id),
            'another session of the same user sees the scratch note');
        const counts = (await ok(one.client, 'list_scopes')).scopes.find(s => s.scope === 'session');
        assert.equal(counts.count, 1);
    });

    test('bad arguments get a tool error that names the problem', async t => {
        const { client } = await connectHTTP(t, server, token(server, { org: 'bad', user: 'alice' }));
        assert.match(await fails(client, 'add_memory', { content: 42 }), /content/);
        assert.match(await fails(client, 'add_memory', { content: '   ' }), /content/);
        assert.match(await fails(client, 'add_memory', { content: 'x', ttl: 'soon' }), /ttl/);
        assert.match(await fails(client, 'add_memory', { content: 'x', scope: 'team:not-mine' }), /team/);
        assert.match(await fails(client, 'search_memory', { query: 'x', limit: 1000 }), /limit/);
        assert.match(await fails(client, 'purge', { scope: 'user', confirm: 'org' }), /confirm/);
        const scopes = await ok(client, 'list_scopes');
        assert.ok(scopes.scopes.every(s => s.count === 0), 'bad input stored something');
        // An unknown tool is a protocol error, not a tool result.
        await assert.rejects(client.callTool({ name: 'drop_database', arguments: {} }), McpError);
    });
});
