// The official TypeScript SDK (@anthropic-ai/sdk), unmodified, driving a local tetherd.
// Run by tests/tests/sdk.rs with TETHER_URL and TETHER_TOKEN set; exits non-zero with the
// reason on the first thing that does not behave as the hosted API documents.
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';

const client = new Anthropic({
  baseURL: process.env.TETHER_URL,
  apiKey: process.env.TETHER_TOKEN,
  maxRetries: 0,
});
const beta = client.beta;

async function rejects(promise, ErrorClass, what) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof ErrorClass, `${what}: expected ${ErrorClass.name}, got ${e}`);
    return;
  }
  assert.fail(`${what}: succeeded`);
}

let agent = await beta.agents.create({ name: 'ts-agent', model: 'claude-sdk-test', system: 'Be brief.' });
assert.equal(agent.type, 'agent');
assert.equal(agent.version, 1);
agent = await beta.agents.update(agent.id, { version: 1, description: 'updated' });
assert.equal(agent.version, 2);
assert.equal((await beta.agents.retrieve(agent.id, { version: 1 })).description ?? null, null);
await rejects(beta.agents.update(agent.id, { version: 1, description: 'stale' }), Anthropic.ConflictError, 'stale version');
const names = [];
for await (const a of beta.agents.list()) names.push(a.name);
assert.ok(names.includes('ts-agent') && names.includes('default'), String(names));

const env = await beta.environments.create({
  name: 'ts-env',
  config: { type: 'cloud', networking: { type: 'unrestricted' } },
});
assert.ok(env.id.startsWith('env_'));
assert.equal((await beta.environments.retrieve(env.id)).name, 'ts-env');

let session = await beta.sessions.create({ agent: agent.id, environment_id: env.id, title: 'ts round trip' });
assert.equal(session.status, 'idle');
assert.equal(session.agent.version, 2);
const stream = await beta.sessions.events.stream(session.id);
await beta.sessions.events.send(session.id, {
  events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello from typescript' }] }],
});
const seen = [];
for await (const event of stream) {
  seen.push(event.type);
  if (event.type === 'session.status_idle') {
    assert.equal(event.stop_reason.type, 'end_turn');
    break;
  }
}
assert.equal(seen[0], 'user.message', String(seen));
assert.ok(seen.includes('agent.message'), String(seen));

const kinds = [];
let reply;
for await (const e of beta.sessions.events.list(session.id)) {
  kinds.push(e.type);
  if (e.type === 'agent.message') reply = e;
}
assert.equal(kinds[0], 'user.message');
assert.equal(kinds.at(-1), 'session.status_idle');
assert.equal(reply.content[0].text, 'hello from tetherd');

session = await beta.sessions.update(session.id, { title: 'renamed', metadata: { k: 'v' } });
assert.equal(session.title, 'renamed');
assert.deepEqual(session.metadata, { k: 'v' });
await beta.sessions.archive(session.id);
await rejects(
  beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'late' }] }] }),
  Anthropic.BadRequestError,
  'message to an archived session',
);
const deleted = await beta.sessions.delete(session.id);
assert.equal(deleted.type, 'session_deleted');
await rejects(beta.sessions.retrieve(session.id), Anthropic.NotFoundError, 'deleted session');
const wrong = new Anthropic({ baseURL: process.env.TETHER_URL, apiKey: 'wrong', maxRetries: 0 });
await rejects(wrong.beta.agents.list(), Anthropic.AuthenticationError, 'wrong token');
console.log('typescript sdk round trip ok');
