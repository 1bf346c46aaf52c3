"""Arguments and options several commands share; a missing path is the library's InputError (exit 65).

click's own ``Path(exists=True)`` check exits 2 (a usage error) with a multi-line message; a file
that is not there is an input problem, said in one line with the fix, as every other input error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import click

from labeltriage.errors import InputError


class ExistingPath(click.ParamType):
    """A path that must exist, as a file, a directory or either."""

    name = "path"

    def __init__(self, kind: Literal["file", "dir", "any"], what: str, fix: str):
        self.kind, self.what, self.fix = kind, what, fix

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        wrong_kind = (self.kind == "file" and path.is_dir()) or (self.kind == "dir" and path.is_file())
        if not path.exists() or wrong_kind:
            found = "is a directory" if path.is_dir() else "is a file" if path.exists() else "no such path"
            raise InputError(f"{path}: {found}, expected {self.what}. Fix: {self.fix}")
        return path


RUN_DIR = ExistingPath("dir", "a run directory", "pass the --output directory of `labeltriage prelabel`")

run_dir_argument = click.argument("run_dir", type=RUN_DIR)

config_option = click.option(
    "--config",
    default=None,
    help="Task config: a YAML path or a shipped name (sentiment, sentiment_3class, aspects). Default: the one "
    "recorded in RUN_DIR/run.json.",
)

gold_option = click.option(
    "--gold",
    type=ExistingPath("file", "a gold file", "pass a CSV, JSONL, JSON or parquet file of labelled records"),
    default=None,
    help="Gold labels (CSV, JSONL, JSON or parquet). Default: prelabels' gold_label column (route: the file "
    "`calibrate` used).",
)
