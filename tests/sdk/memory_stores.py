"""The official Anthropic Python SDK, unmodified, driving tetherd's memory stores:
create a store, write, read, list, update with a precondition, versions, redact.

Run by tests/tests/memory.rs with TETHER_URL and TETHER_TOKEN set.
"""

import hashlib
import os
import sys

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0
)
ms = client.beta.memory_stores

store = ms.create(name="SDK Prefs", description="written by the python sdk", metadata={"k": "v"})
assert store.id.startswith("memstore_") and store.type == "memory_store", store
assert ms.retrieve(store.id).description == "written by the python sdk"
assert any(s.id == store.id for s in ms.list())

mem = ms.memories.create(store.id, path="/style/tone.md", content="be brief")
assert mem.id.startswith("mem_") and mem.content is None, mem  # view=basic on create
assert mem.content_sha256 == hashlib.sha256(b"be brief").hexdigest(), mem
assert ms.memories.retrieve(mem.id, memory_store_id=store.id).content == "be brief"
ms.memories.create(store.id, path="/top.md", content="")

paths = [m.path for m in ms.memories.list(store.id)]
assert paths == ["/style/tone.md", "/top.md"], paths
rolled = [(m.type, m.path) for m in ms.memories.list(store.id, depth=1)]
assert rolled == [("memory_prefix", "/style/"), ("memory", "/top.md")], rolled

try:
    ms.memories.update(
        mem.id,
        memory_store_id=store.id,
        content="stale write",
        precondition={"type": "content_sha256", "content_sha256": "0" * 64},
    )
    sys.exit("a write with a stale precondition was accepted")
except anthropic.ConflictError as e:
    assert e.status_code == 409, e
    assert e.body["error"]["type"] == "memory_precondition_failed_error", e.body
updated = ms.memories.update(
    mem.id,
    memory_store_id=store.id,
    content="be very brief",
    precondition={"type": "content_sha256", "content_sha256": mem.content_sha256},
    view="full",
)
assert updated.content == "be very brief" and updated.id == mem.id, updated

versions = list(ms.memory_versions.list(store.id, memory_id=mem.id))
assert [v.operation for v in versions] == ["modified", "created"], versions
assert versions[0].id == updated.memory_version_id
assert versions[1].created_by.type == "api_actor", versions[1].created_by
full = ms.memory_versions.retrieve(versions[1].id, memory_store_id=store.id)
assert full.content == "be brief", full
red = ms.memory_versions.redact(versions[1].id, memory_store_id=store.id)
assert red.content is None and red.path is None and red.redacted_at is not None, red

ms.memories.delete(mem.id, memory_store_id=store.id)
ops = [v.operation for v in ms.memory_versions.list(store.id, memory_id=mem.id)]
assert ops == ["deleted", "modified", "created"], ops
archived = ms.archive(store.id)
assert archived.archived_at is not None
deleted = ms.delete(store.id)
assert deleted.type == "memory_store_deleted", deleted
print("python sdk memory stores ok")
