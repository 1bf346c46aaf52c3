"""Issue 11, inputs and gold: every file read right, one missing-value rule, gold checked against
the label set, duplicates and the user's own columns carried to the published dataset.

Each test runs the real CLI (prelabel against the OpenAI-protocol fake server, which answers the
first label named in the text; calibrate, route, publish) on the small input the issue reported,
and asserts the value that is right."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from labeltriage.cli import main
from pipelines.io import InputError, is_missing, read_table
from tests.support.llm_fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "datasets_config" / "sentiment.yaml")


def _invoke(args: list[str]):
    return CliRunner(mix_stderr=False).invoke(main, args, catch_exceptions=False)


@pytest.fixture()
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def _prelabel(server: FakeOpenAIServer, source: Path, out: Path, *extra: str):
    args = ["prelabel", CONFIG, str(source), "-o", str(out), "--quiet", *extra]
    return _invoke([*args, "--backend", "openai", "--model", "fake", "--base-url", server.base_url])


def _one_line_error(result, exit_code: int = 65) -> str:
    """The error a user sees: the documented exit code (65: input error), no traceback, exactly one line."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, lines
    return lines[0]


# --- 1. encodings and malformed files ------------------------------------------------------------
LATIN1_TEXTS = ["Café crème was lovely", "Naïve design, broke quickly", "Señor kettle works"]


def test_latin1_csv_is_read_right(tmp_path: Path, server: FakeOpenAIServer) -> None:
    source = tmp_path / "latin1.csv"
    source.write_bytes(("text\n" + "\n".join(f'"{t}"' for t in LATIN1_TEXTS) + "\n").encode("latin-1"))
    result = _prelabel(server, source, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "not UTF-8" in result.stderr and "--encoding" in result.stderr
    frame = pd.read_parquet(tmp_path / "run" / "prelabels.parquet")
    assert frame["text"].tolist() == LATIN1_TEXTS
    assert frame["status"].tolist() == ["ok"] * 3
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["input"]["encoding"] not in (None, "utf-8")
    # the explicit option gives the same texts and no note
    result = _prelabel(server, source, tmp_path / "run2", "--encoding", "latin-1")
    assert result.exit_code == 0 and "not UTF-8" not in result.stderr
    assert pd.read_parquet(tmp_path / "run2" / "prelabels.parquet")["text"].tolist() == LATIN1_TEXTS


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("ragged.csv", b'text,label\n"fine",positive\nbroken, row, here,negative\n', "line 3 has 4 fields"),
        ("quote.csv", b'text\n"never closed\nnext\n', "malformed CSV"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": "no end"\n', "line 2 is not valid JSON"),
        ("list.jsonl", b'{"text": "ok"}\n["a", "b"]\n', "line 2 is a JSON list"),
        ("bad.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
        ("empty.csv", b"", "the file is empty"),
        ("wrong.xlsx", b"PK..", "unknown format"),
        # siblings found by a review: a surplus field in the first data row (pandas silently made
        # it an index and shifted every value), a semicolon CSV, truncated archives, no records
        ("shift.csv", b"text\nGreat kettle, works well\nFine\n", "line 2 has 2 fields, the header has 1"),
        ("semi.csv", b"text;label\ngreat;positive\n", "looks ';'-separated"),
        ("cut.csv.gz", __import__("gzip").compress(b"text\nhello\nworld\n")[:-6], "not a complete gz file"),
        ("cut.csv.bz2", __import__("bz2").compress(b"text\nhello\nworld\n")[:-6], "not a complete bz2 file"),
        ("header.csv", b"text,label\n", "a header but no records"),
    ],
)
def test_malformed_inputs_one_line(tmp_path: Path, server: FakeOpenAIServer, name: str, content: bytes, expected: str):
    source = tmp_path / name
    source.write_bytes(content)
    line = _one_line_error(_prelabel(server, source, tmp_path / "run"))
    assert str(source) in line and expected in line and "Fix:" in line
    assert not (tmp_path / "run" / "prelabels.parquet").exists()


def test_wrong_encoding_option_is_one_line(tmp_path: Path, server: FakeOpenAIServer) -> None:
    source = tmp_path / "latin1.csv"
    source.write_bytes("text\nCafé\n".encode("latin-1"))
    line = _one_line_error(_prelabel(server, source, tmp_path / "run", "--encoding", "utf-8"))
    assert "not utf-8 (byte 0xe9 on line 2)" in line
    line = _one_line_error(_prelabel(server, source, tmp_path / "run", "--encoding", "klingon"))
    assert "unknown encoding 'klingon'" in line


# --- 2. one missing-value rule for inputs and gold -----------------------------------------------
def test_missing_value_rule() -> None:
    for value in (None, float("nan"), "", "  ", "NA", "n/a", "NaN", "null", "NULL", "None", "<NA>"):
        assert is_missing(value), value
    for value in ("0", "no", "none of them", "N.A.", 0, False, "nan-free"):
        assert not is_missing(value), value


def _half_gold_csv(path: Path) -> None:
    """24 rows; 12 carry a gold label (9 the fake model gets right, 3 it gets wrong), 12 are missing
    in every spelling the rule covers."""
    rows = []
    for i in range(9):
        rows.append((f"a positive story {i}", "positive"))
    for i in range(3):
        rows.append((f"a negative story {i}", "positive"))  # the fake answers negative: wrong
    for i, empty in enumerate(["", "NA", "null", "None", "N/A", " ", "", "NaN", "", "null", "", ""]):
        rows.append((f"a neutral story {i}", empty))
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)


def test_missing_gold_is_not_gold(tmp_path: Path, server: FakeOpenAIServer) -> None:
    source = tmp_path / "half.csv"
    _half_gold_csv(source)
    run = tmp_path / "run"
    result = _prelabel(server, source, run)
    assert result.exit_code == 0, result.stderr
    assert "column 'label' holds gold labels (12 rows have one)" in result.stderr
    frame = pd.read_parquet(run / "prelabels.parquet")
    assert len(frame) == 24 and int(frame["gold_label"].notna().sum()) == 12
    result = _invoke(["calibrate", str(run), "--holdout", "0"])
    assert result.exit_code == 0, result.stderr
    assert "gold: 12 records, LLM accuracy 0.750" in result.stdout
    assert json.loads((run / "calibration.json").read_text())["n_gold"] == 12
    result = _invoke(["route", str(run), "--target-precision", "0.25"])  # a guess among 4 labels meets it
    assert "target_precision (--target-precision) 0.25 is at or below chance for 4 labels" in _one_line_error(
        result, exit_code=2)  # fmt: skip
    # a run that records no task: the labels its LLM answered and its gold count instead (found in review)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "config"}))
    seen = set(pd.read_parquet(run / "prelabels.parquet")["llm_label"].dropna()) | set(frame["gold_label"].dropna())
    result = _invoke(["route", str(run), "--target-precision", "0.2"])
    assert f"0.2 is at or below chance for {len(seen)} labels" in _one_line_error(result, exit_code=2)
    (run / "run.json").write_text(json.dumps(meta))
    assert not (run / "routing.json").exists()
    result = _invoke(["route", str(run), "--target-precision", "0.5"])
    assert result.exit_code == 0, result.stderr
    assert json.loads((run / "routing.json").read_text())["threshold"]["n_gold"] == 12


def test_gold_file_and_input_share_the_rule(tmp_path: Path) -> None:
    gold_csv = tmp_path / "g.csv"
    gold_csv.write_text("id,label\na,positive\nb,NA\nc,\nd,None\n")
    gold_jsonl = tmp_path / "g.jsonl"
    gold_jsonl.write_text('{"id": "a", "label": "positive"}\n{"id": "b", "label": null}\n{"id": "c", "label": "NA"}\n')
    assert read_table(gold_csv)["label"].tolist() == ["positive", None, None, None]
    assert read_table(gold_jsonl)["label"].tolist() == ["positive", None, None]
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "absent.csv")


# --- 3. gold labels outside the label set --------------------------------------------------------
def _thirty(tmp_path: Path, server: FakeOpenAIServer) -> tuple[Path, list[str], list[str]]:
    """30 records; the fake model is right on 28 (accuracy 0.933 against correct gold)."""
    texts = [f"a positive review {i}" for i in range(15)] + [f"a negative review {i}" for i in range(15)]
    gold = ["positive"] * 15 + ["negative"] * 15
    gold[0], gold[15] = "negative", "positive"  # the two the model gets wrong
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    run = tmp_path / "run"
    assert _prelabel(server, source, run).exit_code == 0
    return run, texts, gold


def test_gold_plural_labels_are_named_with_the_nearest(tmp_path: Path, server: FakeOpenAIServer) -> None:
    run, texts, gold = _thirty(tmp_path, server)
    bad = list(gold)
    for i in range(1, 7):
        bad[i] = "positives"
    path = tmp_path / "gold.csv"
    pd.DataFrame({"text": texts, "gold_label": bad}).to_csv(path, index=False)
    line = _one_line_error(_invoke(["calibrate", str(run), "--gold", str(path), "--holdout", "0"]))
    assert "6 gold label(s) are not in the task's label set" in line
    assert "'positives' x6 (nearest: 'positive')" in line and "Fix:" in line
    # fixed file: the right accuracy
    pd.DataFrame({"text": texts, "gold_label": gold}).to_csv(path, index=False)
    result = _invoke(["calibrate", str(run), "--gold", str(path), "--holdout", "0"])
    assert result.exit_code == 0 and "gold: 30 records, LLM accuracy 0.933" in result.stdout


def test_gold_capitalised_is_mapped_and_label_column_accepted(tmp_path: Path, server: FakeOpenAIServer) -> None:
    run, texts, gold = _thirty(tmp_path, server)
    shouted = [g.capitalize() if i % 2 else f" {g} " for i, g in enumerate(gold)]
    path = tmp_path / "gold.csv"
    # `label`, like an input's gold column; two extra rows match no record
    extra = ["not in this run 1", "not in this run 2"]
    pd.DataFrame({"text": texts + extra, "label": shouted + ["positive", "negative"]}).to_csv(path, index=False)
    result = _invoke(["calibrate", str(run), "--gold", str(path), "--holdout", "0"])
    assert result.exit_code == 0, result.stderr
    assert "gold: 30 records, LLM accuracy 0.933" in result.stdout
    assert "'Positive' -> 'positive'" in result.stderr
    assert "2 of 32 gold rows match no pre-label by 'text'" in result.stderr
    result = _invoke(["route", str(run), "--target-precision", "0.5"])
    assert result.exit_code == 0, result.stderr
    assert json.loads((run / "routing.json").read_text())["threshold"]["n_gold"] == 30


# --- 4. duplicate texts --------------------------------------------------------------------------
def test_duplicates_go_through_every_step(tmp_path: Path, server: FakeOpenAIServer) -> None:
    texts = [f"a {'positive' if i % 2 else 'negative'} line {i}" for i in range(12)]
    rows = texts + [texts[3], texts[8]]  # two lines repeated exactly
    source = tmp_path / "dups.csv"
    gold = ["positive" if "positive" in t else "negative" for t in rows]
    gold[0] = "positive"  # one wrong answer, so the calibrator sees both kinds
    pd.DataFrame({"text": rows, "label": gold}).to_csv(source, index=False)
    run = tmp_path / "run"
    result = _prelabel(server, source, run)
    assert result.exit_code == 0, result.stderr
    assert "2 rows repeat an earlier row's text" in result.stderr
    frame = pd.read_parquet(run / "prelabels.parquet")
    assert len(frame) == 14 and frame["id"].is_unique
    assert frame["duplicate_of"].tolist()[-2:] == [frame["id"][3], frame["id"][8]]
    totals = json.loads((run / "run.json").read_text())["totals"]
    assert totals["model_calls"] == 12 and totals["cache_hits"] == 0
    assert server.completions == 12
    # a repeat shares its first row's answer and costs nothing (it was charged twice)
    assert frame["input_tokens"].tolist()[-2:] == [0, 0] and frame["input_tokens"][3] > 0
    assert totals["input_tokens"] == int(frame["input_tokens"][:12].sum())

    assert _invoke(["calibrate", str(run), "--holdout", "0"]).exit_code == 0
    assert json.loads((run / "calibration.json").read_text())["n_gold"] == 12  # a repeat is not new gold
    result = _invoke(["route", str(run), "--target-precision", "0.5", "--spot-check-rate", "0"])
    assert result.exit_code == 0, result.stderr
    routed = pd.read_parquet(run / "routed.parquet")
    assert routed["route"].tolist()[-2:] == [routed["route"][3], routed["route"][8]]
    result = _invoke(["publish", str(run)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    final = pd.read_parquet(run / "final.parquet")
    assert len(final) == 14 and final["id"].is_unique
    assert final.set_index("id").loc[frame["id"][13], "label"] == final.set_index("id").loc[frame["id"][8], "label"]


def test_review_queue_shows_a_text_once() -> None:
    from curation.adapters.argilla_io import review_queue

    routed = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "route": ["human_review"] * 3,
            "priority": [0.1, 0.9, 0.5],
            "duplicate_of": [None, None, "a"],
        }
    )
    assert review_queue(routed)["id"].tolist() == ["b", "a"]


# --- 5. the user's columns survive, their own ids ------------------------------------------------
def test_user_columns_and_ids_reach_the_published_dataset(tmp_path: Path, server: FakeOpenAIServer) -> None:
    n = 12
    skus = [f"A-{i:03d}" for i in range(n)]
    source = tmp_path / "products.csv"
    pd.DataFrame(
        {
            "sku": skus,
            "text": [f"a {'positive' if i % 2 else 'negative'} one {i}" for i in range(n)],
            "file": [f"f{i}.txt" for i in range(n)],
            "confidence": ["high", "low"] * (n // 2),  # clashes with a product column
        }
    ).to_csv(source, index=False)
    run = tmp_path / "run"
    result = _prelabel(server, source, run, "--id-column", "sku")
    assert result.exit_code == 0, result.stderr
    assert "'confidence' kept as 'input_confidence'" in result.stderr
    frame = pd.read_parquet(run / "prelabels.parquet")
    assert frame["id"].tolist() == skus
    assert frame["file"].tolist() == [f"f{i}.txt" for i in range(n)]
    assert frame["input_confidence"].tolist() == ["high", "low"] * (n // 2)
    gold = tmp_path / "gold.csv"
    labels = ["positive" if i % 2 else "negative" for i in range(n)]
    labels[0] = "positive"  # one wrong answer, so the calibrator sees both kinds
    pd.DataFrame({"id": skus, "label": labels}).to_csv(gold, index=False)
    assert _invoke(["calibrate", str(run), "--gold", str(gold), "--holdout", "0"]).exit_code == 0
    result = _invoke(["route", str(run), "--target-precision", "0.5", "--spot-check-rate", "0"])
    assert result.exit_code == 0, result.stderr
    assert _invoke(["publish", str(run)]).exit_code == 0
    final = pd.read_parquet(run / "final.parquet")
    assert final["id"].tolist() == skus
    assert final["file"].tolist() == [f"f{i}.txt" for i in range(n)]
    assert final["input_confidence"].tolist() == ["high", "low"] * (n // 2)
    assert "duplicate_of" not in final.columns  # no repeated text: no empty column


def test_bad_id_column_is_one_line(tmp_path: Path, server: FakeOpenAIServer) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"sku": ["A", "B", "A"], "text": ["x", "y", "z"]}).to_csv(source, index=False)
    line = _one_line_error(_prelabel(server, source, tmp_path / "run", "--id-column", "sku"))
    assert "column 'sku' has 1 repeated value(s) (e.g. 'A' in data rows 1, 3)" in line
    line = _one_line_error(_prelabel(server, source, tmp_path / "run", "--id-column", "nope"))
    assert "no column 'nope' for --id-column" in line


def test_prelabel_help_says_label_is_gold() -> None:
    result = _invoke(["prelabel", "--help"])
    assert "`gold_label` (else `label`) is taken as gold" in result.stdout
    assert "--id-column" in result.stdout and "--encoding" in result.stdout


def test_check_gold_labels_unit() -> None:
    from curation.gold import GoldLabelError, check_gold_labels

    names = ["positive", "negative", "neutral"]
    checked = check_gold_labels(["positive", " Negative", None, "NEUTRAL"], names, source="g.csv")
    assert checked.labels == ["positive", "negative", None, "neutral"]
    assert checked.mapped == {" Negative": "negative", "NEUTRAL": "neutral"}
    with pytest.raises(GoldLabelError, match=r"'pos' x2 \(nearest: 'positive'\); 'zzz' x1 \(no close label\)"):
        check_gold_labels(["pos", "zzz", "pos", "positive"], names, source="g.csv")
    # case folding that names two labels is ambiguous, not mapped
    with pytest.raises(GoldLabelError, match="'ok' x1"):
        check_gold_labels(["ok"], ["OK", "Ok"], source="g.csv")
