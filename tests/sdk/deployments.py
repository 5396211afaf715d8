"""The official Anthropic Python SDK, unmodified, driving deployments on a local tetherd:
create, list, retrieve, run, the run and its session, pause, unpause, archive, in the SDK's
own types.

Run by tests/tests/deployments.rs with TETHER_URL and TETHER_TOKEN set; exits non-zero with the
reason on the first thing that does not behave as the hosted API documents.
"""

import os

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0
)
beta = client.beta

dep = beta.deployments.create(
    name="weekday digest",
    agent="default",
    environment_id="default",
    initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "digest"}]}],
    schedule={"type": "cron", "expression": "0 9 * * 1-5", "timezone": "America/New_York"},
    metadata={"team": "ops"},
)
assert type(dep).__name__ == "BetaManagedAgentsDeployment", type(dep)
assert dep.id.startswith("depl_"), dep.id
assert dep.status == "active" and dep.paused_reason is None, dep
assert dep.agent.type == "agent" and dep.agent.version >= 1, dep.agent
assert dep.schedule.type == "cron" and dep.schedule.timezone == "America/New_York", dep.schedule
upcoming = dep.schedule.upcoming_runs_at
assert len(upcoming) == 5, upcoming
# 09:00 in New York is 13:00 or 14:00 UTC, on weekdays only.
for t in upcoming:
    assert t.hour in (13, 14) and t.minute == 0 and t.weekday() < 5, upcoming

listed = [d.id for d in beta.deployments.list()]
assert dep.id in listed, listed
got = beta.deployments.retrieve(dep.id)
assert got.id == dep.id and got.metadata == {"team": "ops"}, got

run = beta.deployments.run(dep.id)
assert type(run).__name__ == "BetaManagedAgentsDeploymentRun", type(run)
assert run.id.startswith("drun_") and run.deployment_id == dep.id, run
assert run.trigger_context.type == "manual", run.trigger_context
assert run.error is None and run.session_id and run.session_id.startswith("sesn_"), run
assert run.agent.id == dep.agent.id and run.agent.version == dep.agent.version, run.agent

runs = list(beta.deployment_runs.list(deployment_id=dep.id))
assert [r.id for r in runs] == [run.id], runs
assert list(beta.deployment_runs.list(deployment_id=dep.id, has_error=True)) == []
assert beta.deployment_runs.retrieve(run.id).session_id == run.session_id
assert list(beta.deployment_runs.list(deployment_id="depl_unknown")) == []

session = beta.sessions.retrieve(run.session_id)
assert session.deployment_id == dep.id, session
fired = [s.id for s in beta.sessions.list(deployment_id=dep.id)]
assert fired == [run.session_id], fired

paused = beta.deployments.pause(dep.id)
assert paused.status == "paused" and paused.paused_reason.type == "manual", paused
# Still listed while paused, and a manual run still works.
assert len(paused.schedule.upcoming_runs_at) == 5, paused.schedule
assert beta.deployments.run(dep.id).session_id
assert [d.id for d in beta.deployments.list(status="paused")] == [dep.id]
resumed = beta.deployments.unpause(dep.id)
assert resumed.status == "active" and resumed.paused_reason is None, resumed

updated = beta.deployments.update(dep.id, schedule=None, description="on demand")
assert updated.schedule is None and updated.description == "on demand", updated

archived = beta.deployments.archive(dep.id)
assert archived.archived_at is not None and archived.status == "active", archived
assert dep.id not in [d.id for d in beta.deployments.list()]

# `status` with `include_archived` (the SDK's own tests send the pair; hosted refuses it):
# include_archived widens the set, then status keeps what each deployment reports, so the
# archived one (reporting `active`) is kept by `active` and a live paused one by `paused`.
held = beta.deployments.create(
    name="held",
    agent="default",
    environment_id="default",
    initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "hold"}]}],
)
beta.deployments.pause(held.id)
active = [d.id for d in beta.deployments.list(status="active", include_archived=True)]
assert dep.id in active and held.id not in active, active
paused_all = [d.id for d in beta.deployments.list(status="paused", include_archived=True)]
assert paused_all == [held.id], paused_all
assert [d.id for d in beta.deployments.list(status="active")] == [], "archived left out"

# vault_ids: the sessions a deployment fires use its vaults; an unknown one is a 404.
vault = beta.vaults.create(display_name="deploy-creds")
keyed = beta.deployments.update(held.id, vault_ids=[vault.id])
assert keyed.vault_ids == [vault.id], keyed
fired = beta.deployments.run(held.id)
assert beta.sessions.retrieve(fired.session_id).vault_ids == [vault.id]
assert beta.deployments.update(held.id, vault_ids=[]).vault_ids == []
try:
    beta.deployments.update(held.id, vault_ids=["vlt_nope"])
    raise SystemExit("an unknown vault should be a 404")
except anthropic.NotFoundError as e:
    assert "vlt_nope" in str(e), e

# resources: a file and a repository (its token write-only), parsed by the strict client.
strict = anthropic.Anthropic(
    base_url=os.environ["TETHER_URL"], api_key=os.environ["TETHER_TOKEN"], max_retries=0,
    _strict_response_validation=True,
)
upload = beta.files.upload(file=("notes.txt", b"hello", "text/plain"))
mounted = strict.beta.deployments.update(held.id, resources=[
    {"type": "file", "file_id": upload.id, "mount_path": "notes.txt"},
    {"type": "github_repository", "url": "https://github.com/octo/hello",
     "authorization_token": "ghp_sdk_secret_token", "mount_path": "/workspace/hello"},
])
assert [r.type for r in mounted.resources] == ["file", "github_repository"], mounted.resources
assert mounted.resources[0].file_id == upload.id and mounted.resources[0].mount_path == "notes.txt"
assert "ghp_sdk_secret_token" not in strict.beta.deployments.retrieve(held.id).to_json()
assert strict.beta.deployments.update(held.id, resources=None).resources == []
try:
    beta.deployments.update(held.id, resources=[{"type": "file", "file_id": "file_nope"}])
    raise SystemExit("an unknown file should be a 404")
except anthropic.NotFoundError as e:
    assert "resources[0]" in str(e) and "file_nope" in str(e), e

try:
    beta.deployments.retrieve("depl_nope")
    raise SystemExit("retrieving an unknown deployment should be a 404")
except anthropic.NotFoundError as e:
    assert "depl_nope" in str(e), e

print("python sdk deployments ok")
