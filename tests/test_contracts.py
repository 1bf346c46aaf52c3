"""docs/CONTRACTS.md names every file a run directory holds, and the code writes no other (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = {"final.parquet", "adjudication.parquet", "agreement.json", "README.md"}


def documented_run_files() -> set[str]:
    """The file names in the first column of CONTRACTS.md's run-directory table."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    section = text.split("## A run directory", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def test_contracts_list_every_file_the_code_names() -> None:
    from labeltriage.rundir import FILES
    from pipelines.batch import JOBS_FILE
    from pipelines.prelabeller import CACHE_FILE

    written = set(FILES) | {JOBS_FILE, CACHE_FILE} | PUBLISHED
    assert documented_run_files() == written


def test_a_run_directory_holds_only_documented_files(tmp_path: Path) -> None:
    """Every file name the run-directory code can write (string literals next to a run path) is documented."""
    literals: set[str] = set()
    for package in ("labeltriage", "pipelines", "curation"):
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text()
            literals.update(re.findall(r'(?:run_dir|run|out|output_dir) / "([\w./-]+\.(?:json|jsonl|parquet|npy|png))"',
                                       source))  # fmt: skip
    assert literals, "the pattern found nothing: it no longer matches how the code names run files"
    assert literals <= documented_run_files(), literals - documented_run_files()
