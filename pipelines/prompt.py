"""Render a task config into chat messages; hash everything that shapes the prompt."""

from __future__ import annotations

import hashlib
import json

from labeltriage.config import TaskConfig

SYSTEM = "You are a careful data annotator. Answer with one JSON object and nothing else."


def _output_format(config: TaskConfig) -> str:
    if config.task_type == "multi_label":
        example = '{"labels": ["<label>", ...], "confidence": <0.0-1.0>, "reasoning": "<one sentence>"}'
        rule = "labels: every label that applies (an empty list if none)"
    else:
        example = '{"label": "<label>", "confidence": <0.0-1.0>, "reasoning": "<one sentence>"}'
        rule = "label: exactly one of the labels above"
    return (
        f"Respond as JSON: {example}\n"
        f"- {rule}\n"
        "- confidence: your probability (0.0 to 1.0) that the answer is correct\n"
        "- reasoning: one short sentence (at most 15 words) about this text"
    )


def _few_shot(config: TaskConfig) -> str:
    if not config.few_shot:
        return "(none)"
    lines = []
    for example in config.few_shot:
        answer = example.label if isinstance(example.label, str) else list(example.label)
        lines.append(f'Text: "{example.text}"\n{config.label_key}: {json.dumps(answer)}')
    return "\n\n".join(lines)


def _labels(config: TaskConfig) -> str:
    return "\n".join(
        f"- {label.name}: {label.description}" if label.description else f"- {label.name}" for label in config.labels
    )


def render_prompt(config: TaskConfig, text: str) -> str:
    """The prompt template filled in. With a text template this is the system message's
    instructions (the template has no {text}); otherwise the one user message."""
    return config.prompt_template.format(
        description=config.description,
        labels=_labels(config),
        guidelines=config.guidelines.strip() or "(none)",
        few_shot=_few_shot(config),
        text=text,
        output_format=_output_format(config),
    ).strip()


def _example_answer(config: TaskConfig, label: str | list[str], reasoning: str | None) -> str:
    answer: dict[str, object] = {config.label_key: label if isinstance(label, str) else list(label)}
    if reasoning:
        answer["reasoning"] = reasoning
    return json.dumps(answer)


def render_messages(config: TaskConfig, text: str) -> list[dict[str, str]]:
    """Chat messages for one record.

    Without ``text_template``: the system line and one user message (the whole template).
    With it: the instructions in the system message, then each few-shot example as a user turn
    and the assistant's JSON answer, then the record's text as the last user turn."""
    if config.text_template is None:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": render_prompt(config, text)}]
    messages = [{"role": "system", "content": f"{SYSTEM}\n\n{render_prompt(config, text)}"}]
    for example in config.few_shot:
        messages.append({"role": "user", "content": config.text_template.format(text=example.text).strip()})
        messages.append({"role": "assistant", "content": _example_answer(config, example.label, example.reasoning)})
    messages.append({"role": "user", "content": config.text_template.format(text=text).strip()})
    return messages


def prompt_hash(config: TaskConfig) -> str:
    """Changes whenever the text sent to the model (for the same record) or its schema changes."""
    probe = render_messages(config, "\x00TEXT\x00")
    payload = json.dumps({"messages": probe, "schema": config.output_schema()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
