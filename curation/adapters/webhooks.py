"""Event-driven feedback loop: a listener for Argilla's response webhooks.

Argilla's worker POSTs each event, signed as Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), to the registered URL. The listener verifies the
signature, counts submitted responses of one dataset, and calls ``on_batch`` every ``every`` of
them (one call at a time, outside the HTTP handler, so Argilla's delivery never waits on a
retrain).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

RESPONSE_EVENTS = ("response.created", "response.updated")


def server_url(server: ThreadingHTTPServer) -> str:
    """``http://<host>:<port>`` of a bound local HTTP server."""
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host
    return f"http://{host}:{port}"


class EventBatcher:
    """Counts events and calls ``on_batch(n_new)`` every ``every`` of them, one call at a time, in a
    worker thread (so the HTTP handler that counts never waits on a retrain). An exception in
    ``on_batch`` is kept in :attr:`errors` and the worker goes on. Shared by the Argilla webhook
    listener and the Label Studio ML backend."""

    def __init__(self, every: int, on_batch: Callable[[int], None]):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.on_batch = on_batch
        self.received = 0
        self.batches = 0
        self.errors: list[str] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def add(self) -> None:
        """Count one event; every ``every`` of them, queue a call of ``on_batch``."""
        with self._lock:
            self.received += 1
            self._pending += 1
            if self._pending >= self.every:
                self._jobs.put(self._pending)
                self._pending = 0

    def _work(self) -> None:
        while (n_new := self._jobs.get()) is not None:
            try:
                self.on_batch(n_new)
                self.batches += 1
            except Exception as exc:  # a failed round is reported; the events keep being counted
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._work, daemon=True, name="event-batches")
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker after the calls queued so far (waiting up to ``timeout`` s)."""
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout)


class BackgroundHTTPServer:
    """A local HTTP server (``_server``) served in a daemon thread, with an optional
    :class:`EventBatcher` (``batcher``) started and stopped with it."""

    _server: ThreadingHTTPServer
    batcher: EventBatcher | None

    def _start_serving(self) -> None:
        if self.batcher is not None:
            self.batcher.start()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _stop_serving(self) -> None:
        """Stop serving, free the port, wait (up to 30 s) for a running ``on_batch``."""
        self._server.shutdown()
        self._server.server_close()
        if self.batcher is not None:
            self.batcher.stop()


class ResponseWebhookListener(BackgroundHTTPServer):
    """An HTTP listener on 127.0.0.1 that triggers ``on_batch(n_new)`` every ``every`` submitted responses.

    The socket is bound at construction, so :attr:`url` can be registered with Argilla before
    :meth:`start` receives the webhook's secret.
    """

    def __init__(self, dataset_id: str, every: int, on_batch: Callable[[int], None], port: int = 0):
        """Bind 127.0.0.1:``port`` (0: a free port) for ``dataset_id``'s submitted responses.

        ``on_batch`` runs in a worker thread with the number of new submitted responses each time
        ``every`` of them have arrived. Raises ``ValueError`` when ``every`` < 1, ``OSError`` when
        the port is taken.
        """
        self._verifier: Webhook | None = None
        self.dataset_id = str(dataset_id)
        self.batcher: EventBatcher = EventBatcher(every, on_batch)
        self.rejected = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())

    @property
    def received(self) -> int:
        """Submitted responses of the dataset counted so far."""
        return self.batcher.received

    @property
    def batches(self) -> int:
        """Calls of ``on_batch`` that finished."""
        return self.batcher.batches

    @property
    def url(self) -> str:
        """The address to register as the Argilla webhook: ``http://127.0.0.1:<port>/argilla-webhook``."""
        return f"{server_url(self._server)}/argilla-webhook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                verifier = listener._verifier
                assert verifier is not None, "start() sets the verifier before the server answers"
                try:
                    event = verifier.verify(body.decode(), dict(self.headers.items()))
                except WebhookVerificationError:
                    listener.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                listener._accept(event if isinstance(event, dict) else json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # keep request lines out of the logs
                return None

        return Handler

    def _accept(self, event: dict) -> None:
        if event.get("type") not in RESPONSE_EVENTS:
            return
        data = event.get("data") or {}
        if str(((data.get("record") or {}).get("dataset") or {}).get("id")) != self.dataset_id:
            return
        if data.get("status") != "submitted":
            return
        self.batcher.add()

    def start(self, secret: str) -> ResponseWebhookListener:
        """Serve in the background; ``secret`` is the webhook's (known once it is registered at :attr:`url`)."""
        self._verifier = Webhook(secret)
        self._start_serving()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and wait (up to 30 s) for a running ``on_batch``."""
        self._stop_serving()
