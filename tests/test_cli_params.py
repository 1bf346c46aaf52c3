"""The CLI's shared arguments: a missing path is an input error (exit 65, one line), and a task
config may be named by its shipped name, with or without `.yaml`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from labeltriage.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["route", "{tmp}/nope"], "{tmp}/nope: no such path, expected a run directory"),
        (["push", "{tmp}/nope"], "{tmp}/nope: no such path, expected a run directory"),
        (["agreement", "{tmp}/nope"], "{tmp}/nope: no such path, expected a run directory"),
        (["calibrate", "{tmp}", "--gold", "{tmp}/gold.csv"], "{tmp}/gold.csv: no such path, expected a gold file"),
        (["calibrate", "{tmp}", "--gold", "{tmp}"], "{tmp}: is a directory, expected a gold file"),
        (["prelabel", "sentiment", "{tmp}/in.csv", "-o", "{tmp}/r"], "{tmp}/in.csv: no such path, expected an input"),
    ],
)
def test_a_missing_path_is_an_input_error_in_one_line(tmp_path, argv, expected):
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in argv])
    assert result.exit_code == 65, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: " + expected.format(tmp=tmp_path))
    assert "Fix:" in lines[0]


@pytest.mark.parametrize("name", ["sentiment", "sentiment.yaml"])
def test_config_by_shipped_name_reaches_the_step(tmp_path, name):
    # the step then stops at the run's first missing file, not at the option
    result = CliRunner().invoke(main, ["route", str(tmp_path), "--config", name])
    assert result.exit_code == 65, result.output
    assert f"{tmp_path}/prelabels.parquet not found: run `labeltriage prelabel" in result.output


def test_an_unknown_config_name_lists_the_shipped_ones(tmp_path):
    from labeltriage.errors import ConfigError
    from labeltriage.rundir import RunDir

    shipped = r"shipped one \(aspects, sentiment, sentiment_3class\)"
    with pytest.raises(ConfigError, match=r"sentimnt: no such file\. Fix: .*" + shipped):
        RunDir(tmp_path, "sentimnt").task_config()


def test_an_empty_directory_is_not_a_run_for_push_pull_loop(tmp_path):
    # was: "run.json: it records no task config; pass --config" (exit 78) although run.json did not exist
    for command in ("push", "pull", "loop"):
        result = CliRunner().invoke(main, [command, str(tmp_path)])
        assert result.exit_code == 65, result.output
        assert f"{tmp_path}/run.json not found: run `labeltriage prelabel" in result.output


def test_a_recorded_config_is_absolute_and_never_dropped_silently(tmp_path, monkeypatch):
    """`prelabel mycfg.yaml` recorded the path as typed; `route` from another directory then fell
    back to the default thresholds (0.95) with exit 0. And an invalid recorded config was ignored."""
    import json

    import yaml

    from labeltriage.config import load_task_config
    from labeltriage.errors import ConfigError
    from labeltriage.rundir import RunDir

    config = yaml.safe_load(load_task_config("sentiment").model_dump_json())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mycfg.yaml").write_text(yaml.safe_dump({**config, "thresholds": {"target_precision": 0.6}}))
    loaded = load_task_config("mycfg.yaml")
    assert loaded.source_path == str(tmp_path / "mycfg.yaml")  # what run.json records
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": loaded.source_path}))
    monkeypatch.chdir("/")
    task = RunDir(run).task_config_or_none()
    assert task is not None and task.thresholds.target_precision == 0.6
    (tmp_path / "mycfg.yaml").write_text("labels: [a, b\n")
    with pytest.raises(ConfigError, match="mycfg.yaml"):
        RunDir(run).task_config_or_none()
    (tmp_path / "mycfg.yaml").unlink()
    with pytest.raises(ConfigError, match=r"the task config it records \(.*mycfg.yaml\) is gone"):
        RunDir(run).task_config_or_none()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda lt, run: lt.calibrate(run, holdout=1.5), r"holdout must be in \[0, 0.9\]"),
        (lambda lt, run: lt.calibrate(run, n_bins=0), r"n_bins must be in \[2, 100\]"),
        (lambda lt, run: lt.publish(run, method="bogus"), "unknown consensus method 'bogus'"),
        (lambda lt, run: lt.agreement(run, tie_policy="bogus"), "unknown tie policy 'bogus'"),
        (lambda lt, run: lt.route(run, blind_share=2), r"blind_share must be in \[0, 1\]"),
    ],
)
def test_the_api_checks_its_arguments_as_the_cli_does(tmp_path, call, match):
    import labeltriage as lt

    with pytest.raises(lt.InputError, match=match):
        call(lt, tmp_path)


def test_an_unknown_backend_is_a_config_error_not_a_missing_key():
    from labeltriage.config import load_task_config
    from labeltriage.errors import ConfigError
    from pipelines.prelabeller import with_overrides

    with pytest.raises(ConfigError, match="unknown backend 'bogus'; choose one of local, openai, openai-batch"):
        with_overrides(load_task_config("sentiment"), backend="bogus")
