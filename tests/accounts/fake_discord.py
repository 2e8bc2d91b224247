"""A fake Discord (OAuth authorize, token exchange and /users/@me) on 127.0.0.1, speaking
what allauth's discord provider asks of discord.com/api."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .fake_github import FakeGitHub

CLIENT_ID = "fake-discord-client"
CLIENT_SECRET = "fake-discord-secret"


@dataclass
class DiscordUser:
    id: str = "80351110224678912"
    username: str = "nelly"
    global_name: str | None = "Nelly"
    email: str = "nelly@example.com"
    verified: bool = True


@dataclass
class FakeDiscord:
    user: DiscordUser = field(default_factory=DiscordUser)
    codes: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    scopes: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeDiscord:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/api/oauth2/authorize":
                    fake.authorize(self, query)
                elif parts.path == "/api/users/@me":
                    fake.me(self)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path == "/api/oauth2/token":
                    fake.token(self, form)
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
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            handler.send_error(400, "unknown client_id or response_type")
            return
        self.scopes.append(query.get("scope", ""))
        code = secrets.token_hex(8)
        self.codes[code] = query["redirect_uri"]
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.end_headers()

    def token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            FakeGitHub.send_json(handler, {"error": "invalid_client"}, status=401)
            return
        code = form.get("code", "")
        if form.get("grant_type") != "authorization_code" or code not in self.codes:
            FakeGitHub.send_json(handler, {"error": "invalid_grant"}, status=400)
            return
        if self.codes.pop(code) != form.get("redirect_uri"):
            FakeGitHub.send_json(handler, {"error": "invalid_grant"}, status=400)
            return
        token = secrets.token_hex(16)
        self.tokens.add(token)
        FakeGitHub.send_json(
            handler,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 604800,
                "refresh_token": secrets.token_hex(16),
                "scope": "identify email",
            },
        )

    def me(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            FakeGitHub.send_json(handler, {"message": "401: Unauthorized", "code": 0}, status=401)
            return
        user = self.user
        FakeGitHub.send_json(
            handler,
            {
                "id": user.id,
                "username": user.username,
                "global_name": user.global_name,
                "discriminator": "0",
                "avatar": None,
                "email": user.email,
                "verified": user.verified,
            },
        )
