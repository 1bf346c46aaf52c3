"""Task configs: the shipped ones load; every error names the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from labeltriage.config import ConfigError, load_task_config

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "datasets_config" / "sentiment.yaml"
ASPECTS = ROOT / "datasets_config" / "aspects.yaml"


def test_shipped_configs_load() -> None:
    sentiment = load_task_config(SENTIMENT)
    assert sentiment.label_names == ["positive", "negative", "neutral", "mixed"]
    assert sentiment.task_type == "single_label"
    assert all(label.description for label in sentiment.labels)
    assert sentiment.thresholds.target_precision == 0.95
    assert sentiment.argilla.dataset == "sentiment-review"
    aspects = load_task_config(ASPECTS)
    assert aspects.task_type == "multi_label"
    assert aspects.label_names == ["battery", "screen", "camera", "price", "durability"]


def test_schema_accepts_valid_and_rejects_invalid_answers() -> None:
    schema = load_task_config(SENTIMENT).output_schema()
    assert list(schema["properties"]) == ["label", "confidence", "reasoning"]
    jsonschema.validate({"label": "mixed", "confidence": 0.4, "reasoning": "both"}, schema)
    for bad in (
        {"label": "great", "confidence": 0.4, "reasoning": ""},
        {"label": "mixed", "confidence": 1.5, "reasoning": ""},
        {"label": "mixed", "reasoning": ""},
        {"label": "mixed", "confidence": "high", "reasoning": ""},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    multi = load_task_config(ASPECTS).output_schema()
    jsonschema.validate({"labels": ["battery", "price"], "confidence": 0.7, "reasoning": "x"}, multi)
    jsonschema.validate({"labels": [], "confidence": 0.7, "reasoning": "x"}, multi)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"labels": ["wifi"], "confidence": 0.7, "reasoning": "x"}, multi)


def test_the_prelabel_answer_leaves_the_reasoning_out_unless_reasoning_is_all(tmp_path: Path) -> None:
    config = load_task_config(SENTIMENT)
    assert config.model.generation.reasoning == "all" and config.answer_schema() == config.output_schema()
    for mode in ("review_only", "none"):
        path = _write_variant(tmp_path, lambda d, m=mode: d["model"]["generation"].update(reasoning=m))
        schema = load_task_config(path).answer_schema()
        assert list(schema["properties"]) == schema["required"] == ["label", "confidence"]
        jsonschema.validate({"label": "mixed", "confidence": 0.4}, schema)
        assert load_task_config(path).output_schema() == config.output_schema()  # the prompt's schema stays


def _write_variant(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(SENTIMENT.read_text())
    mutate(data)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d["model"].update(backend="olama"), "model.backend", ["local", "openai"]),
        (
            lambda d: d["thresholds"].update(target_precision=0.2),
            "thresholds.target_precision",
            ["0.2 is at or below chance for 4 labels (1/4 = 0.25", "Fix: use a precision target above 0.25"],
        ),  # fmt: skip
        (lambda d: d["model"].update(temprature=0.2), "model.temprature", ["unknown key", "Fix"]),
        (lambda d: d["model"]["generation"].update(temprature=0.2), "model.generation.temprature", ["temperature"]),
        (lambda d: d["few_shot"][0].update(label="great"), "few_shot.0.label", ["not in labels", "Fix"]),
        (lambda d: d["confidence"].update(routing="consistency"), "confidence.consistency_samples", ["Fix"]),
        (lambda d: d["argilla"].update(dataset=""), "argilla.dataset", ["at least 1", "Fix"]),
        (lambda d: d.update(argilla="sentiment"), "argilla", ["expected a mapping", "Fix"]),
        (lambda d: d.update(labels="positive, negative"), "labels", ["expected a list", "- item"]),
        (lambda d: d["few_shot"].append("Great!"), "few_shot.4", ["expected a mapping", "- text:"]),
        (lambda d: d.update(prompt_template="Classify: {txt}"), "prompt_template", ["{txt}", "{text}"]),
        (lambda d: d["labels"].append({"name": "positive"}), "labels", ["duplicate", "Fix"]),
        (lambda d: d.update(text_template="Review: {body}"), "text_template", ["{body}", "{text}"]),
        (lambda d: d.update(text_template="Review"), "text_template", ["no {text}", "Fix"]),
        (lambda d: d.update(prompt_template="{labels} {text}"), "prompt_template", ["remove {text}", "Fix"]),
        (lambda d: d.pop("text_template"), "prompt_template", ["no {text}", "Fix"]),
        (lambda d: d["model"]["price"].update(input=-1), "model.price.input", ["greater than or equal", "Fix"]),
        (lambda d: d["model"].update(parallel=0), "model.parallel", ["greater than or equal to 1"]),
        (lambda d: d["model"].update(parallel=True), "model.parallel", ["integer"]),
        (lambda d: d["model"].update(backend="openai", parallel=8), "model.parallel", ["only the local", "Fix"]),
        (
            lambda d: d["model"]["generation"].update(reasoning="some"),
            "model.generation.reasoning",
            ["'all'", "'review_only'", "'none'"],
        ),  # fmt: skip
    ],
)
def test_errors_name_file_key_and_fix(tmp_path: Path, mutate, key: str, words: list[str]) -> None:
    path = _write_variant(tmp_path, mutate)
    with pytest.raises(ConfigError) as caught:
        load_task_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{key}:" in message
    for word in words:
        assert word in message, message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_task_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_task_config(broken)


@pytest.mark.parametrize(
    ("text", "where", "fix"),
    [
        ("name: yesno\ndescription: Note: be brief\n", "line 2, column 18", "quote a value that contains ': '"),
        ("name: yesno\nlabels: [a, b\nprompt_template: x\n", "line 3, column 16", "close the [ list with ]"),
        ('name: "yesno\n', "line 2, column 1", "close the quote"),
        ("name: yesno\n\tlabels: [a, b]\n", "line 2, column 1", "indent with spaces, not tabs"),
    ],
)
def test_yaml_syntax_error_is_one_line_with_file_line_and_fix(tmp_path: Path, text: str, where: str, fix: str) -> None:
    broken = tmp_path / "broken_task.yaml"
    broken.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_task_config(broken)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{broken}: {where}: not valid YAML: "), message
    assert f". Fix: {fix}" in message, message


def test_few_shot_examples_become_chat_turns_before_the_text() -> None:
    from pipelines.prompt import prompt_hash, render_messages

    config = load_task_config(SENTIMENT)
    messages = render_messages(config, "Woefully pretentious.")
    n = len(config.few_shot)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * n + ["user"]
    assert "Labels:" in messages[0]["content"] and "- mixed:" in messages[0]["content"]
    assert "Woefully" not in messages[0]["content"]  # the record's text is only in the last turn
    assert messages[-1]["content"] == "<text>\nWoefully pretentious.\n</text>"  # marked as data
    for example, user, answer in zip(config.few_shot, messages[1::2], messages[2::2], strict=False):
        assert user["content"] == f"<text>\n{example.text}\n</text>"
        assert yaml.safe_load(answer["content"])["label"] == example.label
    # everything before the text is the same for every record (the local model's KV cache reuses it)
    assert render_messages(config, "Another text.")[:-1] == messages[:-1]
    # the single-message layout is still available, and the hash tells the two apart
    inline = config.model_copy(update={"text_template": None, "prompt_template": "{few_shot}\nText: {text}"})
    assert [m["role"] for m in render_messages(inline, "x")] == ["system", "user"]
    assert config.few_shot[0].text in render_messages(inline, "x")[1]["content"]
    assert prompt_hash(inline) != prompt_hash(config)


def _write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


MINIMAL = """\
name: yesno
description: Does the review recommend the product?
prompt_template: "Labels: {labels}\\nText: {text}"
"""


def test_labels_may_be_plain_names(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path, MINIMAL + "labels: [great, other]\nfew_shot:\n  - text: Loved it\n    label: great\n")
    config = load_task_config(path)
    assert config.label_names == ["great", "other"]
    assert [label.description for label in config.labels] == ["", ""]
    assert config.output_schema()["properties"]["label"]["enum"] == ["great", "other"]
    # the two spellings mix: a name alone, or a mapping with a description
    mixed = _write_yaml(tmp_path, MINIMAL + "labels:\n  - great\n  - name: other\n    description: anything else\n")
    assert [(x.name, x.description) for x in load_task_config(mixed).labels] == [
        ("great", ""),
        ("other", "anything else"),
    ]


def test_unquoted_yes_no_and_numbers_say_quote_them(tmp_path: Path) -> None:
    path = _write_yaml(
        tmp_path,
        MINIMAL
        + "labels:\n  - yes\n  - name: no\n    description: not recommended\n  - 3\n"
        + "few_shot:\n  - text: Buy it\n    label: yes\n  - text: Meh\n    label: [Off]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_task_config(path)
    assert str(caught.value).splitlines() == [
        f'{path}: labels.0: YAML reads the unquoted yes as the boolean True. Fix: quote it: "yes"',
        f'{path}: labels.1.name: YAML reads the unquoted no as the boolean False. Fix: quote it: "no"',
        f'{path}: labels.2: YAML reads the unquoted 3 as a number. Fix: quote it: "3"',
        f'{path}: few_shot.0.label: YAML reads the unquoted yes as the boolean True. Fix: quote it: "yes"',
        f'{path}: few_shot.1.label.0: YAML reads the unquoted Off as the boolean False. Fix: quote it: "Off"',
    ]
    quoted = _write_yaml(tmp_path, MINIMAL + 'labels: ["yes", "no"]\nfew_shot:\n  - text: Buy it\n    label: "yes"\n')
    assert load_task_config(quoted).label_names == ["yes", "no"]


def test_a_text_written_as_a_number_says_quote_it(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path, MINIMAL + "labels: [a, b]\nfew_shot:\n  - text: 42\n    label: a\n")
    with pytest.raises(ConfigError) as caught:
        load_task_config(path)
    assert str(caught.value) == f'{path}: few_shot.0.text: YAML reads the unquoted 42 as a number. Fix: quote it: "42"'


def test_argilla_section_is_optional(tmp_path: Path) -> None:
    # prelabel, calibrate and route never use it; push/pull/loop name the dataset after the task
    config = load_task_config(_write_variant(tmp_path, lambda d: d.pop("argilla")))
    assert config.argilla.model_dump() == {
        "dataset": "sentiment",
        "workspace": "labeltriage",
        "question": "label",
        "min_submitted": 1,
    }
    partial = load_task_config(_write_variant(tmp_path, lambda d: d.update(argilla={"workspace": "team"})))
    assert (partial.argilla.dataset, partial.argilla.workspace) == ("sentiment", "team")
    empty = load_task_config(_write_variant(tmp_path, lambda d: d.update(argilla=None)))
    assert empty.argilla.dataset == "sentiment"
    assert load_task_config(SENTIMENT).argilla.dataset == "sentiment-review"  # an explicit name wins


def test_parallel_overrides_name_the_value_and_the_fix() -> None:
    """`--parallel` / ``api.prelabel(parallel=)``: one line with the fix, no CLI flag named in the API's
    words, no raw TypeError for a string; the local backend takes it, another backend refuses it."""
    from pipelines.prelabeller import with_overrides

    config = load_task_config(SENTIMENT)
    assert with_overrides(config, parallel=3).model.parallel == 3
    for bad in (0, 65, "3", True):
        with pytest.raises(ConfigError, match=r"choose an integer 1 to 64"):
            with_overrides(config, parallel=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"the openai backend does not decode records together\. Fix"):
        with_overrides(config, backend="openai", parallel=2)
    with_parallel = with_overrides(config, parallel=4)
    with pytest.raises(ConfigError, match=r"model\.parallel"):  # set in the config, then --backend openai
        with_overrides(with_parallel, backend="openai")


def test_records_per_batch_keeps_the_requests_in_flight_busy() -> None:
    """A batch waits for its slowest answer: a batch smaller than ``concurrency`` would cap the
    requests in flight (64 per batch at concurrency 128 gave 172 records/s against a 200 ms API)."""
    from labeltriage.config import ModelSettings

    assert ModelSettings(backend="openai").records_per_batch() == 64  # concurrency 16
    assert ModelSettings(backend="openai", concurrency=128).records_per_batch() == 512
    assert ModelSettings(backend="openai", concurrency=128, batch_size=100).records_per_batch() == 100
    assert ModelSettings(backend="local", parallel=3).records_per_batch() == 12
    with pytest.raises(ValueError, match="batch_size"):
        ModelSettings(backend="openai", batch_size=True)  # type: ignore[arg-type]
