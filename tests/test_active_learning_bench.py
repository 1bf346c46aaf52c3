"""benchmarks/active_learning.py: refuses unknown corpora, runs the protocol on a user's own file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    # loaded from its path: `benchmarks` is a folder of scripts, not a package
    spec = importlib.util.spec_from_file_location("bench_active_learning", ROOT / "benchmarks" / "active_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_dataset_name_is_refused(capsys) -> None:
    bench = _bench()
    with pytest.raises(SystemExit) as caught:
        bench.main(["--datasets", "news"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "unknown dataset(s) 'news': known are rotten_tomatoes, crowdflower_tweets" in err
    assert "--input FILE --text-column TEXT --label-column LABEL" in err
    with pytest.raises(SystemExit) as caught:  # one good name does not let a bad one through
        bench.main(["--datasets", "rotten_tomatoes,tweets"])
    assert caught.value.code == 2 and "unknown dataset(s) 'tweets'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        bench.main(["--datasets", "rotten_tomatoes", "--input", "x.csv"])
    assert caught.value.code == 2 and "not both" in capsys.readouterr().err
    assert bench.parse_args([]).datasets == "rotten_tomatoes,crowdflower_tweets"


def _tiny_csv(path: Path) -> Path:
    good = ["great, works perfectly", "love it, recommend", "excellent value", "very happy with it"]
    bad = ["broke after a day", "terrible, waste of money", "awful, returned it", "never again, junk"]
    rows = [{"review": f"{good[i % 4]} #{i}", "stars": 5} for i in range(40)]
    rows += [{"review": f"{bad[i % 4]} #{i}", "stars": 1} for i in range(40)]
    rows += [{"review": "", "stars": 5}, {"review": "no rating given", "stars": None}]
    pd.DataFrame(rows).astype({"stars": "Int64"}).to_csv(path, index=False)  # 5, not 5.0
    return path


def test_own_file_errors_name_the_fix(tmp_path: Path, capsys) -> None:
    bench = _bench()
    data = _tiny_csv(tmp_path / "tiny.csv")
    assert bench.main(["--input", str(data), "--output-dir", str(tmp_path)]) == 2
    assert f"{data}: no column 'text' (columns: review, stars). Fix: pass --text-column NAME" in capsys.readouterr().err
    args = ["--input", str(data), "--text-column", "review", "--label-column", "stars", "--output-dir", str(tmp_path)]
    # 80 usable rows, a 16-row test split: the pool of 64 cannot hold 25 + 20 x 25
    assert bench.main(args) == 2
    err = capsys.readouterr().err
    assert "tiny.csv: 80 labelled rows leave a pool of 64 after the 16-row test split" in err
    assert "needs 525. Fix: pass --rounds 1" in err
    one_class = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}).to_csv(one_class, index=False)
    assert bench.main(["--input", str(one_class), "--output-dir", str(tmp_path)]) == 2
    assert "has 1 distinct label(s)" in capsys.readouterr().err
    assert not list(tmp_path.glob("active_learning*.json"))


def test_own_file_runs_a_reduced_protocol(tmp_path: Path) -> None:
    bench = _bench()
    data = _tiny_csv(tmp_path / "tiny.csv")
    out = tmp_path / "results"
    code = bench.main(
        ["--input", str(data), "--text-column", "review", "--label-column", "stars", "--seeds", "1",
         "--rounds", "2", "--batch", "5", "--n-seed", "6", "--test-size", "20", "--output-dir", str(out),
         "--cache-dir", str(tmp_path / "cache")]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "active_learning_tiny.json").read_text())
    assert (out / "active_learning_tiny.png").read_bytes()[:4] == b"\x89PNG"
    ds = report["datasets"]["tiny.csv"]
    assert (ds["rows_used"], ds["rows_left_out"], ds["n_test"], ds["n_pool"]) == (80, 2, 20, 60)
    assert ds["classes"] == ["1", "5"] and ds["label_column"] == "stars"
    assert set(ds["strategies"]) == set(bench.STRATEGIES)
    for strategy in ds["strategies"].values():
        assert strategy["labels"] == [6, 11, 16]
        assert 0 <= strategy["auc_accuracy_mean"] <= 100
    assert report["protocol"]["input"] == str(data)


def test_own_file_reader_takes_the_two_columns(tmp_path: Path) -> None:
    bench = _bench()
    path = tmp_path / "rated.parquet"
    frame = pd.DataFrame(
        {"body": ["good", "bad", "fine", None, "meh"], "rating": [5.0, 1.0, float("nan"), 1.0, 3.0], "x": 0}
    )
    frame.to_parquet(path)
    out, left_out = bench.input_frame(path, "body", "rating")
    assert out.to_dict("list") == {"text": ["good", "bad", "meh"], "label": ["5", "1", "3"]}
    assert left_out == 2
    with pytest.raises(bench.BenchmarkInputError, match="no column 'label'.*Fix: pass --label-column NAME"):
        bench.input_frame(path, "body", "label")
    with pytest.raises(bench.BenchmarkInputError, match="no such file"):
        bench.input_frame(tmp_path / "missing.csv", "text", "label")
