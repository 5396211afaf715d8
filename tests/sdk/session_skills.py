"""The official Anthropic Python SDK, unmodified: a session's own skills. `agent_with_overrides`
with `skills` replaces the agent's skills for that session only (the SDK documents it as a full
replacement; `[]` clears them): the session's agent lists the replacement, its sandbox mounts
it under /skills/, and an unknown skill is a 404 that names it.

Run by tests/tests/skills.rs with TETHER_URL and TETHER_TOKEN set. The mock model's script
there runs `ls /skills` once.
"""

import os
import time

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0
)
beta = client.beta


def skill(name, description):
    md = f"---\nname: {name}\ndescription: {description}\n---\n# {name}\n".encode()
    return beta.skills.create(files=[(f"{name}/SKILL.md", md)], display_name=name)


greeter = skill("greeter", "Greets people.")
counter = skill("counter", "Counts things carefully.")
agent = beta.agents.create(
    name="skills-agent",
    model="claude-sdk-test",
    tools=[{"type": "agent_toolset_20260401"}],
    skills=[{"type": "custom", "skill_id": greeter.id}],
)
env = beta.environments.create(name="skills-env", config={"type": "cloud"})


def with_skills(skills):
    return beta.sessions.create(
        agent={"type": "agent_with_overrides", "id": agent.id, "skills": skills},
        environment_id=env.id,
    )


session = with_skills([{"type": "custom", "skill_id": counter.id}])
assert [s.skill_id for s in session.agent.skills] == [counter.id], session.agent.skills
assert [s.skill_id for s in beta.sessions.retrieve(session.id).agent.skills] == [counter.id]
# The agent itself is unchanged, and a plain session of it still has its own skill.
assert [s.skill_id for s in beta.agents.retrieve(agent.id).skills] == [greeter.id]
plain = beta.sessions.create(agent=agent.id, environment_id=env.id)
assert [s.skill_id for s in plain.agent.skills] == [greeter.id], plain.agent.skills
cleared = with_skills([])
assert cleared.agent.skills == [], cleared.agent.skills

try:
    with_skills([{"type": "custom", "skill_id": "skill_nope"}])
    raise AssertionError("an unknown skill was accepted")
except anthropic.NotFoundError as e:
    assert "skill_nope" in str(e), e

beta.sessions.events.send(
    session.id,
    events=[{"type": "user.message", "content": [{"type": "text", "text": "which skills?"}]}],
)
deadline = time.time() + 120
while True:
    history = list(beta.sessions.events.list(session.id))
    if history and history[-1].type == "session.status_idle":
        break
    assert time.time() < deadline, [e.type for e in history]
    time.sleep(0.2)
results = [e for e in history if e.type == "agent.tool_result"]
listing = "".join(b.text for b in results[0].content if b.type == "text")
assert "counter" in listing and "greeter" not in listing, listing
print("python sdk session skills ok")
