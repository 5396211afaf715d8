"""The official Anthropic Python SDK, unmodified, defining an outcome on a local tetherd and
reading its spans and the session's outcome_evaluations in the SDK's own types.

Run by tests/tests/outcomes.rs with TETHER_URL and TETHER_TOKEN set; exits non-zero with the
reason on the first thing that does not behave as the hosted API documents.
"""

import os
import sys

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0
)
beta = client.beta

session = beta.sessions.create(agent="default", environment_id="default", title="sdk outcome")
seen = []
with beta.sessions.events.stream(session.id) as stream:
    sent = beta.sessions.events.send(
        session.id,
        events=[
            {
                "type": "user.define_outcome",
                "description": "write a greeting to hello.txt",
                "rubric": {"type": "text", "content": "- hello.txt says hello"},
                "max_iterations": 2,
            }
        ],
    )
    echo = sent.data[0]
    assert echo.type == "user.define_outcome", echo
    assert echo.outcome_id.startswith("outc_"), echo
    for event in stream:
        seen.append(event)
        if event.type == "session.status_idle":
            break

types = [e.type for e in seen]
start = next(e for e in seen if e.type == "span.outcome_evaluation_start")
end = next(e for e in seen if e.type == "span.outcome_evaluation_end")
assert type(end).__name__ == "BetaManagedAgentsSpanOutcomeEvaluationEndEvent", type(end)
assert start.outcome_id == echo.outcome_id and start.iteration == 0, start
assert end.outcome_evaluation_start_id == start.id, (end, start)
assert end.result == "satisfied", end
assert end.usage.input_tokens > 0, end.usage
assert any(e.type == "span.outcome_evaluation_ongoing" for e in seen), types

got = beta.sessions.retrieve(session.id)
evals = got.outcome_evaluations
assert len(evals) == 1, got
ev = evals[0]
assert type(ev).__name__ == "BetaManagedAgentsOutcomeEvaluationResource", type(ev)
assert ev.outcome_id == echo.outcome_id and ev.result == "satisfied", ev
assert ev.explanation and ev.completed_at is not None, ev

# One outcome at a time is enforced only while one is active; this one is done, so a second
# is accepted.
beta.sessions.events.send(
    session.id,
    events=[
        {
            "type": "user.define_outcome",
            "description": "again",
            "rubric": {"type": "text", "content": "- anything"},
        }
    ],
)
print("python sdk outcome ok", anthropic.__version__)
