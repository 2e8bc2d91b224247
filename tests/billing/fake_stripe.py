"""A fake Stripe API on 127.0.0.1: Checkout Sessions and a checkout page, nothing else.

stripe-python talks to it through `stripe.api_base`. Signed webhooks are built by
`event()` + `signed()` with stripe's own signature helper, exactly as Stripe sends them.
"""

from __future__ import annotations

import html
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import stripe

WEBHOOK_SECRET = "whsec_test_switchboard"
SECRET_KEY = "sk_test_switchboard"

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{next(_ids):06d}"


class FakeStripe:
    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> FakeStripe:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def create_session(self, form: dict[str, str]) -> dict[str, Any]:
        session_id = new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": form.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
            "currency": form["line_items[0][price_data][currency]"],
            "client_reference_id": form.get("client_reference_id"),
            "customer_email": form.get("customer_email"),
            "metadata": {
                key[len("metadata[") : -1]: value
                for key, value in form.items()
                if key.startswith("metadata[")
            },
            "success_url": form["success_url"],
            "cancel_url": form["cancel_url"],
            "url": f"{self.url}/pay/{session_id}",
        }
        self.sessions[session_id] = session
        return session

    def paid(self, session_id: str) -> dict[str, Any]:
        """The session as Stripe shows it once the card payment went through."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid", payment_intent=new_id("pi"))
        return dict(session)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                fake.requests.append(
                    {"path": self.path, "form": form, "auth": self.headers.get("Authorization")}
                )
                if self.path != "/v1/checkout/sessions":
                    self._send(
                        404, b'{"error": {"type": "invalid_request_error"}}', "application/json"
                    )
                    return
                if fake.fail_with is not None:
                    error = {"error": {"type": "api_error", "message": "Stripe is down"}}
                    self._send(fake.fail_with, json.dumps(error).encode(), "application/json")
                    return
                session = fake.create_session(form)
                self._send(200, json.dumps(session).encode(), "application/json")

            def do_GET(self) -> None:
                session = fake.sessions.get(self.path.removeprefix("/pay/"))
                if session is None:
                    self._send(404, b"no such session", "text/plain")
                    return
                success = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
                page = (
                    "<!doctype html><title>Fake Stripe Checkout</title>"
                    f"<h1>Fake Stripe Checkout</h1><p>Pay ${session['amount_total'] / 100:.2f}</p>"
                    f'<a id="pay" href="{html.escape(success)}">Pay</a>'
                    f'<a id="cancel" href="{html.escape(session["cancel_url"])}">Cancel</a>'
                )
                self._send(200, page.encode(), "text/html")

        return Handler


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


def signed(payload: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[str, str]:
    """The body and its `Stripe-Signature` header."""
    body = json.dumps(payload)
    return body, stripe.WebhookSignature.generate_signature_header(body, secret)


def charge(*, payment_intent: str, amount: int, refunded: int) -> dict[str, Any]:
    return {
        "id": new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_refunded": refunded,
        "refunded": refunded == amount,
        "payment_intent": payment_intent,
        "currency": "usd",
    }
