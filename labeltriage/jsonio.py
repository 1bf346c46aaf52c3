"""Strict JSON for every file labeltriage writes (RFC 8259: no NaN, no Infinity).

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which other parsers (JavaScript,
``jq``, Go, Rust's serde) refuse. Everything the product writes goes through :func:`dumps` or
:func:`write_json`: a non-finite float becomes ``null`` (its meaning is "not defined" or "not
reachable"; readers treat ``null`` so), numpy scalars and arrays become Python numbers and lists,
and ``json.dumps(..., allow_nan=False)`` guards the result.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

import numpy as np


def to_strict(obj: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """``obj`` with only JSON types: non-finite floats -> ``None``, numpy -> Python, keys -> str.

    Tuples and sets become lists, paths become strings, dates ISO strings, dataclasses dicts.
    An object of any other type goes through ``default`` (if given) and the result is converted in
    turn. Raises ``TypeError`` for a type it cannot convert (like ``json.dumps``).
    """
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_strict(obj.item(), default)
    if isinstance(obj, np.ndarray):
        return [to_strict(v, default) for v in obj.tolist()]
    if isinstance(obj, Mapping):
        return {str(k): to_strict(v, default) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_strict(v, default) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_strict(asdict(obj), default)
    if default is not None:
        return to_strict(default(obj))
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """Strict JSON text of ``obj`` (see :func:`to_strict`); extra keywords go to ``json.dumps``.

    Raises:
        TypeError: a value :func:`to_strict` cannot convert.
    """
    return json.dumps(to_strict(obj, default), indent=indent, allow_nan=False, **kwargs)


def write_json(
    path: str | Path,
    obj: Any,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    mode: int = 0o644,
) -> Path:
    """Write ``obj`` to ``path`` as strict JSON with a final newline; returns the path.

    The text goes to a temporary file in the same directory that then replaces ``path``, so a
    reader (or a resumed run reading a checkpoint) never sees half a file. ``mode`` is the new
    file's permission bits (before the umask), e.g. ``0o600`` for a file that holds a secret.

    Raises:
        TypeError: a value :func:`to_strict` cannot convert (nothing is written then).
        OSError: the directory is missing or not writable.
    """
    path = Path(path)
    text = dumps(obj, indent=indent, default=default) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path
