"""The real pipeline with the real local model (SmolLM2-135M: plumbing, not accuracy), through the
CLI: contract columns, rows in = rows out, resume with zero model calls, multi-label, k samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from labeltriage.cli import main
from labeltriage.config import default_parallel, load_task_config
from pipelines.io import load_records
from pipelines.llms import LocalLlamaLLM
from pipelines.models import resolve_model_path
from pipelines.parsing import label_token_probability, parse_answer
from pipelines.prompt import render_messages
from pipelines.runner import CONTRACT_COLUMNS, run_prelabel, with_overrides

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "datasets_config" / "sentiment.yaml"
ASPECTS = ROOT / "datasets_config" / "aspects.yaml"
SENTIMENT_3CLASS = ROOT / "datasets_config" / "sentiment_3class.yaml"
TEXTS = [
    "This product exceeded all my expectations. Highly recommend!",
    "Worst purchase I have ever made. Complete waste of money.",
    "",
]

pytestmark = pytest.mark.llm


def write_jsonl(path: Path, texts: list[str], labels: list[str] | None = None) -> Path:
    with path.open("w") as handle:
        for i, text in enumerate(texts):
            row = {"text": text}
            if labels:
                row["label"] = labels[i]
            handle.write(json.dumps(row) + "\n")
    return path


def test_cli_local_smollm2_end_to_end_and_resume(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "reviews.jsonl", TEXTS, ["positive", "negative", "neutral"])
    out = tmp_path / "run"
    args = ["prelabel", str(SENTIMENT), str(data), "--output", str(out), "--model", "smollm2", "--quiet"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    # the empty text is a failed record: all outputs written, exit 4 with one red line
    assert result.exit_code == 4, result.output
    assert "1 of 3 records failed (empty_text 1): see the error column" in " ".join(result.output.split())
    frame = pd.read_parquet(out / "prelabels.parquet")
    assert list(frame.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert "gold_label" in frame.columns and frame["gold_label"].tolist() == ["positive", "negative", "neutral"]
    assert len(frame) == 3  # rows in = rows out
    assert frame["status"].tolist() == ["ok", "ok", "failed"]
    ok = frame[frame["status"] == "ok"]
    assert set(ok["llm_label"]) <= {"positive", "negative", "neutral", "mixed"}
    assert ok["confidence_stated"].between(0, 1).all()
    # llama.cpp gives the sampled tokens' log-probs: the label's probability is recorded
    assert ok["confidence_logprob"].between(0, 1, inclusive="right").all()
    assert (ok["llm_confidence"] == ok["confidence_logprob"]).all()
    assert (ok["input_tokens"] > 50).all() and (ok["output_tokens"] > 5).all()
    assert (frame["cost_usd"] == 0).all()  # local compute is not billed
    assert frame["model"].iloc[0] == "smollm2"
    assert frame["id"].is_unique and frame["id"].str.len().eq(16).all()
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "sentiment" and run["model"] == "smollm2"
    assert run["parallel"] == default_parallel()  # the product's default: records decoded together
    assert run["prompt_hash"] == frame["prompt_hash"].iloc[0]
    assert run["totals"]["records"] == 3 and run["totals"]["failed"] == 1
    assert run["totals"]["model_calls"] == 2
    # rerun: every record is finished, zero model calls, same output
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 4, again.output
    rerun = json.loads((out / "run.json").read_text())
    assert rerun["totals"]["model_calls"] == 0
    assert rerun["parallel"] is None  # nothing decoded in this run
    pd.testing.assert_frame_equal(frame, pd.read_parquet(out / "prelabels.parquet"))


def test_multilabel_aspects_and_self_consistency(tmp_path: Path) -> None:
    """Multi-label answer and k = 2 self-consistency samples, with the values SmolLM2-135M gives.

    The main answer is greedy (temperature 0) and the samples are seeded, so the outcome is fixed
    for the pinned model and llama.cpp: the 135M model answers the empty aspect list here (it copies
    the last few-shot answer, "No aspect is discussed", whatever the review says; measured with
    other texts and few-shot orders too), and so do both samples. A change in the multi-label path
    (array decoding, parsing, the empty list as a valid answer, the consistency share) shows up
    as a different value, not as a skipped branch."""
    config = with_overrides(load_task_config(ASPECTS), "local", "smollm2")
    config = config.model_copy(update={"confidence": config.confidence.model_copy(update={"consistency_samples": 2})})
    data = write_jsonl(tmp_path / "r.jsonl", ["Battery died after a week and the screen cracked."])
    result = run_prelabel(config, load_records(data), tmp_path / "run", show_progress=False)
    row = result.frame.iloc[0]
    assert result.stats.calls == 1 + 2
    assert row["status"] == "ok" and row["error"] is None
    assert list(row["llm_label"]) == []  # a valid multi-label answer: no aspect
    assert json.loads(row["raw_output"])["labels"] == []
    assert json.loads(row["consistency_labels"]) == [[], []]
    assert row["confidence_consistency"] == 1.0  # both samples agree with the main answer
    # no label token to read a log-prob from: routing falls back to the stated confidence
    assert pd.isna(row["confidence_logprob"]) and row["confidence_kind"] == "stated"
    assert row["llm_confidence"] == row["confidence_stated"] == json.loads(row["raw_output"])["confidence"]


def _smollm2(config_path: Path, decoding: str, parallel: int = 1) -> tuple[LocalLlamaLLM, object]:
    config = with_overrides(load_task_config(config_path), "local", "smollm2")
    llm = LocalLlamaLLM(
        model_path=str(resolve_model_path("smollm2")),
        model_id="smollm2",
        response_schema=config.output_schema(),
        decoding=decoding,
        parallel=parallel,
    )
    llm.load()
    return llm, config


PARALLEL_TEXTS = [
    *TEXTS[:2],
    "It arrived on time. The box was blue.",
    "Great screen, terrible battery; I am torn.",
    "Would buy again",
]


@pytest.mark.parametrize("parallel", [1, 3])
def test_jump_forward_log_probs_match_a_full_forward_pass(parallel: int) -> None:
    """Every recorded log-prob (sampled or fed-in scaffold) equals the log-prob llama.cpp gives that
    token when the whole prompt + answer is evaluated at once: no off-by-one between rows and tokens,
    and the KV prefix reused from the previous record changes nothing. With ``parallel`` 3, five
    records are decoded together in one context (three at a time, a finished record's slot taking
    the next): no record reads another's tokens, and the slots' shared prefix is the right one."""
    from llama_cpp import Llama

    llm, config = _smollm2(SENTIMENT, "jump_forward", parallel)
    assert llm._template is not None and (llm._sequences is not None) == (parallel > 1)
    reference = Llama(model_path=llm.model_path, n_ctx=2048, logits_all=True, verbose=False)
    texts = PARALLEL_TEXTS if parallel > 1 else TEXTS[:2]  # one at a time: the second reuses the first's prefix
    outputs = llm.generate([render_messages(config, text) for text in texts], max_tokens=128)
    for text, out in zip(texts, outputs, strict=True):
        messages = render_messages(config, text)
        raw = out["generations"][0]
        assert out["errors"][0] is None
        parse_answer(raw, config)  # valid by construction
        assert raw.startswith('{"' + config.label_key + '": ')  # json.dumps spacing
        recorded = out["logprobs"][0]
        formatted = llm._chat_formatter(messages=messages)
        prompt = reference.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        answer = [
            tid for piece in recorded for tid in reference.tokenize(piece[0]["token"].encode("latin-1"), add_bos=False)
        ]
        assert len(answer) == len(recorded)  # every recorded piece is one token
        reference.reset()
        reference.eval(prompt + answer)
        scores = np.asarray(reference.scores[len(prompt) - 1 : len(prompt) + len(answer) - 1])
        expected = [float(row[t] - np.logaddexp.reduce(row)) for row, t in zip(scores, answer, strict=True)]
        got = [piece[0]["logprob"] for piece in recorded]
        # batched and one-at-a-time evaluation round differently: a few hundredths apart on average
        # (0.205 seen on one unlikely token), while any misalignment would be off by whole units
        np.testing.assert_allclose(got, expected, atol=0.3)
        assert float(np.mean(np.abs(np.subtract(got, expected)))) < 0.04  # 0.023 seen
        assert out["statistics"]["output_tokens"][0] == len(recorded) + 1  # + the closing '"}', never fed
    reference.close()


def test_jump_forward_and_grammar_agree_on_the_label() -> None:
    """Greedy decoding, same model and prompt: the label and its token probability match the grammar
    path (the scaffold they both write before the label is the same)."""
    fast, config = _smollm2(SENTIMENT, "jump_forward")
    slow, _ = _smollm2(SENTIMENT, "grammar")
    assert slow._template is None
    for text in TEXTS[:2]:
        messages = render_messages(config, text)
        a, b = (llm.generate([messages], max_tokens=128)[0] for llm in (fast, slow))
        tokens = [[(p[0]["token"], p[0]["logprob"]) for p in out["logprobs"][0]] for out in (a, b)]
        raw_a, raw_b = a["generations"][0], b["generations"][0]
        assert parse_answer(raw_a, config).label == parse_answer(raw_b, config).label
        p_a = label_token_probability(raw_a, tokens[0], config)
        p_b = label_token_probability(raw_b, tokens[1], config)
        assert p_a is not None and p_b is not None and abs(p_a - p_b) < 0.02


def test_retrieved_examples_through_the_local_model(tmp_path: Path) -> None:
    """retrieval.k with the local backend: the examples reach llama.cpp's prompt (more input
    tokens than without), a long example is cut to max_example_chars so the record's own text
    keeps its room, and a rerun asks nothing."""
    import yaml

    data = yaml.safe_load((ROOT / "datasets_config" / "sentiment_3class.yaml").read_text())
    config_path = tmp_path / "retrieval.yaml"
    config_path.write_text(yaml.safe_dump({**data, "retrieval": {"k": 2, "max_example_chars": 120}}))
    texts = ["Loved it, works great.", "Broke after a day, awful.", "It is a cable. " * 40, "Great value, love it."]
    source = write_jsonl(tmp_path / "in.jsonl", texts, ["positive", "negative", "neutral", "positive"])
    plain = run_prelabel(with_overrides(load_task_config(SENTIMENT_3CLASS), model="smollm2"),
                         load_records(source, "text"), tmp_path / "plain", show_progress=False)  # fmt: skip
    args = [
        "prelabel",
        str(config_path),
        str(source),
        "--output",
        str(tmp_path / "run"),
        "--model",
        "smollm2",
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "run" / "prelabels.parquet")
    assert frame["status"].tolist() == ["ok"] * 4
    assert [len(ids) for ids in frame["example_ids"]] == [2, 2, 2, 2]
    assert all(rid not in list(ids) for rid, ids in zip(frame["id"], frame["example_ids"], strict=True))
    assert not frame["truncated"].iloc[0]  # the long example is cut, not the short record
    # every record reads two examples of at most 120 characters more than without retrieval
    extra = frame["input_tokens"].to_numpy() - plain.frame["input_tokens"].to_numpy()
    assert (extra > 20).all() and (extra < 2 * 120).all(), extra
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["retrieval"]["pool"] == 4 and run["retrieval"]["records_with_examples"] == 4
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert (
        again.exit_code == 0 and json.loads((tmp_path / "run" / "run.json").read_text())["totals"]["model_calls"] == 0
    )


def test_openmp_waits_passively_from_llama_cpps_first_import(tmp_path: Path) -> None:
    """OpenMP reads its wait policy once, when llama.cpp's libraries load: whichever path imports
    llama_cpp first (here the text budget's tokenizer, before the model loads) must have set
    OMP_WAIT_POLICY=PASSIVE by then (spinning threads ran 1.6x slower beside a busy process)."""
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "in.jsonl", TEXTS[:1])
    script = f"""
import importlib.abc, os, sys
os.environ.pop("OMP_WAIT_POLICY", None)
seen = []
class FirstImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "llama_cpp" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, FirstImport())
from labeltriage import api
api.prelabel({str(SENTIMENT)!r}, {str(data)!r}, {str(tmp_path / "run")!r}, model="smollm2")
print("policy at first import:", seen)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert "policy at first import: ['PASSIVE']" in done.stdout, done.stdout + done.stderr


def test_review_only_keeps_the_labels_and_asks_the_reasoning_only_of_pushed_records(tmp_path: Path) -> None:
    """``model.generation.reasoning: review_only`` on the local backend: jump-forward stops before
    the reasoning, so label, stated confidence and the label's log-prob are the full answer's, in
    fewer tokens; the reasoning asked for later (labeltriage.reasoning) is for that same label."""
    import yaml

    from labeltriage import api
    from labeltriage.reasoning import add_reasoning
    from labeltriage.rundir import RunDir

    texts = [t for t in PARALLEL_TEXTS if t]
    data = write_jsonl(tmp_path / "in.jsonl", texts)
    runs = {}
    for mode in ("all", "review_only"):
        config = yaml.safe_load(SENTIMENT.read_text())
        config["model"]["generation"]["reasoning"] = mode
        path = tmp_path / f"{mode}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        api.prelabel(path, data, tmp_path / mode, backend="local", model="smollm2", parallel=3)
        runs[mode] = pd.read_parquet(tmp_path / mode / "prelabels.parquet")
    full, short = runs["all"], runs["review_only"]
    assert short["status"].eq("ok").all() and full["status"].eq("ok").all()
    assert short["llm_label"].tolist() == full["llm_label"].tolist()
    assert short["confidence_stated"].tolist() == full["confidence_stated"].tolist()
    np.testing.assert_allclose(short["confidence_logprob"], full["confidence_logprob"], rtol=1e-4)
    assert short["reasoning"].isna().all() and full["reasoning"].map(lambda r: isinstance(r, str) and r != "").all()
    assert (short["output_tokens"] < full["output_tokens"]).all()
    assert all(json.loads(raw)["reasoning"] is None for raw in short["raw_output"])

    asked = set(short["id"][:2])
    report = add_reasoning(RunDir(tmp_path / "review_only"), asked)
    assert report.asked == 2 and report.added + report.label_changed == 2 and report.added >= 1
    kept = RunDir(tmp_path / "review_only").with_reasoning(short)
    with_one = set(kept.loc[kept["reasoning"].notna(), "id"])
    assert with_one <= asked and len(with_one) == report.added  # only the asked records have one
    assert kept["reasoning"].dropna().map(lambda r: isinstance(r, str) and r != "").all()


def test_second_opinion_through_the_local_model(tmp_path: Path) -> None:
    """The cascade's second labeller on the local backend (labeltriage.cascade): the same SmolLM2
    without the config's few-shot examples answers the records below the cut, once; the score is
    the formula of curation.cascade on the two answers; a rerun makes no call."""
    import yaml

    from labeltriage import api

    texts = [t for t in PARALLEL_TEXTS if t]
    data = write_jsonl(tmp_path / "in.jsonl", texts)
    api.prelabel(SENTIMENT_3CLASS, data, tmp_path / "run", backend="local", model="smollm2", parallel=3)
    first = pd.read_parquet(tmp_path / "run" / "prelabels.parquet")
    config = yaml.safe_load(SENTIMENT_3CLASS.read_text())
    config["few_shot"] = []
    config["model"].update(backend="local", name="smollm2", parallel=3)
    second_path = tmp_path / "second.yaml"
    second_path.write_text(yaml.safe_dump(config, sort_keys=False))
    below = float(np.median(first["llm_confidence"]))
    report = api.second_opinion(tmp_path / "run", second_path, config=SENTIMENT_3CLASS, below=below)
    unsure = first["status"].eq("ok") & (first["llm_confidence"] < below)
    assert report["n_asked"] == int(unsure.sum()) == report["model_calls"] > 0
    out = pd.read_parquet(tmp_path / "run" / "cascade_confidence.parquet")
    second = pd.read_parquet(tmp_path / "run" / "second_opinion" / "prelabels.parquet")
    assert set(second["text"]) == set(first.loc[unsure, "text"]) and second["status"].eq("ok").all()
    assert set(second["llm_label"]) <= {"positive", "negative", "neutral"}
    s1, s2 = first["llm_confidence"].to_numpy(), out["second_confidence"].to_numpy()
    same = unsure.to_numpy() & (out["second_label"] == first["llm_label"]).to_numpy()
    differ = unsure.to_numpy() & ~same
    np.testing.assert_allclose(out["confidence_cascade"][same], (s1[same] + s2[same]) / 2)
    np.testing.assert_allclose(out["confidence_cascade"][differ], s1[differ] * (1 - s2[differ]))
    np.testing.assert_allclose(out["confidence_cascade"][~unsure.to_numpy()], s1[~unsure.to_numpy()])
    again = api.second_opinion(tmp_path / "run", second_path, config=SENTIMENT_3CLASS, below=below)
    assert again["model_calls"] == 0 and again["n_agree"] == report["n_agree"]
