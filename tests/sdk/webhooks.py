"""A webhook receiver that verifies every delivery with the official SDK, unmodified:
`client.beta.webhooks.unwrap` (Standard Webhooks signature, then the hosted event envelope).

Usage: webhooks.py PORT FAIL_FIRST
  PORT        0 for any free port.
  FAIL_FIRST  answer 500 to the first N attempts of each webhook-id (to exercise retries).

Prints `port N` once listening, then reads the signing secret (whsec_...) as one line from
stdin, then prints one line per request:
  rejected <webhook-id>           (a deliberate 500)
  verified <json>                 (unwrap accepted it; 204)
  invalid <webhook-id> <error>    (unwrap refused it; 400)
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic

port = int(sys.argv[1])
fail_first = int(sys.argv[2])
client = anthropic.Anthropic(api_key="unused-webhooks-only")
lock = threading.Lock()
attempts = {}
secret = None
ready = threading.Event()


def say(line):
    with lock:
        print(line, flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        ready.wait()
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        wid = self.headers.get("webhook-id", "")
        with lock:
            attempts[wid] = attempts.get(wid, 0) + 1
            n = attempts[wid]
        if n <= fail_first:
            say(f"rejected {wid}")
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"deliberately failing")
            return
        try:
            event = client.beta.webhooks.unwrap(body.decode("utf-8"), headers=headers, key=secret)
        except Exception as e:  # noqa: BLE001 - any refusal is reported to the test
            say(f"invalid {wid} {type(e).__name__}: {e}")
            self.send_response(400)
            self.end_headers()
            return
        say(
            "verified "
            + json.dumps(
                {
                    "webhook_id": wid,
                    "id": event.id,
                    "type": event.type,
                    "created_at": event.created_at.isoformat(),
                    "data_type": event.data.type,
                    "data_id": event.data.id,
                    "organization_id": event.data.organization_id,
                    "workspace_id": event.data.workspace_id,
                    "session_thread_id": getattr(event.data, "session_thread_id", None),
                    "vault_id": getattr(event.data, "vault_id", None),
                }
            )
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
say(f"port {server.server_address[1]}")
threading.Thread(target=server.serve_forever, daemon=True).start()
secret = sys.stdin.readline().strip()
ready.set()
# Serve until the test closes stdin.
sys.stdin.read()
server.shutdown()
