"""The official Anthropic Python SDK, unmodified: upload a skill (a directory with SKILL.md),
list and retrieve it, add a version, give an agent the skill, run a session with it; then the
refusals (no SKILL.md, an Anthropic skill), and the deletes.

Run by tests/tests/skills.rs with TETHER_URL and TETHER_TOKEN set. The mock model's script
there runs `cat /skills/greeter/SKILL.md` and then tries to write into /skills/greeter/.
"""

import os
import time

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0
)
beta = client.beta

SKILL_MD = b"""---
name: greeter
description: Greets people in their own language. Use when asked to say hello.
---
# Greeter
Say "hej" to Swedes. The phrase list is in phrases.txt.
"""

skill = beta.skills.create(
    files=[("greeter/SKILL.md", SKILL_MD), ("greeter/phrases.txt", b"sv: hej\n")],
    display_name="Greeter",
    betas=["skills-2025-10-02"],
)
assert skill.id.startswith("skill_") and skill.type == "skill", skill
assert skill.display_name == "Greeter" and skill.source.type == "custom", skill
first = skill.latest_version_id
version = beta.skills.versions.retrieve(first, skill_id=skill.id)
assert version.name == "greeter" and version.description.startswith("Greets"), version
assert beta.skills.versions.retrieve("latest", skill_id=skill.id).id == first
assert any(s.id == skill.id for s in beta.skills.list())

# A second version; `latest` follows it.
v2 = beta.skills.versions.create(
    skill.id, files=[("greeter/SKILL.md", SKILL_MD), ("greeter/phrases.txt", b"sv: hej\nno: hei\n")]
)
assert int(v2.id) > int(first), (v2.id, first)
assert beta.skills.retrieve(skill.id).latest_version_id == v2.id
assert [v.id for v in beta.skills.versions.list(skill.id)] == [v2.id, first]

# Refusals say what is wrong.
try:
    beta.skills.create(files=[("notes/README.md", b"hello")])
    raise AssertionError("a skill without SKILL.md was accepted")
except anthropic.BadRequestError as e:
    assert "SKILL.md" in str(e), e
try:
    beta.agents.create(
        name="xlsx-agent", model="claude-sdk-test", skills=[{"type": "anthropic", "skill_id": "xlsx"}]
    )
    raise AssertionError("an Anthropic skill was accepted")
except anthropic.BadRequestError as e:
    assert "xlsx" in str(e) and "only custom skills" in str(e), e

agent = beta.agents.create(
    name="skills-agent",
    model="claude-sdk-test",
    tools=[{"type": "agent_toolset_20260401"}],
    skills=[{"type": "custom", "skill_id": skill.id, "version": "latest"}],
)
assert agent.skills[0].skill_id == skill.id and agent.skills[0].type == "custom", agent.skills
env = beta.environments.create(name="skills-env", config={"type": "cloud"})
session = beta.sessions.create(agent=agent.id, environment_id=env.id)
beta.sessions.events.send(
    session.id,
    events=[{"type": "user.message", "content": [{"type": "text", "text": "say hello in Swedish"}]}],
)
deadline = time.time() + 120
while True:
    history = list(beta.sessions.events.list(session.id))
    if history and history[-1].type == "session.status_idle":
        break
    assert time.time() < deadline, [e.type for e in history]
    time.sleep(0.2)

results = [e for e in history if e.type == "agent.tool_result"]
assert len(results) == 2, [e.type for e in history]
read = "".join(b.text for b in results[0].content if b.type == "text")
assert "Greets people" in read and "phrases.txt" in read, read
write = "".join(b.text for b in results[1].content if b.type == "text")
assert "Read-only file system" in write, write

# The only version can't go alone; the skill goes with all its versions.
deleted = beta.skills.versions.delete(first, skill_id=skill.id)
assert deleted.type == "skill_version_deleted" and deleted.id == first, deleted
try:
    beta.skills.versions.delete(v2.id, skill_id=skill.id)
    raise AssertionError("the last version was deleted")
except anthropic.ConflictError as e:
    assert "delete the skill" in str(e), e
gone = beta.skills.delete(skill.id)
assert gone.type == "skill_deleted" and gone.id == skill.id, gone
try:
    beta.skills.retrieve(skill.id)
    raise AssertionError("a deleted skill was found")
except anthropic.NotFoundError as e:
    assert skill.id in str(e), e
print("python sdk skills ok")
