"""Input hygiene shared by every way in (HTTP bodies, query strings, socket frames).

Both databases must store what we accept: PostgreSQL refuses NUL in text, and a lone surrogate
("\\ud800", legal in JSON, not in UTF-8) cannot be encoded at all. Deep nesting and huge free-form
objects cost memory and time for nothing. So these are refused up front with a 422 (an `error`
event on a socket) naming the field, instead of failing later as a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 20  # nesting of a free-form object (metadata); frames and bodies get the same
MAX_OBJECT_BYTES = 16 * 1024  # a free-form object (metadata) once serialised
MAX_INT = 2**31 - 1  # fits INTEGER on both databases


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def find_problems(value: Any, path: str = "", depth: int = 0) -> dict[str, str]:
    """Every string (keys included) that cannot be stored, and nesting beyond MAX_DEPTH."""
    problems: dict[str, str] = {}
    if depth > MAX_DEPTH:
        return {path or "body": f"is nested more than {MAX_DEPTH} levels deep"}
    if isinstance(value, str):
        why = text_problem(value)
        if why:
            problems[path or "body"] = why
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and text_problem(key):
                problems[sub] = "has a key that " + (text_problem(key) or "")
            problems.update(find_problems(item, sub, depth + 1))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems.update(find_problems(item, f"{path}[{i}]", depth + 1))
    elif isinstance(value, float) and not math.isfinite(value):
        problems[path or "body"] = "is not a finite number"
    return problems


def object_too_large(value: Any) -> bool:
    """A free-form object whose JSON form is above MAX_OBJECT_BYTES."""
    try:
        return (
            len(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")) > MAX_OBJECT_BYTES
        )
    except (TypeError, ValueError):
        return True


def finite_float(text: str) -> float:
    """`json.loads(parse_float=…)`: `1e999` would become Infinity, which no client can echo."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def reject_constant(name: str) -> float:
    """`json.loads(parse_constant=…)`: NaN and Infinity are not JSON a browser can read."""
    raise ValueError(f"{name} is not a finite number")
