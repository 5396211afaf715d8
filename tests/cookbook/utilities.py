"""tether's stand-in for the cookbook's `managed_agents/utilities.py`.

Used only when the cookbook directory given to the runner has no `utilities.py` of its own.
It offers the two helpers the notebooks import, with the contract their text describes:
`stream_until_end_turn` prints a session's stream until the agent ends its turn, and
`wait_for_idle_status` waits until the session's status reads `idle`.
"""

import time

from anthropic import Anthropic


def wait_for_idle_status(client: Anthropic, session_id: str, max_wait: float = 5.0) -> None:
    deadline = time.monotonic() + max_wait
    while client.beta.sessions.retrieve(session_id).status != "idle":
        if time.monotonic() > deadline:
            return
        time.sleep(0.25)


def stream_until_end_turn(client: Anthropic, session_id: str) -> None:
    with client.beta.sessions.events.stream(session_id) as stream:
        for ev in stream:
            if ev.type == "agent.message":
                print("".join(b.text for b in ev.content if b.type == "text"), end="")
            elif ev.type == "agent.tool_use":
                print(f"\n[{ev.name}]")
            elif ev.type == "session.status_idle":
                if ev.stop_reason and ev.stop_reason.type == "end_turn":
                    break
            elif ev.type == "session.status_terminated":
                return
    wait_for_idle_status(client, session_id)
