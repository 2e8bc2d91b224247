"""System checks that refuse bad branding settings: the credit unit and the API key prefix."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

# A unit's name is shown after every amount: a short word, not markup or a number.
UNIT_NAME = re.compile(r"[^\W\d][\w.-]{0,15}")


@register()
def check_credit_unit(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """CREDIT_UNIT_NAME and CREDIT_UNIT_MICRO_USD are set together, and sensibly."""
    name, micro_usd = settings.CREDIT_UNIT_NAME, settings.CREDIT_UNIT_MICRO_USD
    if not name and not micro_usd:
        return []
    if not name:
        return [
            Error(
                "CREDIT_UNIT_MICRO_USD is set but CREDIT_UNIT_NAME is not.",
                hint="Name the unit (e.g. CREDIT_UNIT_NAME=ICO), or unset both for USD only.",
                id="console.E010",
            )
        ]
    if not UNIT_NAME.fullmatch(name):
        return [
            Error(
                f"CREDIT_UNIT_NAME {name!r} is not a short word.",
                hint="Up to 16 letters, digits, '.', '_' or '-', starting with a letter.",
                id="console.E011",
            )
        ]
    if micro_usd <= 0:
        return [
            Error(
                f"CREDIT_UNIT_NAME is {name!r} but CREDIT_UNIT_MICRO_USD is {micro_usd}.",
                hint="Give the unit's worth in micro-USD, a whole number above 0 "
                "(1000 for a unit worth $0.001).",
                id="console.E012",
            )
        ]
    return []


@register()
def check_api_key_prefix(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """API_KEY_PREFIX is a short word keys can start with (what parse_secret reads)."""
    from accounts.models import KEY_PREFIX_PATTERN

    prefix = settings.API_KEY_PREFIX
    if KEY_PREFIX_PATTERN.fullmatch(prefix):
        return []
    return [
        Error(
            f"API_KEY_PREFIX {prefix!r} cannot start an API key.",
            hint="1 to 24 letters, digits, '-' or '_', starting with a letter, e.g. sk-sb- "
            "or btoo_sk_live_. Keys minted under an earlier prefix keep working.",
            id="console.E020",
        )
    ]
