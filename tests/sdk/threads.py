"""The official Anthropic Python SDK, unmodified, reading a multi-agent session's threads:
a coordinator delegates to a roster agent twice; the SDK lists the threads, retrieves the
child, pages its events, and streams the thread live through the second delegation.

Run by tests/tests/threads.rs with TETHER_URL and TETHER_TOKEN set.
"""

import os
import sys
import time

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0,
    timeout=60,
)
beta = client.beta

reviewer = beta.agents.create(name="reviewer", model="openai/gpt-4.1", system="You review code.")
lead = beta.agents.create(
    name="lead",
    model="claude-sonnet-4-6",
    multiagent={
        "type": "multiagent_20261001",
        "subagents": {"type": "enabled", "predefined_agents": [reviewer.id]},
    },
)
assert lead.multiagent is not None and lead.multiagent.type == "multiagent_20261001", lead
session = beta.sessions.create(agent=lead.id, environment_id="default")


def say(text):
    beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def settle():
    deadline = time.monotonic() + 60
    while beta.sessions.retrieve(session.id).status != "idle":
        if time.monotonic() > deadline:
            sys.exit("the session did not go idle within 60 s")
        time.sleep(0.05)


say("review it")
settle()

threads = list(beta.sessions.threads.list(session.id))
assert len(threads) == 2, threads
primary, child = threads
assert primary.type == "session_thread" and child.type == "session_thread", threads
assert child.id.startswith("sthr_") and child.agent.name == "reviewer", child
assert beta.sessions.threads.retrieve(child.id, session_id=session.id).id == child.id

events = list(beta.sessions.threads.events.list(child.id, session_id=session.id))
kinds = [e.type for e in events]
assert kinds[0] == "agent.thread_message_received", kinds
assert "agent.message" in kinds and "session.status_idle" in kinds, kinds

# The primary's stream tells of the thread (cross-posted lifecycle, named by thread id).
primary_events = list(beta.sessions.events.list(session.id))
created = [e for e in primary_events if e.type == "session.thread_created"]
assert len(created) == 1 and created[0].session_thread_id == child.id, created
sent = [e for e in primary_events if e.type == "agent.thread_message_sent"]
assert sent and sent[0].to_session_thread_id == child.id, sent

# Live: the thread's own stream through a second delegation to the same thread.
seen = []
with beta.sessions.threads.events.stream(child.id, session_id=session.id) as stream:
    say("review it again")
    for event in stream:
        seen.append(event.type)
        if event.type == "session.status_idle":
            break
assert "agent.thread_message_received" in seen and "agent.message" in seen, seen
settle()
assert len(list(beta.sessions.threads.list(session.id))) == 2, "the second message reused the thread"

try:
    beta.sessions.threads.retrieve("sthr_nope", session_id=session.id)
    sys.exit("an unknown thread was found")
except anthropic.NotFoundError:
    pass

print("python sdk threads ok")
