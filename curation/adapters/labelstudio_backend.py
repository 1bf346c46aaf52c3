"""A Label Studio ML backend: the product's pre-labels served over Label Studio's ML-backend protocol.

Label Studio calls ``GET /health``, ``POST /setup`` (answered with the model version),
``POST /predict`` (``{"tasks": [...]}`` -> ``{"results": [...]}``, one entry per task, in order: a
list of predictions, empty for a task that must get none) and ``POST /webhook`` (every project
event, since Label Studio registers ``<backend>/webhook`` when the backend is connected). The
protocol is small HTTP; the stale ``label-studio-ml`` package (Flask 1.1 pins) is not needed.

The predictions themselves come from a ``predict(tasks) -> list[list[prediction]]`` callable
(:func:`labeltriage.api.label_studio_predictor` builds it from a run: its pre-labels, the same
cache for new texts, the calibrated score, nothing for blind tasks). Annotation events
(``ANNOTATION_CREATED``, ``ANNOTATION_UPDATED``) call ``on_batch(n_new)`` every ``every`` of them,
in a worker thread, so Label Studio's request never waits on a retrain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from curation.adapters.webhooks import BackgroundHTTPServer, EventBatcher, server_url

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
Predictor = Callable[[list[dict[str, Any]]], list[list[dict[str, Any]]]]


class MLBackend(BackgroundHTTPServer):
    """An ML backend on 127.0.0.1:``port`` (0 = a free port); :attr:`url` is what to connect.

    ``predict`` maps Label Studio's tasks to their predictions; ``model_version`` is what
    ``/setup`` reports (Label Studio shows annotators only the predictions of the project's model
    version). ``on_batch`` (optional) runs every ``every`` annotation events. Counters:
    ``predicted`` (tasks answered with a prediction), ``events``, ``batches``, ``errors``.
    """

    def __init__(
        self,
        predict: Predictor,
        model_version: str,
        *,
        port: int = 0,
        on_batch: Callable[[int], None] | None = None,
        every: int = 1,
    ):
        self.predict = predict
        self.model_version = model_version
        self.predicted = 0
        self.errors: list[str] = []  # failed /predict calls
        self.batcher = EventBatcher(every, on_batch) if on_batch is not None else None
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())

    @property
    def events(self) -> int:
        """Annotation events counted so far (0 without ``on_batch``)."""
        return self.batcher.received if self.batcher is not None else 0

    @property
    def round_errors(self) -> list[str]:
        """Failed ``on_batch`` calls."""
        return self.batcher.errors if self.batcher is not None else []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the URL to connect in Label Studio (Model settings, or the API)."""
        return server_url(self._server)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # no request lines on stderr
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0].rstrip("/") in ("", "/health"):
                    self._reply(
                        200, {"status": "UP", "model_class": "labeltriage", "model_version": backend.model_version}
                    )
                else:
                    self._reply(404, {"error": f"no such path {self.path}"})

            def do_POST(self) -> None:  # noqa: N802
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) or b"{}")
                except (ValueError, json.JSONDecodeError) as exc:
                    self._reply(400, {"error": f"the body is not JSON: {exc}"})
                    return
                path = self.path.split("?")[0].rstrip("/")
                if path == "/setup":
                    self._reply(200, {"model_version": backend.model_version})
                elif path == "/predict":
                    self._predict(body)
                elif path == "/webhook":
                    backend._event(body)
                    self._reply(200, {"status": "ok"})
                else:
                    self._reply(404, {"error": f"no such path {self.path}"})

            def _predict(self, body: dict[str, Any]) -> None:
                tasks = body.get("tasks")
                if not isinstance(tasks, list):
                    self._reply(400, {"error": "the body needs a `tasks` list"})
                    return
                try:
                    results = backend.predict(tasks)
                except Exception as exc:  # a failed model call is an HTTP error, never a dead backend
                    backend.errors.append(f"{type(exc).__name__}: {exc}")
                    self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})
                    return
                backend.predicted += sum(1 for made in results if made)
                self._reply(200, {"results": results, "model_version": backend.model_version})

        return Handler

    def _event(self, body: dict[str, Any]) -> None:
        if body.get("action") in ANNOTATION_EVENTS and self.batcher is not None:
            self.batcher.add()

    def start(self) -> MLBackend:
        """Serve in background threads; returns self."""
        self._start_serving()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (waiting up to 30 s for a running feedback round)."""
        self._stop_serving()

    def __enter__(self) -> MLBackend:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
