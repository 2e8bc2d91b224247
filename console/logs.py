"""Log formatting: one line per message, whatever the values in it."""

from __future__ import annotations

import logging


def escape_controls(text: str) -> str:
    """`text` with every unprintable character (newline, NUL, ESC, U+2028…) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class OneLineFormatter(logging.Formatter):
    """Escapes control characters in the message, so a value from a request (a path
    with %0a in it, say) can never start a line of its own that reads like a real
    entry. A traceback still follows on its own lines, as Python prints it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))
