"""An HTTP double of OpenAI's Files + Batches API (the subset distilabel's batch route uses).

POST /v1/files (multipart upload, purpose=batch), POST /v1/batches, GET /v1/batches/{id}
(reports `in_progress` for the first `polls_before_done` polls, then `completed`), GET
/v1/files/{id}/content (the output JSONL: one line per request with its `custom_id`). Answers
come from `FakeOpenAIServer.completion`, so they are valid JSON for the task's schema.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.llm_fake_server import FakeOpenAIServer


class FakeBatchServer:
    def __init__(self, polls_before_done: int = 1, bad_custom_ids: tuple[str, ...] = ()) -> None:
        self.polls_before_done = polls_before_done
        self.bad_custom_ids = set(bad_custom_ids)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.uploaded_requests: list[dict[str, Any]] = []
        self._answers = FakeOpenAIServer()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, raw: bool = False) -> None:
                data = payload if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/files"):
                    lines = [ln for ln in body.split(b"\n") if ln.startswith(b'{"custom_id"')]
                    with server._lock:
                        file_id = f"file-in-{len(server.files) + 1}"
                        server.files[file_id] = b"\n".join(lines)
                    self._send(200, server._file_object(file_id, len(body), "batch"))
                elif self.path.endswith("/batches"):
                    request = json.loads(body)
                    with server._lock:
                        batch_id = f"batch_{len(server.batches) + 1}"
                        server.batches[batch_id] = {
                            "id": batch_id,
                            "object": "batch",
                            "endpoint": request["endpoint"],
                            "input_file_id": request["input_file_id"],
                            "completion_window": request["completion_window"],
                            "status": "validating",
                            "created_at": int(time.time()),
                            "metadata": request.get("metadata"),
                        }
                        server.polls[batch_id] = 0
                    self._send(200, server.batches[batch_id])
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_GET(self) -> None:
                parts = self.path.rstrip("/").split("/")
                if "batches" in parts:
                    batch_id = parts[-1]
                    with server._lock:
                        batch = server.batches.get(batch_id)
                        if batch is None:
                            self._send(404, {"error": {"message": "no such batch"}})
                            return
                        server.polls[batch_id] += 1
                        if server.polls[batch_id] > server.polls_before_done and batch["status"] != "completed":
                            batch.update(status="completed", output_file_id=server._run(batch))
                        elif batch["status"] == "validating":
                            batch["status"] = "in_progress"
                    self._send(200, batch)
                elif parts[-1] == "content":
                    self._send(200, server.files[parts[-2]], raw=True)
                else:
                    self._send(404, {"error": {"message": "not found"}})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @staticmethod
    def _file_object(file_id: str, size: int, purpose: str) -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    def _run(self, batch: dict[str, Any]) -> str:
        out = []
        for line in self.files[batch["input_file_id"]].split(b"\n"):
            request = json.loads(line)
            self.uploaded_requests.append(request)
            fault = "bad_label" if request["custom_id"] in self.bad_custom_ids else "ok"
            completion = self._answers.completion(request["body"], fault)
            out.append(
                {
                    "id": f"req-{request['custom_id']}",
                    "custom_id": request["custom_id"],
                    "response": {"status_code": 200, "request_id": "r", "body": completion},
                    "error": None,
                }
            )
        out.reverse()  # the real API does not promise order: results are matched by custom_id
        file_id = f"file-out-{batch['id']}"
        self.files[file_id] = "\n".join(json.dumps(o) for o in out).encode()
        return file_id

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeBatchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
