"""Schemathesis hooks for tests/tests/schemathesis.rs.

/v1/openapi.json states every rule of the daemon's validation that JSON Schema (OpenAPI 3.0)
can express. These are the ones it can't, so generated requests are brought in line with them
here, right before they are sent; anything else the daemon refuses with a 400 is a
disagreement between the document and the code, and the run fails (positive_data_acceptance).
"""

import json
import os
import unicodedata
import urllib.request

import schemathesis


def _key(v):
    return json.dumps(v, sort_keys=True)


def _fix_tools(tools, servers):
    """mcp_toolset entries must name a declared server; custom tool names are unique."""
    if not isinstance(tools, list):
        return tools
    names = {_key(s.get("name")) for s in servers if isinstance(s, dict)}
    seen, out = set(), []
    for t in tools:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind == "mcp_toolset" and _key(t.get("mcp_server_name")) not in names:
            continue
        if kind == "custom":
            if _key(t.get("name")) in seen:
                continue
            seen.add(_key(t.get("name")))
        if kind == "agent_toolset_20260401" and isinstance(t.get("configs"), list):
            # A config's optional `type` must equal its `name` (the SDK's tagged union).
            for c in t["configs"]:
                if isinstance(c, dict) and "type" in c:
                    c["type"] = c.get("name")
        out.append(t)
    return out


def _unique_servers(servers):
    """mcp_servers names are unique."""
    if not isinstance(servers, list):
        return servers
    seen, out = set(), []
    for s in servers:
        name = _key(s.get("name") if isinstance(s, dict) else None)
        if name in seen:
            continue
        seen.add(name)
        out.append(s)
    return out


def _fix_keys(body):
    """OpenAPI 3.0 has no `propertyNames`: metadata keys are at most 64 characters, and the
    environment variables of an MCP server have names (not empty, no `=`, no NUL)."""
    if isinstance(body, list):
        for v in body:
            _fix_keys(v)
        return
    if not isinstance(body, dict):
        return
    for field, ok in (
        ("metadata", lambda k: len(k) <= 64),
        ("env", lambda k: k != "" and "=" not in k and "\0" not in k),
    ):
        m = body.get(field)
        if isinstance(m, dict):
            for k in [k for k in m if not ok(k)]:
                del m[k]
    for v in body.values():
        _fix_keys(v)


@schemathesis.hook
def before_call(context, case, kwargs):
    op = case.operation
    path, method = op.path, op.method.lower()
    body = case.body if isinstance(case.body, dict) else None
    _fix_keys(body)
    if body is not None and method == "post" and path in ("/v1/agents", "/v1/agents/{agent_id}"):
        # A roster names agents that must exist (and have no roster of their own), and its
        # lookup-free rules (distinct entries, a non-empty advisor model, inline agents or at
        # least one predefined one) are beyond JSON Schema: the e2e tests cover the field.
        body.pop("multiagent", None)
        # Skills name uploads that must exist (and `anthropic` ones are refused by rule):
        # tests/tests/skills.rs covers the field.
        body.pop("skills", None)
        if "mcp_servers" in body:
            body["mcp_servers"] = _unique_servers(body["mcp_servers"])
        if "tools" in body:
            servers = body.get("mcp_servers")
            body["tools"] = _fix_tools(body["tools"], servers if isinstance(servers, list) else [])
    if body is not None and method == "post" and path in (
        "/v1/deployments",
        "/v1/deployments/{deployment_id}",
    ):
        # A cron expression and an IANA zone are checked by the daemon (croner, chrono-tz),
        # which JSON Schema can't express: generated ones become a valid pair.
        schedule = body.get("schedule")
        if isinstance(schedule, dict) and schedule.get("type") == "cron":
            schedule["expression"] = "0 9 * * 1-5"
            schedule["timezone"] = "Europe/Paris"
        # A workflow's graph rules are beyond JSON Schema (as for workflow_runs below), and
        # it excludes initial_events: generated ones go; tests/tests/deployments.rs covers
        # workflow deployments. Without it a create needs its initial events.
        body.pop("workflow", None)
        if path == "/v1/deployments" and not body.get("initial_events"):
            body["initial_events"] = [
                {"type": "user.message", "content": [{"type": "text", "text": "go"}]}
            ]
    if body is not None and method == "post" and path in (
        "/v1/sessions",
        "/v1/deployments",
        "/v1/deployments/{deployment_id}",
    ):
        resources = body.get("resources")
        if isinstance(resources, list):
            # Files and repositories name uploads and GitHub URLs that must exist (an
            # `https://github.com/OWNER/REPO` URL, a file id): tests/tests/files.rs covers them.
            body["resources"] = [
                r for r in resources if not (isinstance(r, dict) and r.get("type") in ("file", "github_repository"))
            ]
        agent = body.get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("id"), str) and path != "/v1/sessions":
            # `{type: agent, id, version}` carries its version apart; an `@` in the id is
            # the string form's `NAME@VERSION`, refused when not a number.
            agent["id"] = agent["id"].replace("@", "")
        if isinstance(agent, dict) and "tools" in agent:
            # Overrides can't add MCP servers, so no mcp_toolset can name one.
            agent["tools"] = _fix_tools(agent["tools"], [])
        events = body.get("initial_events")
        if isinstance(events, list):
            # One outcome at a time: at most one user.define_outcome among them.
            kept, seen = [], False
            for e in events:
                outcome = isinstance(e, dict) and e.get("type") == "user.define_outcome"
                if outcome and seen:
                    continue
                seen = seen or outcome
                kept.append(e)
            body["initial_events"] = kept
    if method == "post" and path == "/v1/sessions/{session_id}/workflow_runs":
        # A workflow's graph rules (known dependencies, no cycle, templates naming
        # dependencies, escalation within the retries) are beyond JSON Schema: a generated
        # file becomes a small valid one; tests/tests/workflows.rs covers the validation.
        case.body = {"name": "fuzzed", "tasks": [{"id": "a", "prompt": "p"}]}
    if isinstance(case.query, dict):
        # A cursor is only valid as an earlier response's next_page/prev_page.
        case.query.pop("page", None)
        # agent_version filters within agent_id's versions.
        if "agent_version" in case.query and "agent_id" not in case.query:
            case.query.pop("agent_version")


# memory stores: rules JSON Schema can't say (NFC, Unicode format characters, sizes in
# bytes rather than characters).



def _memory_path(p):
    if not isinstance(p, str):
        return p
    p = "".join(c for c in unicodedata.normalize("NFC", p) if unicodedata.category(c) != "Cf")
    segs = [s for s in p.split("/") if s not in ("", ".", "..")][:20] or ["m"]
    out = "/" + "/".join(segs)
    while len(out.encode()) > 1024:
        out = out[:-1].rstrip("/") or "/m"
    return out


def _memory_content(c):
    if isinstance(c, str):
        while len(c.encode()) > 102400:
            c = c[: len(c) // 2]
    return c


def _api(method, path, body=None):
    req = urllib.request.Request(
        os.environ["TETHER_SCHEMATHESIS_BASE"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"x-api-key": os.environ["TETHER_SCHEMATHESIS_TOKEN"],
                 "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def _live_stores_named(name):
    """How many live memory stores are called `name` (every page of the list)."""
    count, page = 0, None
    try:
        for _ in range(50):
            q = "/v1/memory_stores?limit=100" + (f"&page={page}" if page else "")
            got = _api("GET", q)
            count += sum(1 for m in got.get("data", []) if m.get("name") == name)
            page = got.get("next_page")
            if not page:
                break
    except Exception:
        pass
    return count


def _live_store(case):
    """Writes to an archived store are a 400 by a rule of state the schema can't state (the
    stateful phase archives the store it then writes to): aim such writes at a live store,
    and at a memory of it."""
    params = case.path_parameters or {}
    sid = params.get("memory_store_id")
    if not sid or "TETHER_SCHEMATHESIS_BASE" not in os.environ:
        return
    try:
        if _api("GET", f"/v1/memory_stores/{sid}").get("archived_at") is None:
            return
    except Exception:
        return  # unknown id: the daemon's 404 is the right answer
    live = _api("POST", "/v1/memory_stores", {"name": "schemathesis live store"})["id"]
    params["memory_store_id"] = live
    if "memory_id" in params:
        mem = _api("POST", f"/v1/memory_stores/{live}/memories",
                   {"path": "/schemathesis.md", "content": "x"})
        params["memory_id"] = mem["id"]


@schemathesis.hook("before_call")
def memory_rules(context, case, kwargs):
    op = case.operation
    if (op.path in ("/v1/sessions", "/v1/deployments", "/v1/deployments/{deployment_id}")
            and op.method.lower() == "post" and isinstance(case.body, dict)):
        # A store is attached once per session (a deployment's resources are its sessions').
        res = case.body.get("resources")
        if isinstance(res, list):
            seen, kept = set(), []
            for r in res:
                key = r.get("memory_store_id") if isinstance(r, dict) else None
                key = key if isinstance(key, str) else None
                if key is not None and key in seen:
                    continue
                # An archived store can't be attached to a new session, and a name (tether
                # takes one) that several live stores share by then is ambiguous: rules of
                # state (400s) the schema can't state.
                if key is not None and "TETHER_SCHEMATHESIS_BASE" in os.environ:
                    try:
                        if _api("GET", f"/v1/memory_stores/{key}").get("archived_at"):
                            continue
                    except Exception:
                        pass
                    if not key.startswith("memstore_") and _live_stores_named(key) > 1:
                        continue
                seen.add(key)
                kept.append(r)
            case.body["resources"] = kept
    if not op.path.startswith("/v1/memory_stores"):
        return
    if op.method.lower() == "post" and not op.path.endswith("/archive"):
        _live_store(case)
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and op.method.lower() == "post":
        if "path" in body:
            body["path"] = _memory_path(body["path"])
        if "content" in body:
            body["content"] = _memory_content(body["content"])
    if isinstance(case.query, dict) and isinstance(case.query.get("path_prefix"), str):
        p = case.query["path_prefix"]
        case.query["path_prefix"] = "/" if p == "/" else _memory_path(p.rstrip("/")) + "/"


# vaults: host names, variable names, URLs and future expiries are checked by the daemon
# beyond what JSON Schema says; archived vaults and credentials take no writes (state).


# A throwaway P-256 PKCS#8 key (test data, signs nothing real).
_TEST_P256_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOTNivSUKgmYvoosg
wUrKjLWxlgrJbF0+FXR5oZ+DCNmhRANCAAQoxHfsgcIL6xbOCeNv0wiJrnNl8pGF
UZi65euRP2fZAI0u/d1PEAV6HGq9K8GPDn6QXNczHqwNtXlI5ghCWdlu
-----END PRIVATE KEY-----
"""


def _fix_auth(auth):
    if not isinstance(auth, dict):
        return
    for key in ("mcp_server_url",):
        if key in auth:
            auth[key] = "https://mcp.example.com/mcp"
    if "expires_at" in auth and auth["expires_at"] is not None:
        auth["expires_at"] = "2999-01-01T00:00:00Z"
    if isinstance(auth.get("secret_name"), str):
        auth["secret_name"] = "SCHEMATHESIS_SECRET"
    for key in ("token", "access_token", "secret_value"):
        if key in auth and auth[key] == "":
            auth[key] = "x"
    net = auth.get("networking")
    if isinstance(net, dict) and isinstance(net.get("allowed_hosts"), list):
        net["allowed_hosts"] = ["api.example.com", "*.example.org"][: len(net["allowed_hosts"])]
    loc = auth.get("injection_location")
    if isinstance(loc, dict) and loc.get("body") is False and loc.get("header") is False:
        loc["header"] = True
    refresh = auth.get("refresh")
    if isinstance(refresh, dict):
        if "token_endpoint" in refresh:
            refresh["token_endpoint"] = "https://auth.example.com/token"
        if isinstance(refresh.get("client_id"), str) and not refresh["client_id"].strip():
            refresh["client_id"] = "client"
        # tether's client-credentials extension: a refresh token is needed unless the grant
        # is client_credentials, which needs the client to authenticate; a private_key_jwt
        # key must be one tether can sign with.
        client_credentials = refresh.get("grant_type") == "client_credentials"
        if not client_credentials and not refresh.get("refresh_token"):
            refresh["refresh_token"] = "r"
        tea = refresh.get("token_endpoint_auth")
        if client_credentials and isinstance(tea, dict) and tea.get("type") == "none":
            refresh["token_endpoint_auth"] = {"type": "client_secret_basic", "client_secret": "s"}
        if isinstance(tea, dict) and tea.get("type") == "private_key_jwt":
            tea["private_key"] = _TEST_P256_KEY


def _live_vault(case):
    params = case.path_parameters or {}
    vid = params.get("vault_id")
    if not vid or "TETHER_SCHEMATHESIS_BASE" not in os.environ:
        return
    try:
        vault = _api("GET", f"/v1/vaults/{vid}")
    except Exception:
        return  # unknown id: the daemon's 404 is the right answer
    cid = params.get("credential_id")
    cred_archived = False
    if cid is not None:
        try:
            cred_archived = _api("GET", f"/v1/vaults/{vid}/credentials/{cid}").get("archived_at") is not None
        except Exception:
            cred_archived = False
    if vault.get("archived_at") is None and not cred_archived:
        return
    live = _api("POST", "/v1/vaults", {"display_name": "schemathesis live vault"})["id"]
    params["vault_id"] = live
    if cid is not None:
        kind = None
        body = case.body if isinstance(case.body, dict) else {}
        if isinstance(body.get("auth"), dict):
            kind = body["auth"].get("type")
        auth = {
            "environment_variable": {"type": "environment_variable", "secret_name": "S",
                                     "secret_value": "x", "networking": {"type": "unrestricted"}},
            "mcp_oauth": {"type": "mcp_oauth", "mcp_server_url": "https://mcp.example.com/mcp",
                          "access_token": "x"},
        }.get(kind, {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/mcp",
                     "token": "x"})
        params["credential_id"] = _api("POST", f"/v1/vaults/{live}/credentials", {"auth": auth})["id"]


def _live_session(case):
    """Input to an archived session is a 400 by a rule of state the schema can't state (the
    stateful phase archives the session it then writes to): aim such writes at a live one."""
    params = case.path_parameters or {}
    sid = params.get("session_id")
    if not sid or "TETHER_SCHEMATHESIS_BASE" not in os.environ:
        return
    try:
        if _api("GET", f"/v1/sessions/{sid}").get("archived_at") is None:
            return
    except Exception:
        return  # unknown id: the daemon's 404 is the right answer
    params["session_id"] = _api("POST", "/v1/sessions", {"agent": "default", "environment_id": "default"})["id"]


@schemathesis.hook("before_call")
def session_rules(context, case, kwargs):
    op = case.operation
    if op.method.lower() == "post" and op.path in (
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/events",
        "/v1/sessions/{session_id}/workflow_runs",
    ):
        _live_session(case)


@schemathesis.hook("before_call")
def vault_rules(context, case, kwargs):
    op = case.operation
    method = op.method.lower()
    # An archived vault is refused by name (a rule of state): left out where vaults are given.
    with_vaults = ("/v1/sessions", "/v1/sessions/{session_id}", "/v1/deployments",
                   "/v1/deployments/{deployment_id}")
    if op.path in with_vaults and method == "post" and isinstance(case.body, dict):
        ids = case.body.get("vault_ids")
        if isinstance(ids, list) and "TETHER_SCHEMATHESIS_BASE" in os.environ:
            kept = []
            for v in ids:
                try:
                    if isinstance(v, str) and _api("GET", f"/v1/vaults/{v}").get("archived_at"):
                        continue
                except Exception:
                    pass
                kept.append(v)
            case.body["vault_ids"] = kept
    if not op.path.startswith("/v1/vaults"):
        return
    if op.path.endswith("/mcp_oauth_validate") and "TETHER_SCHEMATHESIS_BASE" in os.environ:
        # Only a live mcp_oauth credential can be validated (a rule of state): aim at one.
        params = case.path_parameters or {}
        live = _api("POST", "/v1/vaults", {"display_name": "schemathesis oauth vault"})["id"]
        params["vault_id"] = live
        params["credential_id"] = _api("POST", f"/v1/vaults/{live}/credentials", {"auth": {
            "type": "mcp_oauth", "mcp_server_url": "https://mcp.example.com/mcp", "access_token": "x"}})["id"]
        return
    if method == "post" and not op.path.endswith("/archive"):
        _live_vault(case)
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and method == "post":
        params = case.path_parameters or {}
        if "credential_id" in params and isinstance(body.get("auth"), dict):
            # An update keeps the stored type, and refresh settings exist only if stored.
            try:
                stored = _api("GET", f"/v1/vaults/{params['vault_id']}/credentials/{params['credential_id']}")
                if body["auth"].get("type") != stored["auth"]["type"]:
                    body["auth"] = {"type": stored["auth"]["type"]}
            except Exception:
                pass
            body["auth"].pop("refresh", None)
        _fix_auth(body.get("auth"))


# skills: an upload is a directory's files named by path with a SKILL.md whose front matter
# the daemon reads, beyond what JSON Schema can say: generated uploads become a valid one.

_SKILL_MD = b"---\nname: fuzzed-skill\ndescription: A skill schemathesis uploads.\n---\nBody.\n"


@schemathesis.hook("before_call")
def skill_uploads(context, case, kwargs):
    op = case.operation
    if op.method.lower() != "post" or op.path not in ("/v1/skills", "/v1/skills/{skill_id}/versions"):
        return
    kwargs.pop("data", None)
    kwargs.pop("json", None)
    kwargs.pop("content", None)
    headers = kwargs.get("headers") or {}
    for k in [k for k in headers if k.lower() == "content-type"]:
        del headers[k]
    kwargs["files"] = [("files[]", ("fuzzed-skill/SKILL.md", _SKILL_MD))]
    if op.path == "/v1/skills" and isinstance(case.body, dict) and isinstance(case.body.get("display_name"), str):
        name = " ".join(case.body["display_name"].split())[:255]
        if name:
            kwargs["data"] = {"display_name": name}
