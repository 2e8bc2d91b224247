"""URL converters shared by every app's urls.py (registered in ConsoleConfig.ready)."""

from __future__ import annotations


class RowId:
    """A primary key in a path: at most 18 digits, so always within a 64-bit integer.

    Django's `int` converter takes any run of digits, and one beyond 2**63 makes the
    database driver raise (a 500) instead of the view answering "not found".
    """

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
