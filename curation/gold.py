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
