"""`labeltriage student-label`: the student labels the review queue's unreviewed records, certified.

Reads the run (routed.parquet, routing.json, responses.parquet), trains the student on the reviewed
records' majority labels, certifies its threshold on the gold records of the review stratum and
writes ``student_labels.parquet`` (``id, student_label, student_confidence, accepted``, one row per
unreviewed review-queue record the student may label) and ``student.json`` (the certificate and the
counts). ``publish`` then publishes the accepted ones with ``label_source`` ``student`` and states
the certificate (not a measured accuracy: they are not audited). The method and its conditions:
:mod:`curation.student_labels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labeltriage.errors import InputError, UsageError
from labeltriage.jsonio import write_json
from labeltriage.rundir import STUDENT_LABELS_FILE, STUDENT_REPORT_FILE, routing_identity

if TYPE_CHECKING:
    from labeltriage.rundir import RunDir


STUDENTS = ("frozen", "finetuned")


def student_label(
    run: RunDir,
    *,
    target_precision: float | None = None,
    confidence_level: float | None = None,
    seed: int = 0,
    student: str = "frozen",
    max_pairs: int | None = None,
) -> dict[str, Any]:
    """Label the review queue's unreviewed records with the student where its threshold is certified.

    ``student``: ``frozen`` (logistic regression on the bundled MiniLM's embeddings, seconds) or
    ``finetuned`` (SetFit, Tunstall et al. 2022: :func:`curation.student.fit_finetuned_student`
    fine-tunes MiniLM contrastively on at most ``max_pairs`` (default 4,000) pairs of the reviewed
    labels, then the same head on its embeddings, then embeds every training, gold and queued
    text with the fine-tuned model: 4-10 minutes on 2 cores plus ~150 texts/s, uncached). Either way
    the gold never enters the fit. Each setting tried (student, pairs, seed, target, level) tests
    the run's gold again: student.json ``settings_tried`` keeps them all, and with N of them the
    statement gives the Bonferroni level ``1 - N (1 - level)`` for the one kept.

    The pool: review-queue records (``human_review``, ok pre-label) in the stratum, not answered,
    and none that route sends to people whatever their score (instruction-like texts, records drawn
    as gold, repeated texts: a repeat gets its first row's label at publish). ``target_precision``
    / ``confidence_level``: default the run's routing settings (the LLM's own target). Returns
    student.json's content (also written). Raises :class:`InputError` for a multi-label task, no
    pulled answers, reviewed labels of fewer than two task labels, no gold in the stratum, a
    routing without its confidence column, or ``max_pairs`` without the fine-tuned student;
    :class:`~labeltriage.rundir.RunDirError` for a missing run file.
    """
    import numpy as np
    import pandas as pd

    from curation.adapters.embeddings import MODEL_NAME
    from curation.feedback import human_majority
    from curation.publish import prelabel_ok
    from curation.student import DEFAULT_MAX_PAIRS
    from curation.student_labels import certify_student_labels, level_after_selection

    if student not in STUDENTS:
        raise UsageError(f"student {student!r}: use one of {list(STUDENTS)}")
    if max_pairs is not None and student != "finetuned":
        raise UsageError(f"max_pairs (--max-pairs) {max_pairs}: only the fine-tuned student has pairs; choose it "
                         "(student='finetuned', --student finetuned) or drop max_pairs")  # fmt: skip
    if max_pairs is not None and (not isinstance(max_pairs, int) or isinstance(max_pairs, bool) or max_pairs < 1):
        raise UsageError(f"max_pairs (--max-pairs) {max_pairs!r}: use a whole number >= 1 (pairs of the "
                         "fine-tuning; 4000 by default)")  # fmt: skip
    pairs = (max_pairs or DEFAULT_MAX_PAIRS) if student == "finetuned" else None
    task = run.task_config()
    if task.task_type == "multi_label":
        raise InputError(f"{task.source_path or run.path}: task_type multi_label: student labels are single-label "
                         "only; use a single_label task for student-label")  # fmt: skip
    routing = run.json("routing.json")
    certificate = routing.get("threshold") if isinstance(routing.get("threshold"), dict) else {}
    used = routing.get("settings_used") or certificate
    target = float(target_precision if target_precision is not None else used.get("target_precision", 0.95))
    level = float(confidence_level if confidence_level is not None else used.get("confidence_level", 0.95))
    task.check_target_precision(target)
    routed = run.table("routed.parquet", ("id", "text", "route", "llm_label"))
    ids = routed["id"].astype(str)
    answers = run.table("responses.parquet", ("record_id", "user", "label"))
    answers = answers[answers["record_id"].astype(str).isin(set(ids))]  # not the ::audit copies
    majority = human_majority(answers, task.label_names)
    gold_route = routed["route"].eq("gold") & _column(routed, "gold_label", None).notna()
    labelled = majority[majority["majority"].notna() & ~majority["record_id"].astype(str).isin(set(ids[gold_route]))]
    submitted = answers[_column(answers, "status", "submitted").fillna("submitted").eq("submitted")]
    outside = sorted(set(submitted["label"].astype(str)) - set(task.label_names))
    if (n_classes := labelled["majority"].nunique()) < 2:
        why = (f"; {len(outside)} answered label(s) are not the task's, e.g. {outside[:3]}: correct the task's labels "
               "or the answers, then `labeltriage pull` again" if outside else "")  # fmt: skip
        raise InputError(f"{run / 'responses.parquet'}: the student needs reviewed majority labels of at least two of "
                         f"the task's labels {task.label_names} (has {n_classes}){why}; else review more records, "
                         "`labeltriage pull`, then rerun")  # fmt: skip
    ok = prelabel_ok(routed)
    stratum, in_stratum = _review_stratum(run, routed, routing)
    drawn = ids.isin(set((run.json("gold_draw.json", default={}) or {}).get("ids") or []))
    left_for_people = (
        _column(routed, "instruction_like", False).fillna(False).astype(bool) | drawn
        | _column(routed, "duplicate_of", None).notna()
    )  # fmt: skip
    queue = routed["route"].eq("human_review") & ok & ~ids.isin(set(majority["record_id"].astype(str)))
    pool = routed[queue & in_stratum & ~left_for_people]
    gold = routed[gold_route & ok & in_stratum]
    tried = list((run.json(STUDENT_REPORT_FILE, default={}) or {}).get("settings_tried") or [])
    left = {"above_the_llm_threshold": int((queue & ~in_stratum).sum()),
            "instruction_like_drawn_gold_or_repeat": int((queue & in_stratum & left_for_people).sum())}  # fmt: skip
    if pool.empty:  # nothing to label: no fit, no test of the gold, no setting tried
        return _nothing_to_label(run, student, stratum, left, tried, routing)
    if gold.empty:
        raise InputError(f"{run.path}: no gold record in the review stratum ({stratum}) to certify the student on: "
                         "add gold (`labeltriage gold draw`), recalibrate and route, then rerun")  # fmt: skip
    train = routed.set_index(ids).loc[labelled["record_id"].astype(str)]
    texts = [*train["text"].astype(str), *gold["text"].astype(str), *pool["text"].astype(str)]
    k, n = len(train), len(gold)
    vectors, fit = _features(run, student, texts, k, labelled["majority"].astype(str).to_numpy(),
                             task.label_names, seed, pairs)  # fmt: skip
    result = certify_student_labels(
        vectors[:k], labelled["majority"].astype(str).to_numpy(), vectors[k : k + n],
        gold["gold_label"].astype(str).to_numpy(), vectors[k + n :], target_precision=target,
        confidence_level=level, classes=task.label_names, seed=seed,
    )  # fmt: skip
    pd.DataFrame({
        "id": pool["id"].astype(str).to_numpy(), "student_label": result.labels.astype(object),
        "student_confidence": result.confidence, "accepted": result.accepted,
    }).to_parquet(run / STUDENT_LABELS_FILE, index=False)  # fmt: skip
    # the certificate's own sentence speaks of auto-accepting LLM labels: the report's statement is the student's
    made = {key: value for key, value in result.certificate.to_dict().items() if key != "statement"}
    llm_right = gold["llm_label"].astype(str).to_numpy() == gold["gold_label"].astype(str).to_numpy()
    model = (f"SetFit: {MODEL_NAME} fine-tuned on the reviewed labels + logistic regression "
             "(curation.student.fit_finetuned_student)" if fit else
             f"logistic regression on {MODEL_NAME} sentence embeddings (curation.student.fit_student)")  # fmt: skip
    setting = {"student": student, "max_pairs": pairs, "seed": seed, "target_precision": target,
               "confidence_level": level}  # fmt: skip
    tried += [] if setting in tried else [setting]  # a rerun of a setting is the same test (seeded)
    level_kept = level_after_selection(level, len(tried))  # the settings tried on this gold
    report = {
        "student": student,
        "model": model,
        **({"fine_tuning": fit} if fit else {}),
        "seed": seed,
        "n_train": result.n_train,
        "stratum": stratum,
        "n_gold_stratum": n,
        "student_accuracy_gold_stratum": float(np.mean(result.gold_correct)),
        "llm_accuracy_gold_stratum": float(np.mean(llm_right)),
        "n_pool": int(len(pool)),
        "n_left_for_people": left,
        "n_answers_outside_labels": int(submitted["label"].astype(str).isin(outside).sum()),
        "n_accepted": int(result.accepted.sum()),
        "target_precision": target,
        "confidence_level": level,
        "certificate": made,
        "settings_tried": tried,
        "confidence_level_after_selection": level_kept,
        "routing_identity": routing_identity(routing),
        "statement": _statement(made, stratum, int(result.accepted.sum()), len(tried), level_kept, student),
    }
    write_json(run / STUDENT_REPORT_FILE, report)
    return report


def _nothing_to_label(  # noqa: PLR0913
    run: RunDir, student: str, stratum: str, left: dict[str, int], tried: list[Any], routing: dict[str, Any]
) -> dict[str, Any]:
    """student.json and an empty student_labels.parquet when the stratum has no unreviewed record."""
    import pandas as pd

    pd.DataFrame({"id": pd.Series(dtype=str), "student_label": pd.Series(dtype=object),
                  "student_confidence": pd.Series(dtype=float), "accepted": pd.Series(dtype=bool)}).to_parquet(
        run / STUDENT_LABELS_FILE, index=False)  # fmt: skip
    report = {
        "student": student, "stratum": stratum, "n_pool": 0, "n_left_for_people": left, "n_accepted": 0,
        "certificate": None, "settings_tried": tried, "routing_identity": routing_identity(routing),
        "statement": (f"Nothing to label: every review-queue record in the stratum ({stratum}) was answered or is "
                      "left for people; the student was not trained and the gold not tested (no setting added to "
                      "settings_tried)."),
    }  # fmt: skip
    write_json(run / STUDENT_REPORT_FILE, report)
    return report


def _features(  # noqa: PLR0913
    run: RunDir, student: str, texts: list[str], k: int, labels: Any, classes: list[str], seed: int, pairs: int | None
) -> tuple[Any, dict[str, Any] | None]:
    """Embeddings of ``texts`` (the first ``k`` the training records) and what the fine-tuning did.

    Frozen: the run's cached MiniLM embeddings. Fine-tuned: the body fitted on the first ``k``
    only (never the gold or the pool), then every text embedded by it.
    """
    if student == "frozen":
        from curation.adapters.loop import run_embeddings

        return run_embeddings(run.path, texts), None
    from curation.student import fit_finetuned_student

    fitted = fit_finetuned_student(texts[:k], labels, classes=classes, seed=seed, max_pairs=pairs)
    fit = {"n_pairs": fitted.n_pairs, "steps": fitted.steps, "loss_first": fitted.loss_first,
           "loss_last": fitted.loss_last, "seconds": round(fitted.seconds, 1), "settings": fitted.settings}  # fmt: skip
    return fitted.embed(texts), fit


def _column(frame: Any, name: str, default: Any) -> Any:
    """``frame[name]``, or a column of ``default`` when the run's table has none."""
    import pandas as pd

    return frame[name] if name in frame.columns else pd.Series(default, index=frame.index, dtype=object)


def _review_stratum(run: RunDir, routed: Any, routing: dict[str, Any]) -> tuple[str, Any]:
    """Which records the LLM's auto-accept left to review: (a description, a mask over routed)."""
    import pandas as pd

    chosen = routing.get("threshold")
    threshold = chosen.get("threshold") if isinstance(chosen, dict) else chosen  # route writes the certificate
    if threshold is None or routing.get("auto_accept_stopped") or routing.get("applied") is False:
        # nothing auto-accepted, or auto-accept stopped or refuted (its records went to review)
        return "all records (no LLM auto-accept in force)", pd.Series(True, index=routed.index)
    # the fixed-sequence certificate is on the raw confidence; the older scan on the calibrated one
    scan = routing.get("method", "fixed-sequence") != "fixed-sequence"
    column = "calibrated_confidence" if scan else (routing.get("confidence_column") or "llm_confidence")
    if column not in routed.columns:
        raise InputError(f"{run / 'routed.parquet'}: lacks {column!r}, the column routing.json's threshold is on: "
                         f"rerun `labeltriage route {run.path}`")  # fmt: skip
    scores = pd.to_numeric(routed[column], errors="coerce")
    kind = "auto-accept threshold (scan, not family-wise)" if scan else "certified auto-accept threshold"
    return f"records with {column} < {float(threshold):.6g} (below the LLM's {kind})", ~(scores >= float(threshold))


def _statement(  # noqa: PLR0913
    certificate: dict[str, Any], stratum: str, accepted: int, n_tried: int, level_kept: float, student: str
) -> str:
    if certificate.get("threshold") is None:
        return (f"The {student} student labels nothing: no threshold is certified at precision >= "
                f"{certificate['target_precision']:g} ({certificate.get('reason')}).")  # fmt: skip
    from curation.student_labels import describe_selection

    level = f"{level_kept:g}{describe_selection(certificate['confidence_level'], n_tried)}"
    return (
        f"{accepted} unreviewed records labelled by the {student} student. With probability >= "
        f"{level} over the gold draw, the stratum's records ({stratum}) whose student "
        "probability is "
        f">= {certificate['threshold']:.6g} have precision >= {certificate['target_precision']:g} (fixed-sequence "
        "exact binomial tests on the stratum's gold, which the student never saw). The labelled records are the "
        "stratum's unreviewed part: their own precision is not measured; it is expected at or above the stratum's "
        "when reviewers answered the queue by its priority (the most doubtful first), and can be lower otherwise."
    )
