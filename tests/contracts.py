"""Helpers for the contract tests of the private library internals Switchboard relies on.

Each module that reaches into a library's private parts has a test that checks those
parts against the installed library and the pin in pyproject.toml, and fails with a
message naming the library, its version and the private name (README: "Private
internals we rely on").
"""

from __future__ import annotations

import hashlib
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def pinned(distribution: str) -> Requirement:
    """The requirement pyproject.toml declares for `distribution` (a direct dependency)."""
    for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == canonicalize_name(distribution):
            return requirement
    raise AssertionError(f"{distribution} is not a direct dependency in pyproject.toml")


def source_sha256(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()


def assert_source_unchanged(
    obj: Any, expected_sha256: str, *, distribution: str, checked: str, user: str
) -> None:
    """Fail unless `obj`'s source is the one `user` was written against (`distribution`
    at version `checked`)."""
    actual = source_sha256(obj)
    assert actual == expected_sha256, (
        f"{distribution} {version(distribution)}: {obj.__module__}.{obj.__qualname__} is not "
        f"the code {user} was written against ({distribution} {checked}, sha256 "
        f"{expected_sha256[:12]}…, now {actual[:12]}…). Read the new source, carry its "
        f"change into {user} (or drop the override), then update the hash in this test."
    )


def assert_parameters(obj: Any, expected: list[str], *, distribution: str, user: str) -> None:
    """Fail unless `obj` takes exactly the parameters `user` passes it."""
    actual = list(inspect.signature(obj).parameters)
    assert actual == expected, (
        f"{distribution} {version(distribution)}: {obj.__module__}.{obj.__qualname__} now "
        f"takes ({', '.join(actual)}), {user} calls it as ({', '.join(expected)})."
    )


def assert_reads(obj: Any, fragment: str, *, distribution: str, user: str) -> None:
    """Fail unless `obj`'s source still contains `fragment` (a private name `user` sets or
    replaces, in the place where the library uses it)."""
    assert fragment in inspect.getsource(obj), (
        f"{distribution} {version(distribution)}: {obj.__module__}.{obj.__qualname__} no "
        f"longer uses `{fragment}`, which {user} relies on."
    )
