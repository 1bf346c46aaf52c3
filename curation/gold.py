"""Gold labels against the task's label set: map what is unambiguous, refuse the rest by name.

A gold label outside the label set silently counts as a wrong pre-label in every metric
(accuracy, calibration, the routing threshold), so it is never let through:

- a label equal to a task label is kept;
- a label equal to exactly one task label after Unicode case-folding and stripping whitespace
  (``Positive``, `` positive ``) is mapped to it: the spelling differs, the meaning cannot;
- anything else (``positives``, ``pos``) raises :class:`GoldLabelError`, which lists every such
  label with its row count and the nearest task label (``difflib.get_close_matches``, ratio
  >= 0.4), so the user can fix the file.

Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from labeltriage.errors import InputError


class GoldLabelError(InputError):
    """Gold labels that are not in the task's label set; the message names them and the fix."""


@dataclass(frozen=True)
class GoldLabels:
    """Gold labels checked against a label set.

    Attributes:
        labels: one entry per input row, a task label or ``None`` (no gold).
        mapped: spelling -> task label, for the labels mapped by case/whitespace.
    """

    labels: list[str | None]
    mapped: dict[str, str] = field(default_factory=dict)


def check_gold_labels(gold: Sequence[object | None], label_names: Sequence[str], *, source: str) -> GoldLabels:
    """Check and map gold labels onto ``label_names``.

    Args:
        gold: gold label per row (``None`` = no gold for that row), length n.
        label_names: the task's labels.
        source: where the gold came from (a file name or column), used in the error message.

    Returns:
        :class:`GoldLabels` with n labels.

    Raises:
        GoldLabelError: some labels are not in the set even after case/whitespace folding.
    """
    names = list(label_names)
    folded: dict[str, list[str]] = {}
    for name in names:
        folded.setdefault(name.strip().casefold(), []).append(name)
    exact = set(names)
    mapped: dict[str, str] = {}
    unknown: Counter[str] = Counter()
    out: list[str | None] = []
    for value in gold:
        if value is None:
            out.append(None)
            continue
        text = str(value)
        if text in exact:
            out.append(text)
            continue
        candidates = folded.get(text.strip().casefold(), [])
        if len(candidates) == 1:
            mapped[text] = candidates[0]
            out.append(candidates[0])
        else:
            unknown[text] += 1
            out.append(None)
    if unknown:
        parts = []
        for text, count in unknown.most_common():
            near = difflib.get_close_matches(text.casefold(), [n.casefold() for n in names], n=1, cutoff=0.4)
            hint = f"nearest: {names[[n.casefold() for n in names].index(near[0])]!r}" if near else "no close label"
            parts.append(f"{text!r} x{count} ({hint})")
        total = sum(unknown.values())
        raise GoldLabelError(
            f"{source}: {total} gold label(s) are not in the task's label set {names}: {'; '.join(parts)}. "
            "Fix: rename them in the gold file to task labels (or add the label to the task config)"
        )
    return GoldLabels(labels=out, mapped=mapped)


@dataclass(frozen=True)
class GoldDraw:
    """A simple random sample of records to label as gold (:func:`draw_gold_sample`).

    Attributes:
        ids: the sample, in draw order (earlier draws first).
        population: how many records it was drawn from (``N``).
        inclusion_probability: ``n / N``, every record's probability to be in the sample.
        new: the ids this call added to the earlier draws.
    """

    ids: list[str]
    population: int
    inclusion_probability: float
    new: list[str]


def draw_gold_sample(population_ids: Sequence[str], n: int, seed: int = 0, already: Sequence[str] = ()) -> GoldDraw:
    """Draw a simple random sample (without replacement) of ``n`` records to label as gold.

    The gold that certifies the auto-accept threshold must be a random sample of the records the
    threshold applies to; drawing it here makes that true by construction. ``already`` (an earlier
    draw from the same population) is kept and extended by a simple random sample of the remaining
    records: the union is again a simple random sample of size ``n`` (sequential sampling without
    replacement), so growing the gold keeps every record's inclusion probability at ``n / N``.
    Looking again after each extension is another matter: the certificate's test is valid for one
    look (see :func:`curation.certify.plan_gold`).

    Args:
        population_ids: ``(N,)`` distinct ids of the records the threshold applies to.
        n: the sample size wanted in total, ``1 <= n <= N``; an ``n`` not above
            ``len(already)`` draws nothing new.
        seed: seeds the draw (the same seed and sizes give the same sample).
        already: ids drawn before (all in ``population_ids``).

    Returns:
        :class:`GoldDraw`.

    Raises:
        InputError: ``n`` outside ``[1, N]``, repeated population ids, or earlier ids that are
            not in the population (it changed: draw afresh).
    """
    ids = [str(i) for i in population_ids]
    if len(set(ids)) != len(ids):
        raise InputError("the population has repeated ids; draw from distinct records")
    big_n = len(ids)
    if not 1 <= n <= big_n:
        raise InputError(f"gold sample size must be in [1, {big_n}] (the records routing applies to), got {n}")
    before = [str(i) for i in already]
    missing = sorted(set(before) - set(ids))
    if missing:
        raise InputError(
            f"{len(missing)} earlier gold draw id(s) (e.g. {missing[0]}) are not among the records any more: "
            "the run changed; draw afresh (delete gold_draw.json)"
        )
    taken = set(before)
    remaining = [i for i in ids if i not in taken]
    extra = max(0, n - len(before))
    rng = np.random.default_rng([seed, len(before)])
    new = [remaining[k] for k in rng.permutation(len(remaining))[:extra]]
    sample = before + new
    return GoldDraw(sample, big_n, len(sample) / big_n, new)
