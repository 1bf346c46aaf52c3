"""A run directory: the files each step reads and writes (docs/CONTRACTS.md), in one place.

Every step of :mod:`labeltriage.api` takes a run directory; :class:`RunDir` names its files,
reads tables through the one reader (:func:`pipelines.io.read_table`: one missing-value rule,
one error format), and resolves the run's task config once: an explicit path, else the one
``prelabel`` recorded in ``run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltriage.errors import ConfigError, InputError

if TYPE_CHECKING:
    import pandas as pd

    from labeltriage.config import TaskConfig


class RunDirError(InputError):
    """A run directory's file is missing or malformed; the message names the file and the step to run."""


# file name -> the command that writes it (the fix named when it is missing)
FILES: dict[str, str] = {
    "prelabels.parquet": "labeltriage prelabel CONFIG INPUT --output {run}",
    "run.json": "labeltriage prelabel CONFIG INPUT --output {run}",
    "calibrator.json": "labeltriage calibrate {run} --gold FILE",
    "calibration.json": "labeltriage calibrate {run} --gold FILE",
    "reliability.png": "labeltriage calibrate {run} --gold FILE",
    "routed.parquet": "labeltriage route {run}",
    "routing.json": "labeltriage route {run}",
    "embeddings.npy": "labeltriage push {run}",
    "embeddings_ids.json": "labeltriage push {run}",
    "push.json": "labeltriage push {run}",
    "push_checkpoint.json": "labeltriage push {run}",
    "responses.parquet": "labeltriage pull {run}",
    "pull.json": "labeltriage pull {run}",
    "agreement.json": "labeltriage agreement {run}",
    "loop.json": "labeltriage loop {run}",
}


class RunDir:
    """One run directory. ``RunDir(path) / "routed.parquet"`` is the file's path.

    Parameters
    ----------
    path : the directory given to ``prelabel --output`` (created by ``prelabel`` only).
    config : a task config path that overrides the one recorded in ``run.json``.
    """

    def __init__(self, path: str | Path, config: str | Path | None = None):
        self.path = Path(path)
        self._config_override = Path(config) if config is not None else None

    @property
    def config_override(self) -> Path | None:
        """The task config path the caller named (None: the one recorded in run.json)."""
        return self._config_override

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- files ------------------------------------------------------------------------------------
    def require(self, name: str) -> Path:
        """The path of ``name``; :class:`RunDirError` naming the step to run when it is missing."""
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: no such run directory; pass the directory given to `labeltriage prelabel`")
        path = self.path / name
        if not path.is_file():
            step = FILES.get(name, "the step that writes it").format(run=self.path)
            raise RunDirError(f"{path} not found: run `{step}` first")
        return path

    def table(self, name: str, required_columns: tuple[str, ...] = ()) -> pd.DataFrame:
        """Read a table of the run (parquet) through the one reader; checks ``required_columns``."""
        from pipelines.io import read_table

        path = self.require(name)
        frame = read_table(path)
        missing = [c for c in required_columns if c not in frame.columns]
        if missing:
            step = FILES.get(name, "the step that writes it").format(run=self.path)
            raise RunDirError(f"{path} lacks column(s) {missing}: rerun `{step}`")
        return frame

    def json(self, name: str, default: Any = None) -> Any:
        """A JSON file of the run; ``default`` when it is absent (an error when ``default`` is None)."""
        path = self.path / name
        if not path.is_file():
            if default is not None:
                return default
            self.require(name)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            step = FILES.get(name, "the step that writes it").format(run=self.path)
            raise RunDirError(f"{path}: not valid JSON ({exc}); rerun `{step}`") from exc

    # -- the task config --------------------------------------------------------------------------
    def config_path(self) -> Path | None:
        """The task config: the override, else ``run.json``'s ``config`` if that file still exists."""
        if self._config_override is not None:
            return self._config_override
        recorded = self.json("run.json", default={}).get("config") if (self.path / "run.json").is_file() else None
        if not isinstance(recorded, str) or not recorded:
            return None
        candidate = Path(recorded)
        if not candidate.is_absolute() and not candidate.exists():
            candidate = self.path / recorded
        return candidate if candidate.is_file() else None

    def task_config(self) -> TaskConfig:
        """The run's validated task config; :class:`ConfigError` naming the fix when there is none."""
        from labeltriage.config import load_task_config

        path = self.config_path()
        if path is None:
            recorded = self.json("run.json", default={}).get("config") if (self.path / "run.json").is_file() else None
            why = f"the task config it records ({recorded}) is gone" if recorded else "it records no task config"
            raise ConfigError(
                f"{self.path / 'run.json'}: {why}; pass --config datasets_config/<task>.yaml (config= in Python)"
            )
        return load_task_config(path)

    def task_config_or_none(self) -> TaskConfig | None:
        """The run's task config, or None when none is recorded (steps that can do without one)."""
        try:
            return self.task_config()
        except ConfigError:
            if self._config_override is not None:
                raise  # a config the user named must be valid
            return None
