"""Per-record result cache: append-only JSONL keyed by (prompt hash, model, text, settings).

Robust to interruption: every batch is appended and fsync'ed as it finishes; a torn last line
(killed mid-write) is skipped on load. The last entry for a key wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from labeltriage.jsonio import dumps


def cache_key(*parts: Any) -> str:
    """32 hex characters (128 bits of SHA-256) of ``parts`` as canonical JSON (sorted keys, ``str`` for the rest)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class RecordCache:
    """The cache file at ``path``, loaded into memory: key -> the cached row (a JSON object).

    ``torn_lines`` counts the lines skipped on load (unreadable, e.g. cut by a kill mid-write).
    A missing file is an empty cache; the file and its folder are created by the first write.
    """

    def __init__(self, path: Path) -> None:
        """Load ``path`` if it exists (``OSError`` if it cannot be read)."""
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        self._entries[entry["key"]] = entry["value"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.torn_lines += 1

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        """The row cached under ``key``, or None."""
        return self._entries.get(key)

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Append ``items`` (key -> row) to the file as one fsync'ed write, then to memory."""
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for key, value in items.items():
                line = dumps({"key": key, "value": value}, indent=None, ensure_ascii=False, default=str)
                handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._entries.update(items)
