"""The official Anthropic Python SDK's ready-made self-hosted worker, unmodified, serving a
tetherd `self_hosted` environment until it is killed: what a user runs on a worker box.

Run by tests/tests/workers.rs (and bench/) with TETHER_URL, TETHER_ENV (the environment id),
TETHER_ENV_KEY (its worker key), WORKDIR and optionally WORKER_ID set.
"""

import asyncio
import os

import anthropic


async def main() -> None:
    # Only the environment key: the worker never sees the daemon's API token.
    client = anthropic.AsyncAnthropic(base_url=os.environ["TETHER_URL"], api_key="unused-by-the-worker")
    await client.beta.environments.work.worker(
        environment_id=os.environ["TETHER_ENV"],
        environment_key=os.environ["TETHER_ENV_KEY"],
        workdir=os.environ["WORKDIR"],
        # Hand the item back soon after its session's turn ends, so the next session's
        # item is taken without waiting the default minute.
        max_idle=0.5,
        worker_id=os.environ.get("WORKER_ID") or None,
    ).run()


asyncio.run(main())
