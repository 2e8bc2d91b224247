"""A fake Discord (OAuth authorize, token exchange and /users/@me) on 127.0.0.1, speaking
what allauth's discord provider asks of discord.com/api."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .fake_oauth import FakeOAuthServer, Route

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
class FakeDiscord(FakeOAuthServer):
    user: DiscordUser = field(default_factory=DiscordUser)
    codes: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    scopes: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def get_routes(self) -> dict[str, Route]:
        return {
            "/api/oauth2/authorize": self.authorize,
            "/api/users/@me": lambda handler, _: self.me(handler),
        }

    def post_routes(self) -> dict[str, Route]:
        return {"/api/oauth2/token": self.token}

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            handler.send_error(400, "unknown client_id or response_type")
            return
        self.scopes.append(query.get("scope", ""))
        code = secrets.token_hex(8)
        self.codes[code] = query["redirect_uri"]
        self.redirect_with_code(handler, query, code)

    def token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            self.send_json(handler, {"error": "invalid_client"}, status=401)
            return
        code = form.get("code", "")
        if form.get("grant_type") != "authorization_code" or code not in self.codes:
            self.send_json(handler, {"error": "invalid_grant"}, status=400)
            return
        if self.codes.pop(code) != form.get("redirect_uri"):
            self.send_json(handler, {"error": "invalid_grant"}, status=400)
            return
        token = secrets.token_hex(16)
        self.tokens.add(token)
        self.send_json(
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
            self.send_json(handler, {"message": "401: Unauthorized", "code": 0}, status=401)
            return
        user = self.user
        self.send_json(
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
