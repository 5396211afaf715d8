"""A loopback proxy between the SDK's generated tests and tetherd.

The generated tests (`tests/api_resources/beta/` of the `anthropic` sdist) call made-up ids
(`agent_011CZkYpogX7uDKUyvBTophP`, `memory_store_id`, ...) with a made-up key, as they are
written for a mock server. This proxy creates real objects in tetherd and swaps each fixture
id for the real object's id wherever it appears (path segments, query values, JSON string
values), and the key for tetherd's token. A request that deletes or archives a mapped object
gets a fresh one mapped for the tests after it, and so does the container of a create that
takes a unique slot in it (SLOT_TAKERS). A thread or resource fixture is addressed under a
session of its own (OWNER): a lead's session with a helper thread, an offline session with
a repository. Responses stream through unchanged (SSE
included), so strict response validation judges tetherd's own answers.

Usage: suite_proxy.py TETHERD_URL TOKEN; prints `listening on http://127.0.0.1:PORT`.
"""

import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = urllib.parse.urlsplit(sys.argv[1])
TOKEN = sys.argv[2]
LOCK = threading.Lock()


def call(method, path, body=None, form=None):
    """A JSON call, or with `form` [(field, filename, bytes)] a multipart/form-data one."""
    conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"x-api-key": TOKEN, "content-type": "application/json"}
    if form is not None:
        boundary = "suiteproxyboundary"
        data = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n\r\n'.encode()
            + content
            + b"\r\n"
            for field, name, content in form
        ) + f"--{boundary}--\r\n".encode()
        headers["content-type"] = f"multipart/form-data; boundary={boundary}"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
    return json.loads(raw)


# Fixture id -> how to make the real object (given the current map). Kinds tether does not
# serve (workspaces, service accounts, API keys) are left alone: their tests fail, and the
# suite's table says so.
def make_agent(_):
    return call("POST", "/v1/agents", {"name": "sdk suite", "model": "claude-haiku-4-5"})["id"]


def make_env(_):
    return call("POST", "/v1/environments", {"name": "sdk suite"})["id"]


def make_session(m):
    return call("POST", "/v1/sessions", {"agent": m["agent"], "environment_id": m["env"]})["id"]


def make_store(_):
    return call("POST", "/v1/memory_stores", {"name": "sdk suite"})["id"]


def make_memory(m):
    body = {"path": f"/suite/{len(m)}-{threading.get_ident()}.md", "content": "x"}
    return call("POST", f"/v1/memory_stores/{m['store']}/memories", body)["id"]


def make_memory_version(m):
    page = call("GET", f"/v1/memory_stores/{m['store']}/memory_versions")
    return page["data"][0]["id"]


def make_deployment(m):
    body = {
        "name": "sdk suite",
        "agent": m["agent"],
        "environment_id": m["env"],
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}],
        "schedule": {"type": "cron", "expression": "0 9 * * 1-5", "timezone": "UTC"},
    }
    return call("POST", "/v1/deployments", body)["id"]


def make_run(m):
    return call("POST", f"/v1/deployments/{m['deployment']}/run", {})["id"]


def make_file(_):
    return call("POST", "/v1/files", form=[("file", "suite.txt", b"sdk suite")])["id"]


SERIAL = iter(range(1, 1 << 30))  # distinct mount paths and URLs across renewals


# Objects addressed under a session of their own (`/v1/sessions/{S}/threads/{T}`): the
# fixture session id in such a path is swapped for the object's owner, not the mapped session.
OWNER = {}  # kind -> session id


def make_offline_env(_):
    """An environment whose network policy reaches no host: a repository's clone is refused
    at once (a `session.error`, the session goes on), and the resource is still the session's."""
    body = {"name": "sdk suite offline",
            "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": []}}}
    return call("POST", "/v1/environments", body)["id"]


def make_resource(m):
    """A github_repository resource (the kind that takes a new authorization_token, as the
    update tests send), in a session of its own."""
    repo = {"type": "github_repository", "url": "https://github.com/octocat/Hello-World",
            "authorization_token": "ghp_suite", "mount_path": f"/workspace/suite{next(SERIAL)}"}
    s = call("POST", "/v1/sessions",
             {"agent": m["agent"], "environment_id": m["offline_env"], "resources": [repo]})
    OWNER["resource"] = s["id"]
    return call("GET", f"/v1/sessions/{s['id']}/resources")["data"][0]["id"]


def make_lead(m):
    """A coordinator whose model (the mock, by its system prompt) spawns one helper thread
    on its first turn."""
    body = {"name": "sdk suite lead", "model": "claude-haiku-4-5", "system": "sdk-suite lead",
            "multiagent": {"type": "multiagent_20261001"}}
    return call("POST", "/v1/agents", body)["id"]


def make_thread(m):
    """A child thread (the primary can't be archived: the session is archived instead), in a
    session of the lead of its own, once the helper has answered and the session is idle."""
    s = call("POST", "/v1/sessions", {"agent": m["lead"], "environment_id": m["env"]})["id"]
    OWNER["thread"] = s
    message = {"type": "user.message", "content": [{"type": "text", "text": "delegate"}]}
    call("POST", f"/v1/sessions/{s}/events", {"events": [message]})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        threads = call("GET", f"/v1/sessions/{s}/threads")["data"]
        children = [t for t in threads if t.get("parent_thread_id")]
        if children and all(t["status"] == "idle" for t in threads):
            return children[0]["id"]
        time.sleep(0.05)
    raise RuntimeError(f"session {s}: no idle child thread after 60 s: {threads}")


def make_vault(_):
    return call("POST", "/v1/vaults", {"display_name": "sdk suite"})["id"]


def make_credential(m):
    """An mcp_oauth credential with a refresh grant (client_secret_basic), the kind the tests
    update with an mcp_oauth `auth` and validate. Its server is on a `.invalid` host (never
    resolves): validation answers `unknown` without leaving the machine."""
    refresh = {"client_id": "suite", "refresh_token": "suite-refresh",
               "token_endpoint": "https://auth.suite.invalid/token",
               "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": "suite"}}
    body = {"auth": {"type": "mcp_oauth", "access_token": "suite-token", "refresh": refresh,
                     "mcp_server_url": f"https://mcp{next(SERIAL)}.suite.invalid/mcp"}}
    return call("POST", f"/v1/vaults/{m['vault']}/credentials", body)["id"]


SKILL_MD = b"---\nname: sdk-suite\ndescription: A skill the SDK suite's tests address.\n---\nBody.\n"


def make_skill(_):
    return call("POST", "/v1/skills", form=[("files[]", "sdk-suite/SKILL.md", SKILL_MD)])["id"]


def make_skill_version(m):
    """A new version of the mapped skill, so that deleting it leaves the skill one."""
    form = [("files[]", "sdk-suite/SKILL.md", SKILL_MD)]
    return call("POST", f"/v1/skills/{m['skill']}/versions", form=form)["id"]


# (kind, maker, fixture ids the tests use for it); order matters (later ones use earlier).
KINDS = [
    ("agent", make_agent, ["agent_011CZkYpogX7uDKUyvBTophP", "agent_011CZkYqphY8vELVzwCUpqiQ", "agent_id"]),
    ("env", make_env, ["env_011CZkZ9X2dpNyB7HsEFoRfW", "environment_id"]),
    ("session", make_session, ["sesn_011CZkZAtmR3yMPDzynEDxu7", "session_id"]),
    ("store", make_store, ["memory_store_id"]),
    ("memory", make_memory, ["memory_id"]),
    ("memory_version", make_memory_version, ["memory_version_id"]),
    ("deployment", make_deployment, ["depl_011CZkZcDH3vPqd7xnEfwTai", "deployment_id"]),
    ("run", make_run, ["deployment_run_id"]),
    ("file", make_file, ["file_id", "file_011CNha8iCJcU1wXNR6q4V8w"]),
    ("offline_env", make_offline_env, []),
    ("resource", make_resource, ["sesrsc_011CZkZBJq5dWxk9fVLNcPht"]),
    ("lead", make_lead, []),
    ("thread", make_thread, ["sthr_011CZkZVWa6oJjw1rgXZpnBt"]),
    ("vault", make_vault, ["vlt_011CZkZDLs7fYzm1hXNPeRjv"]),
    ("credential", make_credential, ["vcrd_011CZkZEMt8gZan2iYPQfSkw"]),
    ("skill", make_skill, ["skill_id"]),
    # "version" is only ever a skill version's fixture (agent versions are numbers).
    ("skill_version", make_skill_version, ["version"]),
]
# Objects that live inside another: remade when it is.
DEPENDENTS = {
    "store": ["memory", "memory_version"],
    "vault": ["credential"],
    "skill": ["skill_version"],
}
REAL = {}  # kind -> real id
FIXTURE = {}  # fixture id -> kind
for kind, maker, fixtures in KINDS:
    REAL[kind] = maker(REAL)
    for f in fixtures:
        FIXTURE[f] = kind
MAKERS = {kind: maker for kind, maker, _ in KINDS}


def swap(s):
    kind = FIXTURE.get(s)
    return REAL[kind] if kind else s


def owned(segments):
    """`swap` of each path segment, with `sessions/{S}/{threads|resources}/{X}` addressed to
    X's own session."""
    out = [swap(p) for p in segments]
    for i in range(3, len(segments)):
        kind = FIXTURE.get(segments[i])
        if kind in OWNER and segments[i - 1] in ("threads", "resources") and segments[i - 3] == "sessions":
            out[i - 2] = OWNER[kind]
    return out


def swap_json(v):
    if isinstance(v, str):
        return swap(v)
    if isinstance(v, list):
        return [swap_json(x) for x in v]
    if isinstance(v, dict):
        return {k: swap_json(x) for k, x in v.items()}
    return v


# Creates that take a unique slot of their container (a memory's path in its store, a file's
# default mount path in its session), as the next test's identical create will ask for it
# again: that test gets a fresh container (the mock the tests are written for keeps no state).
SLOT_TAKERS = {"memories": "store", "resources": "file"}


def renew(path, method):
    """A mapped object the request deletes or archives is replaced for the next tests."""
    segments = path.split("/")
    if method == "POST" and segments[-1] in SLOT_TAKERS:
        remake(SLOT_TAKERS[segments[-1]])
        return
    ending = method == "DELETE" or segments[-1] == "archive"
    if not ending:
        return
    target = segments[-1] if method == "DELETE" else segments[-2]
    for kind, real in list(REAL.items()):
        if real == target:
            remake(kind)


def remake(kind):
    for k in [kind] + DEPENDENTS.get(kind, []):
        try:
            REAL[k] = MAKERS[k](REAL)
        except Exception as e:  # the next tests will say what is missing
            print(f"cannot renew {k}: {e}", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        url = urllib.parse.urlsplit(self.path)
        with LOCK:
            path = "/".join(owned([urllib.parse.unquote(p) for p in url.path.split("/")]))
            query = urllib.parse.urlencode(
                [(k, swap(v)) for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True)]
            )
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        if body and "json" in (self.headers.get("content-type") or ""):
            try:
                with LOCK:
                    body = json.dumps(swap_json(json.loads(body))).encode()
            except ValueError:
                pass
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "content-length", "x-api-key", "authorization", "connection")
        }
        headers["x-api-key"] = TOKEN
        if body is not None:
            headers["content-length"] = str(len(body))
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=120)
        conn.request(self.command, path + ("?" + query if query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        # Streamed through as it comes (SSE never ends by itself): the end of the body is
        # the end of the connection.
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass
        finally:
            conn.close()
        self.close_connection = True
        if resp.status < 300:
            with LOCK:
                renew(path, self.command)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
