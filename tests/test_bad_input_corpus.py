"""The bad-input corpus: at least 300 refused inputs across every surface, each table's
case names unique. The cases themselves run in the modules below; this only keeps the
corpus from quietly shrinking when a table is edited."""

from __future__ import annotations

from tests.accounts import test_account_api_bad_inputs as account_api
from tests.billing import test_stripe_webhook_bad_inputs as webhook
from tests.chat import test_api_bad_inputs as chat_api
from tests.chat import test_socket_bad_inputs as socket
from tests.console import test_form_bad_inputs as forms
from tests.gateway import test_bad_inputs as chat_completions
from tests.gateway import test_estimate_bad_inputs as estimate
from tests.gateway import test_platform_api as platform
from tests.gateway import test_v1_requests as v1

SURFACES: dict[str, list[list[tuple[object, ...]]]] = {
    "/v1/chat/completions": [chat_completions.BAD_BODIES],
    "/v1 paths, ids and generation": [v1.BAD_REQUEST_IDS, v1.BAD_PATHS],
    "/v1/estimate": [estimate.BAD_QUERIES, estimate.BAD_BODIES],
    "the account API": [account_api.BAD_KEY_BODIES, account_api.BAD_REQUESTS],
    "the chat websocket": [socket.BAD_PATHS, socket.BAD_FRAMES],
    "/chat/stream": [chat_api.BAD_BODIES],
    "/v1/auth and /v1/billing": [
        platform.BAD_SIGNUPS,
        platform.NOT_JSON_OBJECTS,
        platform.BAD_LOGINS,
        platform.BAD_UNLIMITED,
        platform.BAD_PACKAGES,
    ],
    "the Stripe webhook": [webhook.MALFORMED],
    "the console's forms and pages": [
        forms.BAD_KEY_FORMS,
        forms.BAD_CONVERSATIONS,
        forms.BAD_CLOSURES,
        forms.MISSING_OBJECTS,
        forms.BAD_PACKAGES,
        forms.BAD_CODES,
    ],
}


def test_the_corpus_has_at_least_300_cases_on_every_surface() -> None:
    sizes = {surface: sum(len(t) for t in tables) for surface, tables in SURFACES.items()}
    assert sum(sizes.values()) >= 300, sizes
    assert all(size >= 20 for size in sizes.values()), sizes


def test_every_case_in_a_table_has_its_own_name() -> None:
    for tables in SURFACES.values():
        for table in tables:
            names = [row[0] for row in table]
            assert len(set(names)) == len(names), names
