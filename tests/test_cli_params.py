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

    with pytest.raises(ConfigError, match=r"sentimnt: no such file\. Fix: .*shipped one \(aspects, sentiment\)"):
        RunDir(tmp_path, "sentimnt").task_config()
