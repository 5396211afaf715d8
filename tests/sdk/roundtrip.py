"""The official Anthropic Python SDK, unmodified, driving a local tetherd.

Run by tests/tests/sdk.rs with TETHER_URL and TETHER_TOKEN set; exits non-zero with the
reason on the first thing that does not behave as the hosted API documents.
"""

import os
import sys

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"],
    api_key=os.environ["TETHER_TOKEN"],
    max_retries=0,
)
beta = client.beta

# Agents: create, retrieve, update with the optimistic lock, list, versions.
agent = beta.agents.create(
    name="sdk-agent", model="claude-sdk-test", system="Be brief.", metadata={"team": "sdk"}
)
assert agent.type == "agent" and agent.version == 1, agent
assert agent.id.startswith("agent_"), agent.id
agent = beta.agents.update(agent.id, version=1, description="updated", metadata={"team": None, "owner": "me"})
assert agent.version == 2 and agent.description == "updated", agent
assert agent.metadata == {"owner": "me"}, agent.metadata
assert beta.agents.retrieve(agent.id).version == 2
assert beta.agents.retrieve(agent.id, version=1).description is None
try:
    beta.agents.update(agent.id, version=1, description="stale")
    sys.exit("a stale version was accepted")
except anthropic.ConflictError as e:
    assert e.status_code == 409
names = [a.name for a in beta.agents.list()]
assert "sdk-agent" in names and "default" in names, names

# Environments.
env = beta.environments.create(
    name="sdk-env", config={"type": "cloud", "networking": {"type": "unrestricted"}}
)
assert env.id.startswith("env_") and env.type == "environment", env
assert beta.environments.retrieve(env.id).name == "sdk-env"
assert any(e.id == env.id for e in beta.environments.list())

# A session: open the stream, send, read until idle, list the history.
session = beta.sessions.create(agent=agent.id, environment_id=env.id, title="sdk round trip")
assert session.status == "idle" and session.agent.version == 2, session
assert session.environment_id == env.id, session.environment_id
seen = []
with beta.sessions.events.stream(session.id) as stream:
    beta.sessions.events.send(
        session.id,
        events=[{"type": "user.message", "content": [{"type": "text", "text": "hello from python"}]}],
    )
    for event in stream:
        seen.append(event.type)
        if event.type == "session.status_idle":
            assert event.stop_reason.type == "end_turn", event
            break
assert seen[0] == "user.message", seen
assert "agent.message" in seen, seen

history = list(beta.sessions.events.list(session.id))
kinds = [e.type for e in history]
assert kinds[0] == "user.message" and kinds[-1] == "session.status_idle", kinds
reply = [e for e in history if e.type == "agent.message"][0]
assert reply.content[0].text == "hello from tetherd", reply

only = list(beta.sessions.events.list(session.id, types=["agent.message"]))
assert [e.type for e in only] == ["agent.message"], only

session = beta.sessions.update(session.id, title="renamed", metadata={"k": "v"})
assert session.title == "renamed" and session.metadata == {"k": "v"}, session
assert any(s.id == session.id for s in beta.sessions.list(statuses=["idle"]))
assert beta.sessions.retrieve(session.id).usage.output_tokens > 0

beta.sessions.archive(session.id)
try:
    beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "late"}]}]
    )
    sys.exit("an archived session took a message")
except anthropic.BadRequestError:
    pass
deleted = beta.sessions.delete(session.id)
assert deleted.type == "session_deleted", deleted
try:
    beta.sessions.retrieve(session.id)
    sys.exit("a deleted session is still there")
except anthropic.NotFoundError:
    pass

archived = beta.agents.archive(agent.id)
assert archived.archived_at is not None
try:
    anthropic.Anthropic(base_url=os.environ["TETHER_URL"], api_key="wrong", max_retries=0).beta.agents.list()
    sys.exit("a wrong token was accepted")
except anthropic.AuthenticationError:
    pass
print("python sdk round trip ok")
