"""A run directory: the files each step reads and writes (docs/CONTRACTS.md), in one place.

Every step of :mod:`labeltriage.api` takes a run directory; :class:`RunDir` names its files,
reads its tables with their types as written (:func:`pipelines.io.read_parquet`, one error
format), gathers what publish reads (:meth:`RunDir.publish_files`), and resolves the run's task
config once: an explicit path or shipped name, else the one ``prelabel`` recorded in ``run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeltriage.errors import ConfigError, InputError

if TYPE_CHECKING:
    import pandas as pd

    from curation.publish import RunFiles
    from labeltriage.config import TaskConfig


class RunDirError(InputError):
    """A run directory's file is missing or malformed; the message names the file and the step to run."""


ASSISTED_SHOWN_FILE = "assisted_shown.json"  # ids pushed with the LLM's suggestion, ever (push keeps it)
BLIND_SHOWN_FILE = "blind_shown.json"  # ids pushed blind, ever
REASONING_FILE = "reasoning.parquet"  # reasoning asked for at push time (labeltriage.reasoning)
STUDENT_LABELS_FILE = "student_labels.parquet"  # the student's certified labels (labeltriage.student_labels)
STUDENT_REPORT_FILE = "student.json"
STUDENT_LABELS_REQUIRED = ("id", "student_label", "student_confidence", "accepted")


def routing_identity(routing: dict[str, Any]) -> str:
    """A digest of what a route decided (its threshold, whether it applies, a stop, the route
    counts): student.json records it, and publish refuses student labels made for another routing."""
    import hashlib

    decided = {k: routing.get(k) for k in ("method", "threshold", "applied", "auto_accept_stopped", "routes")}
    return hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mixed_confidence_kinds(prelabels: Any) -> dict[str, int]:
    """``{kind: ok records}`` when the ok pre-labels' ``llm_confidence`` mixes kinds (the backend
    gave no log-probs for some records), else ``{}``. A score mixing kinds certifies neither:
    calibrate, route and second-opinion refuse it, each naming its own fix."""
    if "confidence_kind" not in prelabels.columns:
        return {}
    ok = prelabels["status"].astype(str).eq("ok")
    kinds = prelabels.loc[ok, "confidence_kind"].dropna().value_counts()
    return {str(kind): int(n) for kind, n in kinds.items()} if len(kinds) > 1 else {}


# file name -> the command that writes it (the fix named when it is missing)
FILES: dict[str, str] = {
    "prelabels.parquet": "labeltriage prelabel CONFIG INPUT --output {run}",
    "run.json": "labeltriage prelabel CONFIG INPUT --output {run}",
    "examples_pool.parquet": "labeltriage prelabel CONFIG INPUT --output {run} (with retrieval.k > 0)",
    "gold_draw.json": "labeltriage gold draw {run} --n N",
    "gold_push.json": "labeltriage gold draw {run} --n N",
    "gold.parquet": "labeltriage gold collect {run}",
    "gold_collect.json": "labeltriage gold collect {run}",
    "calibrator.json": "labeltriage calibrate {run} --gold FILE",
    "calibration.json": "labeltriage calibrate {run} --gold FILE",
    "reliability.png": "labeltriage calibrate {run} --gold FILE",
    "combined_confidence.parquet": "labeltriage calibrate {run} --confidence-column confidence_combined",
    "cascade_confidence.parquet": "labeltriage second-opinion {run} --second SECOND",
    "second_opinion.json": "labeltriage second-opinion {run} --second SECOND",
    "routed.parquet": "labeltriage route {run}",
    "routing.json": "labeltriage route {run}",
    "embeddings.bin": "labeltriage push {run} (or loop, or calibrate --confidence-column confidence_combined)",
    "embeddings.lock": "labeltriage push {run} (the lock of embeddings.bin)",
    "push.json": "labeltriage push {run}",
    "assisted_shown.json": "labeltriage push {run}",
    "blind_shown.json": "labeltriage push {run}",
    "label_studio_push.json": "labeltriage label-studio push {run}",
    "label_studio_tasks.json": "labeltriage label-studio push {run}",
    "push_checkpoint.json": "labeltriage push {run}",
    "responses.parquet": "labeltriage pull {run}",
    "pull.json": "labeltriage pull {run}",
    "agreement.json": "labeltriage agreement {run}",
    "loop.json": "labeltriage loop {run}",
    "reasoning.parquet": "labeltriage push {run} (with model.generation.reasoning: review_only)",
    "student_labels.parquet": "labeltriage student-label {run}",
    "student.json": "labeltriage student-label {run}",
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

    def table(
        self, name: str, required_columns: tuple[str, ...] = (), columns: tuple[str, ...] | None = None
    ) -> pd.DataFrame:
        """Read a table of the run (Parquet); checks ``required_columns``. ``columns``: read only
        these (the required ones among them; names the file lacks are skipped).

        Run files are the product's own output: numeric and boolean types are kept (user inputs are
        normalised by :func:`pipelines.io.read_table` instead); text columns are Python objects with
        None for missing."""
        import pandas as pd

        from pipelines.io import read_parquet

        path = self.require(name)
        frame = read_parquet(path, columns)
        # text columns as Python objects, missing = None: pandas' string dtype keeps NaN through
        # `.where(notna, None)`, and a NaN gold label read as the label "nan"
        for column in frame.columns:
            if pd.api.types.is_string_dtype(frame[column].dtype) and frame[column].dtype != object:
                values = frame[column].astype(object)
                frame[column] = values.where(values.notna(), None)
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
        if candidate.is_file():
            return candidate
        from labeltriage.config import shipped_task_configs

        return shipped_task_configs().get(recorded)  # a shipped config recorded by its name

    def task_config(self) -> TaskConfig:
        """The run's validated task config; :class:`ConfigError` naming the fix when there is none.

        Raises :class:`RunDirError` when the directory has no run.json (not a run: prelabel first)."""
        from labeltriage.config import load_task_config

        path = self.config_path()
        if path is None:
            if self._config_override is None and not (self.path / "run.json").is_file():
                self.require("run.json")  # RunDirError: not a run directory (yet)
            recorded = self.json("run.json", default={}).get("config") if (self.path / "run.json").is_file() else None
            why = f"the task config it records ({recorded}) is gone" if recorded else "it records no task config"
            raise ConfigError(
                f"{self.path / 'run.json'}: {why}; pass --config <task config path or shipped name> (config= in Python)"
            )
        return load_task_config(path)

    def task_config_or_none(self) -> TaskConfig | None:
        """The run's task config, or None when the run records none (steps that can do without one).

        A config the run records (or the caller names) that is gone or invalid is an error, not a
        silent fall-back to defaults: :class:`ConfigError` with the fix."""
        recorded = self.json("run.json", default={}).get("config") if (self.path / "run.json").is_file() else None
        if self._config_override is None and not recorded:
            return None
        return self.task_config()

    # -- gold -------------------------------------------------------------------------------------
    def gold_labels(
        self, gold: str | Path | None = None, gold_column: str | None = None, notes: list[str] | None = None
    ) -> pd.Series:
        """Gold label per row of the run's prelabels (a Series aligned with prelabels.parquet, None where unknown).

        Gold comes from ``gold`` (a table matched by ``id``, else by ``text``), else from the input's
        gold column kept in prelabels.parquet. Column: ``gold_column``, else ``gold_label``, else
        ``label``. Labels are checked against the task's label set (:func:`curation.gold.check_gold_labels`).
        Notes for the user (conflicting or unmatched gold rows, labels read case-folded) are appended
        to ``notes``. Raises InputError.
        """
        import pandas as pd

        from curation.gold import check_gold_labels
        from pipelines.io import gold_column_of, read_table

        run = self
        notes = notes if notes is not None else []
        prelabels = run.table("prelabels.parquet", required_columns=("id", "llm_label", "status"))
        if gold is None:
            if "gold_label" not in prelabels.columns:
                raise InputError(
                    f"{run / 'prelabels.parquet'} has no gold labels (the input had no gold_label or label column): "
                    "pass --gold FILE (a CSV/JSONL/parquet with an `id` or `text` column and the gold label)"
                )
            source = f"{run / 'prelabels.parquet'} (column gold_label)"
            raw = prelabels["gold_label"].where(prelabels["gold_label"].notna(), None).tolist()
        else:
            table = read_table(gold)
            if table.empty:
                if Path(gold).resolve() == (run / "gold.parquet").resolve():  # collected before any answer
                    raise InputError(
                        f"{gold}: no drawn gold record is answered yet: answer them in Argilla, then run "
                        f"`labeltriage gold collect {run.path}`"
                    )
                raise InputError(f"{gold}: has no rows: give it an `id` or `text` column and a gold label per row")
            column = gold_column_of(table, gold_column, gold)
            if "id" in table.columns and table["id"].astype(str).isin(prelabels["id"].astype(str)).any():
                key = "id"
            elif "text" in table.columns and "text" in prelabels.columns:
                key = "text"
            elif "id" in table.columns:
                kept = " (your input's own `id` column was kept as `input_id`: pass --id-column id to prelabel)" if (
                    "input_id" in prelabels.columns) else ""  # fmt: skip
                raise InputError(
                    f"{gold}: none of its ids matches an id of prelabels.parquet{kept}; "
                    "or give the gold a `text` column"
                )
            else:
                raise InputError(
                    f"{gold}: needs an `id` (as in prelabels.parquet) or a `text` column to match the pre-labels"
                )
            table = table[table[column].notna() & table[key].notna()]
            keys = table[key].astype(str)
            conflicting = int((table.assign(_k=keys).groupby("_k")[column].nunique() > 1).sum())
            if conflicting:
                notes.append(f"note: {gold}: {conflicting} {key}(s) have conflicting gold labels; the last is used")
            mapping = dict(zip(keys, table[column].astype(str), strict=True))
            matched = set(prelabels[key].astype(str))
            unmatched = sum(1 for k in mapping if k not in matched)
            if unmatched == len(mapping):
                raise InputError(
                    f"{gold}: none of its {len(mapping)} labelled rows match a pre-label by {key!r}; "
                    "is it the gold for this run?"
                )
            if unmatched:
                notes.append(f"note: {gold}: {unmatched} of {len(mapping)} gold rows match no pre-label by {key!r}")
            source = str(gold)
            raw = [mapping.get(k) for k in prelabels[key].astype(str)]
        task = run.task_config_or_none()
        if task is None or task.task_type == "multi_label":  # then gold labels are compared as they are
            return pd.Series(raw, index=prelabels.index, dtype=object)
        checked = check_gold_labels(raw, task.label_names, source=source)
        if checked.mapped:
            shown = ", ".join(f"{k!r} -> {v!r}" for k, v in sorted(checked.mapped.items()))
            notes.append(f"note: gold labels read as task labels: {shown}")
        return pd.Series(checked.labels, index=prelabels.index, dtype=object)

    def shown(self) -> tuple[set[str], set[str]]:
        """``(assisted, blind)``: ids ever pushed with the LLM's suggestion (assisted_shown.json), and
        ids ever pushed blind and never with it (blind_shown.json minus the first)."""
        assisted = set(self.json(ASSISTED_SHOWN_FILE, default=[]))
        return assisted, set(self.json(BLIND_SHOWN_FILE, default=[])) - assisted

    def checkpoint_ids(self) -> set[str]:
        """Ids push_checkpoint.json lists as pushed, as written (the push itself trusts them only
        for the same dataset and while the server has them: ``argilla_io.pushed_ids``)."""
        return set((self.json("push_checkpoint.json", default={}) or {}).get("pushed") or {})

    def record_shown(self, assisted: set[str], blind: set[str]) -> None:
        """Add ids about to be pushed to assisted_shown.json / blind_shown.json (written before the
        push: a record counts as shown even when the push fails half-way)."""
        from labeltriage.jsonio import write_json

        for name, ids in ((ASSISTED_SHOWN_FILE, assisted), (BLIND_SHOWN_FILE, blind)):
            before = set(self.json(name, default=[]))
            if not ids <= before:
                write_json(self / name, sorted(before | ids), indent=None)

    def with_reasoning(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (with ``id``) whose missing ``reasoning`` is filled from reasoning.parquet
        (:mod:`labeltriage.reasoning`); unchanged when the run has none."""
        if not (self / REASONING_FILE).is_file():
            return frame
        extra = self.table(REASONING_FILE).drop_duplicates("id", keep="last").set_index("id")["reasoning"]
        added = frame["id"].astype(str).map(extra)
        current = frame["reasoning"] if "reasoning" in frame.columns else added.where(False)
        merged = current.where(current.notna(), added).astype(object)
        return frame.assign(reasoning=merged.where(merged.notna(), None))

    def routed_for_review(
        self, required_columns: tuple[str, ...] = ("id", "text", "route", "priority")
    ) -> pd.DataFrame:
        """routed.parquet as the review tools must show it: a record drawn as gold (gold_draw.json)
        or shown blind before (blind_shown.json, never assisted) is blind (``blind`` True) even
        when `route` ran after, so no push or feedback round ever puts the LLM's suggestion (or its
        own priority) on a record reviewers answered blind. A reasoning asked for at push time
        (reasoning.parquet) fills the record's ``reasoning``."""
        # reasoning asked for at push time (model.generation.reasoning: review_only) joins its record
        routed = self.with_reasoning(self.table("routed.parquet", required_columns=required_columns))
        keep_blind = set((self.json("gold_draw.json", default={}) or {}).get("ids") or []) | self.shown()[1]
        if keep_blind:
            earlier = routed["blind"].fillna(False).astype(bool) if "blind" in routed.columns else False
            routed = routed.assign(blind=routed["id"].astype(str).isin(keep_blind) | earlier)
        return routed

    # -- what publish reads -----------------------------------------------------------------------
    def publish_files(self) -> RunFiles:
        """Everything a publish reads: ``routed.parquet``, ``responses.parquet`` and the JSON side files.

        ``responses.parquet`` may be absent (nothing pulled yet: only auto-accepted labels publish);
        drafts and discarded answers are dropped (pull counts them; they are never labels). The task
        config is the run's (:meth:`task_config_or_none`); without one the categories are the
        observed labels. Raises :class:`RunDirError` naming the file and the step to rerun.
        """
        import pandas as pd

        from curation.publish import RESPONSES_REQUIRED, ROUTED_REQUIRED, RunFiles, normalise_label

        routed = self.routed_for_review(ROUTED_REQUIRED)  # blind as the reviewers saw it
        anchored = set((self.json("gold_draw.json", default={}) or {}).get("anchored_since") or {})
        if anchored and "blind" in routed.columns:
            # drawn as gold after reviewers had answered them with the suggestion showing: their
            # published label rests on those answers, so they count as assisted, never blind
            routed = routed.assign(
                blind=routed["blind"].fillna(False).astype(bool) & ~routed["id"].astype(str).isin(anchored)
            )
        if routed["id"].duplicated().any():
            dup = routed.loc[routed["id"].duplicated(), "id"].head(3).tolist()
            raise RunDirError(f"{self / 'routed.parquet'}: column 'id' has duplicates (e.g. {dup}); ids must be unique")
        if (self / "responses.parquet").is_file():
            responses = self.table("responses.parquet", RESPONSES_REQUIRED)
            # who answered a record in any way (a draft or a discard too: they saw its suggestion)
            seen = set(zip(responses["record_id"].astype(str), responses["user"].astype(str), strict=True))
            if "status" in responses.columns:
                responses = responses[responses["status"].fillna("submitted") == "submitted"]
            responses = responses.assign(label=responses["label"].map(normalise_label))
        else:
            responses = pd.DataFrame(columns=[*RESPONSES_REQUIRED, "status", "updated_at"])
            seen = set()
        from curation.adapters.argilla_io import REVIEW_AUDIT_SUFFIX

        is_audit = responses["record_id"].astype(str).str.endswith(REVIEW_AUDIT_SUFFIX)
        audits = responses[is_audit]
        audits = audits.assign(record_id=audits["record_id"].astype(str).str.removesuffix(REVIEW_AUDIT_SUFFIX))
        audits = audits.assign(
            own_reviewer=[
                (rid, str(user)) in seen for rid, user in zip(audits["record_id"], audits["user"], strict=True)
            ]
        )
        responses = responses[~is_audit]
        task = self.task_config_or_none()
        return RunFiles(
            run_dir=self.path,
            routed=routed.reset_index(drop=True),
            responses=responses.reset_index(drop=True),
            review_audits=audits.reset_index(drop=True),
            run=self.json("run.json", default={}),
            calibration=self.json("calibration.json", default={}),
            routing=self.json("routing.json", default={}),
            pull=self.json("pull.json", default={}),
            config=task.model_dump(mode="json") if task is not None else {},
            config_path=Path(task.source_path) if task is not None and task.source_path else None,
            **self._student_files(),
        )

    def _student_files(self) -> dict[str, Any]:
        """student_labels.parquet and student.json for publish, when `student-label` ran, checked
        against the present routing (labels made for another routing are refused, naming the fix)."""
        if not (self / STUDENT_LABELS_FILE).is_file():
            return {}
        fix = f"rerun `labeltriage student-label {self.path}`, or delete {self / STUDENT_LABELS_FILE}"
        report = self.json(STUDENT_REPORT_FILE, default={})
        if not report:
            raise RunDirError(f"{self / STUDENT_REPORT_FILE} is missing beside {STUDENT_LABELS_FILE}: {fix}")
        if report.get("routing_identity") != routing_identity(self.json("routing.json", default={})):
            raise RunDirError(f"{self / STUDENT_LABELS_FILE} was made for another routing (routing.json changed "
                              f"since `student-label` ran): {fix}")  # fmt: skip
        return {"student_labels": self.table(STUDENT_LABELS_FILE, STUDENT_LABELS_REQUIRED), "student": report}
