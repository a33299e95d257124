"""TEST ONLY: stand-in for the Prometheus and Grafana images in the container stage.

Role `prometheus`: answers GET /-/ready with 200 and nothing else (it scrapes nothing; the real
Prometheus is exercised by tests/deploy/test_monitoring.py outside Docker).
Role `grafana`: first resolves every GF_<NAME>__FILE variable as Grafana's image entrypoint does
(refuse when GF_<NAME> is also set, else GF_<NAME> = the file's content without trailing
newlines, and GF_<NAME>__FILE unset; an unreadable file stops the container), then answers
GET /api/health, and GET /api/user only with HTTP basic auth GF_SECURITY_ADMIN_USER /
GF_SECURITY_ADMIN_PASSWORD. That proves the compose wiring: the variable names a file which the
image's user (472:0) can read and which holds the password; it does not prove Grafana itself.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import signal
import sys
from collections.abc import MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def resolve_file_variables(environ: MutableMapping[str, str]) -> None:
    for name in sorted(environ):
        match = re.fullmatch(r"(GF_.+)__FILE", name)
        if not match or not environ[name]:
            continue
        target = match.group(1)
        if environ.get(target):
            sys.exit(f"ERROR: Both {target} and {name} are set (but are exclusive)")
        print(f"Getting secret {target} from {environ[name]}", file=sys.stderr, flush=True)
        try:
            with open(environ[name], encoding="utf-8") as secret:
                environ[target] = secret.read().rstrip("\n")
        except OSError as exc:
            sys.exit(f"ERROR: cannot read {environ[name]}: {exc}")
        del environ[name]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        role = os.environ["STANDIN_ROLE"]
        if role == "prometheus" and self.path == "/-/ready":
            self.reply(200, {"standin": "prometheus"})
        elif role == "grafana" and self.path == "/api/health":
            self.reply(200, {"standin": "grafana", "database": "ok"})
        elif role == "grafana" and self.path == "/api/user":
            if self.admin():
                self.reply(200, {"login": os.environ["GF_SECURITY_ADMIN_USER"]})
            else:
                self.reply(401, {"message": "invalid username or password"})
        else:
            self.reply(404, {"message": "not found"})

    def admin(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        given = base64.b64decode(header[6:]).decode("utf-8", "replace")
        password = os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "")
        expected = f"{os.environ.get('GF_SECURITY_ADMIN_USER', 'admin')}:{password}"
        return bool(password) and hmac.compare_digest(given.encode(), expected.encode())

    def reply(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    if os.environ["STANDIN_ROLE"] == "grafana":
        resolve_file_variables(os.environ)
    # PID 1 ignores SIGTERM without a handler: `docker stop` would wait its 10 s, then kill.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ["STANDIN_PORT"])
    print(f"stand-in {os.environ['STANDIN_ROLE']} on :{port}", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
