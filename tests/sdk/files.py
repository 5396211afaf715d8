"""The official Anthropic Python SDK, unmodified, in the cookbook's flow: upload a file,
create a session with it as a resource, and the (mock) model reads it with bash; then the
resource endpoints and the file's download and deletion.

Run by tests/tests/files.rs with TETHER_URL and TETHER_TOKEN set. The mock model's script
there runs `cat /mnt/session/uploads/data.csv` and then tries to overwrite it.
"""

import os
import time

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0
)
beta = client.beta

uploaded = beta.files.upload(file=("data.csv", b"city,temp\nOslo,3\n", "text/csv"))
assert uploaded.id.startswith("file_") and uploaded.type == "file", uploaded
assert uploaded.filename == "data.csv" and uploaded.size_bytes == 17, uploaded
assert beta.files.retrieve_metadata(uploaded.id).mime_type == "text/csv"
assert any(f.id == uploaded.id for f in beta.files.list())
assert beta.files.download(uploaded.id).read() == b"city,temp\nOslo,3\n"

agent = beta.agents.create(
    name="files-agent", model="claude-sdk-test", tools=[{"type": "agent_toolset_20260401"}]
)
env = beta.environments.create(name="files-env", config={"type": "cloud"})
session = beta.sessions.create(
    agent=agent.id,
    environment_id=env.id,
    resources=[
        {"type": "file", "file_id": uploaded.id, "mount_path": "/mnt/session/uploads/data.csv"}
    ],
)

resources = list(beta.sessions.resources.list(session.id))
assert len(resources) == 1, resources
res = resources[0]
assert res.type == "file" and res.file_id == uploaded.id, res
assert res.mount_path == "/mnt/session/uploads/data.csv", res
assert beta.sessions.resources.retrieve(res.id, session_id=session.id).id == res.id

beta.sessions.events.send(
    session.id,
    events=[{"type": "user.message", "content": [{"type": "text", "text": "what is in data.csv?"}]}],
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
assert "Oslo,3" in read, read
write = "".join(b.text for b in results[1].content if b.type == "text")
assert "Read-only file system" in write, write

# Deleting the file leaves the session's copy; deleting the resource takes it away.
assert beta.files.delete(uploaded.id).id == uploaded.id
deleted = beta.sessions.resources.delete(res.id, session_id=session.id)
assert deleted.id == res.id and deleted.type == "session_resource_deleted", deleted
assert list(beta.sessions.resources.list(session.id)) == []
print("python sdk files ok")
