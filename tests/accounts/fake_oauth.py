"""What the fake OAuth providers (fake_github.py, fake_discord.py) share: an HTTP server
on 127.0.0.1 that hands each GET (its query) and POST (its form) to the route named by
its path, and the JSON and redirect answers they give."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

Route = Callable[[BaseHTTPRequestHandler, dict[str, str]], None]


class FakeOAuthServer:
    """A base for a fake provider: it sets `server`; subclasses name their routes."""

    server: ThreadingHTTPServer | None

    def get_routes(self) -> dict[str, Route]:
        raise NotImplementedError

    def post_routes(self) -> dict[str, Route]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Any:
        gets, posts = self.get_routes(), self.post_routes()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

            def _dispatch(self, routes: dict[str, Route], params: str) -> None:
                route = routes.get(urlsplit(self.path).path)
                if route is None:
                    self.send_error(404)
                    return
                route(self, {k: v[0] for k, v in parse_qs(params).items()})

            def do_GET(self) -> None:
                self._dispatch(gets, urlsplit(self.path).query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self._dispatch(posts, self.rfile.read(length).decode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def redirect_with_code(
        handler: BaseHTTPRequestHandler, query: dict[str, str], code: str
    ) -> None:
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.end_headers()

    @staticmethod
    def send_json(handler: BaseHTTPRequestHandler, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
