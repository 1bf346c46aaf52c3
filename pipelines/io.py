"""Read every table the product is given (records to label, gold labels): one reader, one rule.

Formats: CSV, TSV, JSONL/NDJSON, JSON (a list of objects), Parquet (each optionally ``.gz`` /
``.bz2`` for the text formats) and a directory saved by ``datasets.Dataset.save_to_disk``.

**Encoding.** Text formats are read as UTF-8 (a BOM is dropped). A file that is not valid UTF-8
is decoded with the encoding detected by ``charset_normalizer`` (the detector ``requests`` uses;
windows-1252 wins ties, as legacy Western text is the common case), unless ``encoding=`` names
one; the encoding used is in ``frame.attrs["encoding"]`` so the caller can say so.

**Missing values** (the one rule, for every format and column): a cell is missing when the
format says null (JSON ``null``, Parquet null, NaN) or when its text, stripped of whitespace, is
empty or one of ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``<NA>`` (any case). Missing cells
are ``None`` in the returned frame. Every other cell of a CSV/TSV is kept as the string it is
(``007`` stays ``007``).

**Records** (:func:`load_records`): one row per input row, in input order. ``id`` is the user's
own id column when given (``id_column=``; unique and never missing), else a stable hash of
(source, text); the k-th repeat of a text (k >= 1) gets the hash of (source, text, k), so every
row has its own id, and ``duplicate_of`` names the id of the text's first row (one model call
per distinct text; reviewers see a text once; see docs/CONTRACTS.md). Gold labels come from a
column ``gold_label``, else ``label`` (the same convention as a separate gold file). Every other
column is the user's and is kept to the published dataset, renamed ``input_<name>`` when it
clashes with a column the product writes.

Errors are :class:`InputError`: one line naming the file, the place (line, column, byte) and
the fix.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from labeltriage.errors import InputError  # the one error tree; re-exported for callers of pipelines.io

GOLD_COLUMNS = ("gold_label", "label")
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "<na>"})
# Columns the product writes somewhere between prelabels.parquet and the published dataset; a user
# column of the same name is kept as input_<name>.
RESERVED_COLUMNS = frozenset(
    {
        "id", "text", "source", "gold_label", "duplicate_of", "llm_label", "llm_confidence", "confidence_stated",
        "confidence_logprob", "confidence_consistency", "confidence_distribution", "label_distribution", "reasoning",
        "model", "prompt_hash", "input_tokens",
        "output_tokens", "cost_usd", "status", "error", "raw_output", "confidence_kind", "truncated", "attempts",
        "consistency_labels", "instruction_like", "calibrated_confidence", "route", "priority", "label",
        "label_source", "confidence", "agreement", "n_reviewers",
    }
)  # fmt: skip
FORMATS = ".csv, .tsv, .jsonl, .json, .parquet (text formats may end in .gz or .bz2) or a saved `datasets` dataset"


def record_id(source: str, text: str, occurrence: int = 0) -> str:
    """Stable id: a hash of (source, text), and of the occurrence for a repeated text (k >= 1)."""
    key = f"{source}\x1f{text}" if occurrence == 0 else f"{source}\x1f{text}\x1f{occurrence}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def is_missing(value: Any) -> bool:
    """The module's missing-value rule for one cell (see the module docstring)."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    if isinstance(value, str):
        return value.strip().lower() in MISSING_MARKERS
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays and other containers are values, not missing
        return False


def _normalise_missing(frame: pd.DataFrame) -> pd.DataFrame:
    columns = {
        column: pd.Series([None if is_missing(v) else v for v in frame[column]], index=frame.index, dtype=object)
        for column in frame.columns
    }
    return pd.DataFrame(columns, index=frame.index)


def _format_of(path: Path) -> tuple[str, str | None]:
    """(format, compression) from the file name."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in (".gz", ".bz2"):
        compression = suffixes.pop()[1:]
    fmt = suffixes[-1] if suffixes else ""
    aliases = {".ndjson": ".jsonl", ".txt": ".csv"}
    return aliases.get(fmt, fmt), compression


def _decode(path: Path, raw: bytes, encoding: str | None) -> tuple[str, str]:
    """The file's text and the encoding used."""
    if encoding:
        try:
            return raw.decode(encoding), encoding
        except LookupError:
            raise InputError(f"{path}: unknown encoding {encoding!r}. Fix: pass e.g. --encoding latin-1") from None
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: not {encoding} ({_where(raw, exc.start)}). Fix: pass the file's real --encoding"
            ) from None
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    import charset_normalizer

    matches = charset_normalizer.from_bytes(raw)
    best = matches.best()
    if best is None or best.encoding is None:
        raise InputError(
            f"{path}: not UTF-8 ({_where(raw, first_bad)}) and no encoding could be detected. "
            "Fix: save it as UTF-8 or pass --encoding NAME"
        )
    # Short Western texts score the same under several code pages (cp1250 turns "crème" into
    # "crčme"); among equally good matches prefer windows-1252, the WHATWG Encoding Standard's
    # decoder for legacy "latin1" text.
    tied = [m for m in matches if m.chaos == best.chaos and m.coherence == best.coherence]
    western = next((m for m in tied if "cp1252" in m.could_be_from_charset), None)
    if western is not None:
        return raw.decode("cp1252"), "cp1252"
    return str(best), best.encoding


def _where(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    return f"byte 0x{raw[offset]:02x} on line {line}"


def read_table(path: str | Path, *, encoding: str | None = None) -> pd.DataFrame:
    """Read a table by the module's rules.

    Args:
        path: a file (see :data:`FORMATS`) or a saved ``datasets`` directory.
        encoding: the text encoding of CSV/TSV/JSON(L); default UTF-8, else detected.

    Returns:
        A frame of object columns, missing cells ``None``; ``attrs["encoding"]`` is the text
        encoding used (``None`` for Parquet and datasets), ``attrs["encoding_detected"]`` says
        whether it was guessed (not UTF-8 and no ``encoding`` given).

    Raises:
        InputError: the file is missing, of an unknown kind, or malformed (the message names the
            line or byte and the fix).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory. Fix: pass a {FORMATS}")
    if path.is_dir():
        frame, used = _read_saved_dataset(path), None
    else:
        fmt, compression = _format_of(path)
        if fmt == ".parquet":
            frame, used = read_parquet(path), None
        elif fmt in (".csv", ".tsv", ".jsonl", ".json"):
            raw = path.read_bytes()
            try:
                if compression == "gz":
                    raw = gzip.decompress(raw)
                elif compression == "bz2":
                    raw = bz2.decompress(raw)
            except (OSError, EOFError, ValueError) as exc:
                raise InputError(
                    f"{path}: not a complete {compression} file ({exc}). Fix: compress it again, or pass it as is"
                ) from None
            text, used = _decode(path, raw, encoding)
            if fmt == ".jsonl":
                frame = _parse_jsonl(path, text)
            elif fmt == ".json":
                frame = _parse_json(path, text)
            else:
                frame = _parse_delimited(path, text, "\t" if fmt == ".tsv" else ",")
        else:
            raise InputError(f"{path}: unknown format {path.suffix!r}. Fix: use a {FORMATS}")
    frame = _normalise_missing(frame)
    frame.columns = [str(c) for c in frame.columns]
    frame.attrs["encoding"] = used
    frame.attrs["encoding_detected"] = used not in (None, "utf-8") and encoding is None
    return frame


def _read_saved_dataset(path: Path) -> pd.DataFrame:
    if not any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise InputError(f"{path}: a directory but not a saved `datasets` dataset (no dataset_info.json)")
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    return loaded.to_pandas()


def read_parquet(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A Parquet file as written, column types kept (run directories' own files); :class:`InputError`
    naming the file and the fix when it is not readable. :func:`read_table` adds the input rules.

    ``columns``: read only these of the file's columns (names the file lacks are skipped, not an
    error), so a step that needs three columns of a 500,000-row table does not load the rest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if columns is not None:
            present = set(pq.read_schema(path).names)
            return pd.read_parquet(path, columns=[c for c in columns if c in present])
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(
            f"{path}: not a readable Parquet file ({message}). Fix: rewrite it with pandas/pyarrow, or use CSV/JSONL"
        ) from None


def _parse_delimited(path: Path, text: str, sep: str) -> pd.DataFrame:
    if not text.strip():
        raise InputError(f"{path}: the file is empty. Fix: a header line with the column names, then one row per line")
    kind = "TSV" if sep == "\t" else "CSV"
    fix = (
        'Fix: quote every field that holds the delimiter, a quote or a newline ("...", with "" inside), as '
        "spreadsheet programs write CSV"
    )
    # pandas turns surplus fields of the first data row into an index, shifting every value one
    # column left without a word: count the fields of every row first
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    try:
        header = next(reader)
        for row in reader:
            if len(row) > len(header):
                raise InputError(
                    f"{path}: malformed {kind}: line {reader.line_num} has {len(row)} fields, the header has "
                    f"{len(header)}. {fix}"
                )
    except csv.Error as exc:
        raise InputError(f"{path}: malformed {kind}: {exc} (line {reader.line_num}). {fix}") from None
    if len(header) == 1 and sep == ",":
        other = next((d for d in (";", "\t", "|") if d in header[0]), None)
        if other is not None:
            shown = "tab" if other == "\t" else repr(other)
            raise InputError(
                f"{path}: the header {header[0]!r} has no comma but {shown}: the file looks {shown}-separated. "
                "Fix: save it comma-separated, or tab-separated with the extension .tsv"
            )
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.ParserError as exc:
        message = str(exc).strip().splitlines()[-1]
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if match:
            want, line, got = match.groups()
            message = f"line {line} has {got} fields, the header has {want}"
        raise InputError(f"{path}: malformed {kind}: {message}. {fix}") from None
    if frame.empty:
        raise InputError(f"{path}: a header but no records. Fix: one record per line after the header")
    return frame


_ONE_PER_LINE = "Fix: one JSON object per line"


def _parse_jsonl(path: Path, text: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}). {_ONE_PER_LINE}"
            ) from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object. {_ONE_PER_LINE}")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no records. {_ONE_PER_LINE}")
    return pd.DataFrame.from_records(rows)


def _parse_json(path: Path, text: str) -> pd.DataFrame:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} on line {exc.lineno}, column {exc.colno}). "
            "Fix: a JSON list of objects, or use JSONL"
        ) from None
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return pd.DataFrame.from_records(data)
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return pd.DataFrame(data)
    raise InputError(f"{path}: expected a JSON list of objects (one per record). Fix: write it so, or use JSONL")


def gold_column_of(frame: pd.DataFrame, requested: str | None, path: str | Path) -> str:
    """The column holding gold labels: ``requested``, else ``gold_label``, else ``label``.

    Raises:
        InputError: ``requested`` is not a column, or neither default exists.
    """
    if requested:
        if requested not in frame.columns:
            raise InputError(
                f"{path}: no column {requested!r} (columns: {', '.join(frame.columns)}). Fix: pass --gold-column NAME"
            )
        return requested
    for column in GOLD_COLUMNS:
        if column in frame.columns:
            return column
    raise InputError(
        f"{path}: no gold label column (looked for {' or '.join(GOLD_COLUMNS)}; columns: {', '.join(frame.columns)}). "
        "Fix: pass --gold-column NAME"
    )


def load_records(
    path: str | Path,
    text_column: str = "text",
    source: str | None = None,
    limit: int | None = None,
    *,
    id_column: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """The records to label, one row per input row (see the module docstring).

    Returns:
        Columns ``id, text, source, duplicate_of`` (+ ``gold_label`` when the input has
        ``gold_label`` or ``label``) + the user's other columns. ``attrs``: ``encoding``,
        ``gold_column`` (the input column gold came from, or None), ``input_columns`` (user
        column name -> its name in the frame).

    Raises:
        InputError: unreadable input, no text column, or a bad ``id_column``.
    """
    frame = read_table(path, encoding=encoding)
    if text_column not in frame.columns:
        raise InputError(
            f"{path}: no column '{text_column}' (columns: {', '.join(map(str, frame.columns))}). "
            "Fix: pass --text-column NAME or set text_column in the task config"
        )
    if limit is not None:
        frame = frame.head(limit)
    frame = frame.reset_index(drop=True)
    source = source or Path(path).name
    texts = ["" if v is None else str(v) for v in frame[text_column]]
    if "source" in frame.columns:
        sources = ["" if v is None else str(v) for v in frame["source"]]
    else:
        sources = [source] * len(frame)
    out = pd.DataFrame({"text": texts, "source": sources}, dtype=object)

    keys = list(zip(sources, texts, strict=True))
    if id_column is not None:
        ids = user_ids(frame, id_column, path)
    else:
        seen: dict[tuple[str, str], int] = {}
        ids = []
        for s, t in keys:
            ids.append(record_id(s, t, seen.get((s, t), 0)))
            seen[(s, t)] = seen.get((s, t), 0) + 1
    first_id: dict[tuple[str, str], str] = {}
    duplicate_of: list[str | None] = []
    for key, rid in zip(keys, ids, strict=True):
        duplicate_of.append(first_id.get(key))
        first_id.setdefault(key, rid)
    out.insert(0, "id", ids)
    out["duplicate_of"] = duplicate_of

    gold_column = next((c for c in GOLD_COLUMNS if c in frame.columns and c != text_column), None)
    if gold_column is not None:
        out["gold_label"] = frame[gold_column].map(lambda v: None if v is None else str(v).strip())
    used = {text_column, "source", id_column, gold_column} - {None}
    renamed: dict[str, str] = {}
    for column in frame.columns:
        if column in used:
            continue
        name = f"input_{column}" if column in RESERVED_COLUMNS else column
        while name in out.columns or name in RESERVED_COLUMNS:
            name = f"input_{name}"
        renamed[column] = name
        out[name] = frame[column].to_numpy()
    out.attrs.update(
        encoding=frame.attrs.get("encoding"),
        encoding_detected=frame.attrs.get("encoding_detected", False),
        gold_column=gold_column,
        input_columns=renamed,
    )
    return out


def user_ids(frame: pd.DataFrame, id_column: str, path: str | Path, option: str = "--id-column") -> list[str]:
    """The ids of ``frame[id_column]`` as text; raises InputError (naming ``option``, the way the
    ids were asked for) for a missing column, an empty id or a repeated one."""
    if id_column not in frame.columns:
        raise InputError(
            f"{path}: no column {id_column!r} for {option} (columns: {', '.join(map(str, frame.columns))})"
        )
    values = frame[id_column]
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise InputError(
            f"{path}: column {id_column!r} is empty in {len(missing)} row(s) (first: data row {missing[0] + 1}). "
            f"Fix: give every row an id, or leave out {option} for generated ids"
        )
    ids = [str(v) for v in values]
    counts = pd.Series(ids).value_counts()
    dups = counts[counts > 1]
    if len(dups):
        example = dups.index[0]
        rows = [i + 1 for i, v in enumerate(ids) if v == example][:3]
        raise InputError(
            f"{path}: column {id_column!r} has {len(dups)} repeated value(s) (e.g. {example!r} in data rows "
            f"{', '.join(map(str, rows))}). Fix: ids must be unique, or leave out {option} for generated ids"
        )
    return ids
