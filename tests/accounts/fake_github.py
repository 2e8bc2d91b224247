"""A fake GitHub (OAuth authorize, token exchange, /user and /user/emails) on 127.0.0.1."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .fake_oauth import FakeOAuthServer, Route

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"


@dataclass
class GitHubUser:
    id: int = 4242
    login: str = "octocat"
    name: str = "Octo Cat"
    email: str = "octocat@example.com"


@dataclass
class FakeGitHub(FakeOAuthServer):
    user: GitHubUser = field(default_factory=GitHubUser)
    codes: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    def get_routes(self) -> dict[str, Route]:
        return {
            "/login/oauth/authorize": self.authorize,
            "/api/v3/user": lambda handler, _: self.api(handler, "/api/v3/user"),
            "/api/v3/user/emails": lambda handler, _: self.api(handler, "/api/v3/user/emails"),
        }

    def post_routes(self) -> dict[str, Route]:
        return {"/login/oauth/access_token": self.access_token}

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("client_id") != CLIENT_ID:
            handler.send_error(400, "unknown client_id")
            return
        code = secrets.token_hex(8)
        self.codes.add(code)
        self.redirect_with_code(handler, query, code)

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
