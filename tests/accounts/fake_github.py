"""A fake GitHub (OAuth authorize, token exchange, /user and /user/emails) on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"


@dataclass
class GitHubUser:
    id: int = 4242
    login: str = "octocat"
    name: str = "Octo Cat"
    email: str = "octocat@example.com"


@dataclass
class FakeGitHub:
    user: GitHubUser = field(default_factory=GitHubUser)
    codes: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/login/oauth/authorize":
                    fake.authorize(self, query)
                elif parts.path in ("/api/v3/user", "/api/v3/user/emails"):
                    fake.api(self, parts.path)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path == "/login/oauth/access_token":
                    fake.access_token(self, form)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("client_id") != CLIENT_ID:
            handler.send_error(400, "unknown client_id")
            return
        code = secrets.token_hex(8)
        self.codes.add(code)
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.end_headers()

    def access_token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            self.send_json(handler, {"error": "incorrect_client_credentials"}, status=401)
            return
        if form.get("code") not in self.codes:
            self.send_json(handler, {"error": "bad_verification_code"}, status=400)
            return
        self.codes.discard(form["code"])
        token = secrets.token_hex(16)
        self.tokens.add(token)
        self.send_json(handler, {"access_token": token, "token_type": "bearer", "scope": ""})

    def api(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if handler.headers.get("Authorization", "").removeprefix("token ") not in self.tokens:
            self.send_json(handler, {"message": "Bad credentials"}, status=401)
            return
        user = self.user
        if path.endswith("/emails"):
            body: Any = [{"email": user.email, "primary": True, "verified": True}]
        else:
            body = {"id": user.id, "login": user.login, "name": user.name, "email": user.email}
        self.send_json(handler, body)

    @staticmethod
    def send_json(handler: BaseHTTPRequestHandler, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
