"""Hosted shapes and semantics, checked by the official Python SDK in strict mode.

Run by tests/tests/conformance.rs with TETHER_URL and TETHER_TOKEN set, against a mock model
scripted as: a bash call, a text answer, then a slowly streamed thinking + text answer.
`_strict_response_validation=True` makes the SDK refuse any response its models do not
describe (a missing required field, an event type outside its union). Exits non-zero with
the reason on the first difference.
"""

import os
import sys

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"],
    api_key=os.environ["TETHER_TOKEN"],
    max_retries=0,
    _strict_response_validation=True,
)
beta = client.beta

# Agents: resolved toolsets, execution_identity, hosted model ids, every listed agent parses
# (the built-in `default` one too).
agent = beta.agents.create(
    name="conf-agent",
    model="claude-haiku-4-5",
    tools=[
        {
            "type": "agent_toolset_20260401",
            "configs": [{"name": "read", "type": "read", "permission_policy": {"type": "always_ask"}}],
        }
    ],
    execution_identity={"type": "service_account"},
)
assert agent.execution_identity.type == "service_account", agent.execution_identity
toolset = agent.tools[0]
assert toolset.type == "agent_toolset_20260401", toolset
assert toolset.default_config.enabled is True, toolset.default_config
assert toolset.default_config.permission_policy.type == "always_allow", toolset.default_config
configs = {c.name: c for c in toolset.configs}
assert configs["read"].permission_policy.type == "always_ask", configs["read"]
assert configs["bash"].enabled and configs["bash"].permission_policy.type == "always_allow", configs
assert agent.model.id == "claude-haiku-4-5", agent.model
listed = list(beta.agents.list())
assert any(a.name == "default" for a in listed), [a.name for a in listed]
# `version` is optional on update.
agent = beta.agents.update(agent.id, description="no version sent")
assert agent.version == 2 and agent.description == "no version sent", agent

# Environments: `description` is always in the JSON (null when unset).
env = beta.environments.create(name="conf-env")
raw = beta.environments.with_raw_response.retrieve(env.id).http_response.json()
assert "description" in raw and raw["description"] is None, raw
assert all("description" in e for e in beta.environments.with_raw_response.list().http_response.json()["data"])

# Sessions: the agent's model id in the same (hosted) form as the agent's.
session = beta.sessions.create(agent=agent.id, environment_id=env.id)
assert session.agent.model.id == agent.model.id, (session.agent.model, agent.model)
assert session.agent.execution_identity.type == "service_account", session.agent
assert [s.id for s in beta.sessions.list() if s.id == session.id] == [session.id]

# Turn 1: a bash call (tether logs span.tool_call_start before it runs) and an answer.
with beta.sessions.events.stream(session.id) as stream:
    beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "run it"}]}]
    )
    for event in stream:
        assert not event.type.startswith("span.tool_call"), event.type
        if event.type == "session.status_idle":
            break
types = [e.type for e in beta.sessions.events.list(session.id)]
assert "agent.tool_use" in types and "agent.tool_result" in types, types
assert all(not t.startswith("span.tool_call") for t in types), types
# Opting in shows tether's own types (the raw JSON: the SDK's union lacks them).
opted = beta.sessions.events.with_raw_response.list(session.id, extra_query={"tether_events": "true"})
opted_types = [e["type"] for e in opted.http_response.json()["data"]]
assert "span.tool_call_start" in opted_types, opted_types

# Turn 2: a stream opened right after the send still gets this turn's previews, and each
# event_start names the event that concludes it.
beta.sessions.events.send(
    session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "think"}]}]
)
starts = {}
delta_text = {}
final = {}
with beta.sessions.events.stream(session.id, event_deltas=["agent.message", "agent.thinking"]) as stream:
    for event in stream:
        if event.type == "event_start":
            starts[event.event.id] = event.event.type
        elif event.type == "event_delta":
            assert event.event_id in starts, ("a delta before its event_start", event)
            delta_text[event.event_id] = delta_text.get(event.event_id, "") + event.delta.content.text
        elif event.type in ("agent.message", "agent.thinking"):
            final[event.id] = event
        elif event.type == "session.status_idle":
            break
messages = [e for e in final.values() if e.type == "agent.message"]
thinking = [e for e in final.values() if e.type == "agent.thinking"]
assert len(messages) == 1 and len(thinking) == 1, final
message = messages[0]
assert starts.get(message.id) == "agent.message", (starts, message.id)
assert starts.get(thinking[0].id) == "agent.thinking", (starts, thinking[0].id)
assert delta_text.get(message.id) == message.content[0].text, (delta_text, message.content)
assert thinking[0].id not in delta_text, "thinking previews are start-only"
# Names are not unique in the hosted API: the same create twice gives two objects (a 409 here
# would be retried by default clients and then fail).
twins = [beta.agents.create(name="twin", model="claude-haiku-4-5").id for _ in range(2)]
env_twins = [beta.environments.create(name="twin").id for _ in range(2)]
assert len(set(twins)) == 2 and len(set(env_twins)) == 2, (twins, env_twins)
print("twins:", " ".join(twins + env_twins))
print("conformance shapes ok")
