"""A tiny OpenAI-compatible HTTP server for fault injection and latency modelling.

It speaks real HTTP/1.1 (keep-alive, JSON bodies), so the real `openai` client code runs:
retries, backoff, timeouts, response parsing. It is NOT a language model: a valid answer picks
the first label of the request's schema that occurs in the text (else the first label).

Faults are consumed in order from `faults` (one per request): "429", "500", "garbage_json"
(200 with content that is not JSON), "flip_label" (another valid label), "bad_label",
"bad_confidence", "no_confidence", "http_garbage" (a 200 whose body is not JSON at all), "hang"
(sleeps past the client timeout). An answer holds to the request's schema: no ``reasoning`` when
the schema has none.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _properties(body: dict[str, Any]) -> dict[str, Any]:
    schema = (body.get("response_format") or {}).get("schema") or (
        ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    )
    return (schema or {}).get("properties") or {}


def _labels_from(body: dict[str, Any]) -> tuple[str, list[str]]:
    props = _properties(body)
    if "labels" in props:
        return "labels", list(props["labels"]["items"]["enum"])
    if "label" in props:
        return "label", list(props["label"]["enum"])
    return "label", ["positive", "negative"]


def _text_of(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if 'Text: "' not in content:
        return content
    return content.rsplit('Text: "', 1)[1].rsplit('"', 1)[0]


class FakeOpenAIServer:
    def __init__(
        self,
        delay_s: float = 0.0,
        faults: list[str] | None = None,
        hang_s: float = 5.0,
        logprobs: bool | str = True,
    ) -> None:
        self.delay_s = delay_s
        # False: like a server that ignores the logprobs request; "refuse": one that answers 400 to it
        self.logprobs = logprobs
        self.hang_s = hang_s
        self.faults: deque[str] = deque(faults or [])
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.completions = 0
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode()
                    )
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests += 1
                    fault = server.faults.popleft() if server.faults else "ok"
                    server.bodies.append(body)
                if not self.path.endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._complete(body, fault)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _complete(self, body: dict[str, Any], fault: str) -> None:
                if server.delay_s:
                    time.sleep(server.delay_s)
                if fault == "429":
                    self._send(
                        429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}', {"retry-after-ms": "10"}
                    )
                    return
                if fault == "500":
                    self._send(500, b'{"error": {"message": "boom", "type": "server_error"}}', {"retry-after-ms": "10"})
                    return
                if fault == "hang":
                    time.sleep(server.hang_s)
                if server.logprobs == "refuse" and body.get("logprobs"):
                    message = b'{"error": {"message": "this server was not started with logit output", "type": "x"}}'
                    self._send(400, message)
                    return
                if fault == "http_garbage":
                    self._send(200, b"<html>definitely not json</html>")
                    return
                with server._lock:
                    server.completions += 1
                self._send(200, json.dumps(server.completion(body, fault)).encode())

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the default backlog (5) drops bursts of connections
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def completion(self, body: dict[str, Any], fault: str) -> dict[str, Any]:
        key, labels = _labels_from(body)
        text = _text_of(body).lower()
        hits = [label for label in labels if label in text]
        if key == "labels":
            answer: dict[str, Any] = {"labels": hits, "confidence": 0.8, "reasoning": "fake"}
        else:
            answer = {"label": hits[0] if hits else labels[0], "confidence": 0.9, "reasoning": "fake"}
        if _properties(body) and "reasoning" not in _properties(body):  # as a server holding to the schema
            answer.pop("reasoning")
        if fault == "flip_label" and key == "label":  # a valid label, not the one it would give
            answer["label"] = next(label for label in labels if label != answer["label"])
        if fault == "bad_label":
            answer[key] = "not-a-label" if key == "label" else ["not-a-label"]
        elif fault == "bad_confidence":
            answer["confidence"] = 7
        elif fault == "no_confidence":
            answer.pop("confidence")
        content = json.dumps(answer)
        if fault == "garbage_json":
            content = '{"label": "positive", "confid'
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        if body.get("logprobs") and self.logprobs is True:
            pieces = re.findall(r"\w+|\W", content)
            choice["logprobs"] = {
                "content": [{"token": p, "logprob": -0.105, "bytes": None, "top_logprobs": []} for p in pieces]
            }
        return {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
