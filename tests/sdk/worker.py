"""The official Anthropic Python SDK's ready-made self-hosted worker, unmodified, serving a
session of a tetherd `self_hosted` environment: the SDK's EnvironmentWorker polls the queue
with the environment key, leases the work item, runs the session's bash call in WORKDIR with
the SDK's own agent toolset and posts `user.tool_result`.

Run by tests/tests/workers.rs with TETHER_URL, TETHER_TOKEN (the daemon's API token, for
creating the session), TETHER_ENV (a self_hosted environment id), TETHER_ENV_KEY (its worker
key) and WORKDIR set. Prints `sdk worker ok SESSION_ID` when the session ended its turn.
"""

import asyncio
import os
import sys

import anthropic

URL = os.environ["TETHER_URL"]
ENV = os.environ["TETHER_ENV"]
KEY = os.environ["TETHER_ENV_KEY"]
WORKDIR = os.environ["WORKDIR"]

owner = anthropic.Anthropic(base_url=URL, api_key=os.environ["TETHER_TOKEN"], max_retries=0)
session = owner.beta.sessions.create(agent="default", environment_id=ENV, title="sdk worker")
owner.beta.sessions.events.send(
    session.id,
    events=[{"type": "user.message", "content": [{"type": "text", "text": "make the file"}]}],
)


async def main() -> None:
    # The worker's client knows nothing but the URL: it authenticates with the environment
    # key, and the per-item sessions token from the poll.
    client = anthropic.AsyncAnthropic(base_url=URL, api_key="unused-by-the-worker")
    worker = client.beta.environments.work.worker(
        environment_id=ENV, environment_key=KEY, workdir=WORKDIR, max_idle=1.0
    )
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(600):
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
                sys.exit("the worker stopped on its own")
            s = owner.beta.sessions.retrieve(session.id)
            events = list(owner.beta.sessions.events.list(session.id, limit=1000))
            idle = [e for e in events if e.type == "session.status_idle"]
            if s.status == "idle" and idle and idle[-1].stop_reason.type == "end_turn":
                break
        else:
            sys.exit("the session did not end its turn within 60 s")
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


asyncio.run(main())
print(f"sdk worker ok {session.id}")
