"""What every piece of client input must satisfy before it reaches PostgreSQL, a cache key or the
file system.

Each check here stands for a 500 that a hostile run found (issue 14): psycopg refuses NUL bytes in
text parameters, ``str.encode()`` (cache keys, hashes) refuses unpaired surrogates, jsonb refuses
NaN/Infinity, and the kernel refuses path components over 255 bytes (ENAMETOOLONG) or paths over
PATH_MAX. Rejecting them at the edge turns each into a typed 4xx instead of a traceback deep down.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

MAX_COMPONENT_BYTES = 255
"""NAME_MAX on every file system Lookalike serves from; longer names cannot exist there."""
MAX_PATH_BYTES = 1024
"""Far below PATH_MAX (4096) once joined to a root, and far above any real image or asset path."""
MAX_JSON_DEPTH = 32
"""Attributes nest a level or two; deeper input is an attack on the recursion, not a catalog."""


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or hashed, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if value.isascii():  # the common case, and no copy: only non-ASCII text can hold a surrogate
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (it contains an unpaired surrogate)"
    return None


def check_text(value: str | None) -> str | None:
    """A pydantic ``AfterValidator`` for plain (optional) string fields: form fields, query strings."""
    if value is None:
        return value
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_value(value: Any, depth: int = 0) -> Any:
    """Validate any parsed JSON value (an ``attributes`` object, a list of categories): every string
    and key passes :func:`text_problem`, every number is finite, nesting is bounded."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must not contain NaN or Infinity (JSON has no such numbers)")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("must be a finite number")
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key)
            check_value(item, depth + 1)
        return value
    if isinstance(value, list | tuple):
        for item in value:
            check_value(item, depth + 1)
        return value
    return value  # nested models validate themselves; other types are checked by their own field


def path_problem(path: str, query_string: bytes = b"") -> tuple[int, str, str] | None:
    """Why a request's URL can name nothing on this server: ``(status, code, message)``, or None.

    Applied to every request (api/http_errors.py) so no route has to remember it: a NUL byte in the
    path or in a query parameter is a malformed request (400; no text column can hold it), a path
    component no file system can hold names nothing (404).
    """
    if "\x00" in path:
        return 400, "invalid_path", "the request path must not contain NUL (%00) bytes"
    if b"%00" in query_string:  # a raw NUL cannot reach here: the HTTP parser refuses it
        return 400, "invalid_query", "query parameters must not contain NUL (%00) bytes"
    for part in path.split("/"):
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            return (
                404,
                "not_found",
                f"nothing here: a path component is longer than {MAX_COMPONENT_BYTES} bytes",
            )
    return None


def relative_path_problem(relative: str) -> str | None:
    """Why ``relative`` cannot name a file (NUL, bad Unicode, too long), or None."""
    problem = text_problem(relative)
    if problem is not None:
        return problem
    if len(relative.encode("utf-8")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part.encode("utf-8")) > MAX_COMPONENT_BYTES for part in relative.split("/")):
        return f"has a path component longer than {MAX_COMPONENT_BYTES} bytes"
    return None


def resolve_under(root: Path, relative: str) -> Path | None:
    """``root / relative`` as an existing regular file inside ``root``, or None.

    None covers every way the name can fail, including the ones that would raise (NUL bytes,
    over-long names, ELOOP, EACCES), so callers answer 404 instead of 500.
    """
    if not relative or relative_path_problem(relative) is not None:
        return None
    try:
        base = root.resolve()
        file = (base / relative).resolve()
        if not file.is_relative_to(base) or not file.is_file():
            return None
    except (OSError, ValueError):
        return None
    return file
