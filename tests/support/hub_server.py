"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests only.

The real Hub is unreachable from the test machines, so this double speaks the Hub's own HTTP
protocol and the unmodified `huggingface_hub` / `datasets` client code runs against it
(``HF_ENDPOINT=<server.url>``, ``HF_HUB_DISABLE_XET=1`` so uploads take the LFS path). It keeps
repositories in memory with a linear commit history per repo (branch ``main`` only).

Endpoints (those `Dataset.push_to_hub`, `load_dataset`, `HfApi.upload_file` and
`DatasetCard.load/push_to_hub` use):

* ``POST /api/repos/create``; ``GET /api/whoami-v2``; ``POST /api/validate-yaml``
* ``GET /api/{type}s/{ns}/{name}[/revision/{rev}]``; ``GET .../refs``
* ``POST /api/{type}s/{ns}/{name}/preupload/{rev}``: regular vs LFS upload mode
* ``POST /{type}s/{ns}/{name}.git/info/lfs/objects/batch`` and ``PUT /lfs-upload/{oid}``
* ``POST /api/{type}s/{ns}/{name}/commit/{rev}``: NDJSON (header, file, lfsFile, deletedFile,
  deletedFolder)
* ``GET /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]``; ``POST .../paths-info/{rev}``
* ``GET|HEAD /{type}s/{ns}/{name}/resolve/{rev}/{path}`` (with Range)

Auth: write calls need ``Authorization: Bearer <token>`` with the server's token; private repos
answer 401 (as the Hub does, which the client maps to RepositoryNotFoundError) without it.
Unknown routes answer 404 and are recorded in ``server.unhandled`` so a test can show what a
client version started to need.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".gz", ".zip", ".npy", ".pt")
LFS_MIN_SIZE = 10 * 1024 * 1024


def _now() -> str:
    # the Hub's format; huggingface_hub's parser insists on it
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass
class Entry:
    content: bytes
    lfs_oid: str | None = None  # sha256 when stored through LFS

    def as_json(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "path": path, "size": len(self.content)}
        if self.lfs_oid:
            pointer = _lfs_pointer(self.lfs_oid, len(self.content))
            out["oid"] = _git_blob_oid(pointer)
            out["lfs"] = {"oid": self.lfs_oid, "size": len(self.content), "pointerSize": len(pointer)}
        else:
            out["oid"] = _git_blob_oid(self.content)
        return out

    @property
    def etag(self) -> str:
        return self.lfs_oid or _git_blob_oid(self.content)


@dataclass
class Commit:
    oid: str
    title: str
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: list[Commit] = field(default_factory=list)

    def snapshot(self, revision: str) -> Commit | None:
        if revision in ("main", "refs/heads/main"):
            return self.commits[-1]
        return next((c for c in self.commits if c.oid == revision), None)


class HubState:
    """In-memory repositories and LFS blobs; shared by the handler threads under one lock."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self.unhandled: list[str] = []
        self.requests: list[str] = []

    def create(self, repo_type: str, repo_id: str, private: bool) -> Repo | None:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return None
            now = _now()
            repo = Repo(repo_type, repo_id, private, now)
            # the Hub makes an initial commit with a .gitattributes
            repo.commits.append(Commit(self._oid(repo_id, "init"), "initial commit", now, {}))
            self.repos[(repo_type, repo_id)] = repo
            return repo

    @staticmethod
    def _oid(*parts: str) -> str:
        return hashlib.sha1(("\0".join(parts) + datetime.now(UTC).isoformat()).encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: HubHTTPServer
    protocol_version = "HTTP/1.1"

    # ---------------------------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests read server.state.requests instead

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base(self) -> str:
        return self.server.url

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict | list):
            data = json.dumps(body).encode()
            ctype = "application/json"
        else:
            data = body if isinstance(body, bytes) else str(body).encode()
            ctype = "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo | None:
        repo = self.state.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._authorized()):
            # the Hub answers 401 for both "missing" and "private and you are anonymous"
            self._error(401 if not self._authorized() else 404, "Repository not found", "RepoNotFound")
            return None
        if write and not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return None
        return repo

    def _snapshot(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.snapshot(revision)
        if commit is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ---------------------------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    ROUTES: tuple[tuple[str, str, str], ...] = (
        ("POST", r"/api/repos/create", "create_repo"),
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("POST", r"/(?P<type>datasets|spaces)/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("POST", r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("GET", r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)", "repo_info"),
        ("GET", r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)", "repo_info"),
        ("GET", r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)/refs", "refs"),
        ("POST", r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit"),
        (
            "GET",
            r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?",
            "tree",
        ),
        ("POST", r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("GET", r"/(?P<type>datasets|spaces)/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ("GET", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    )

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        method = "GET" if self.command == "HEAD" else self.command
        self.query = parse_qs(split.query)
        self.state.requests.append(f"{self.command} {split.path}")
        for verb, pattern, name in self.ROUTES:
            if verb != method:
                continue
            match = re.fullmatch(pattern, split.path)
            if match:
                params = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
                if "type" in params:
                    params["type"] = params["type"].rstrip("s")
                else:
                    params["type"] = "model"
                try:
                    getattr(self, f"h_{name}")(**params)
                except Exception as exc:  # a bug in the double must show up as a 500, not a hang
                    self._error(500, f"{type(exc).__name__}: {exc}")
                return
        self.state.unhandled.append(f"{self.command} {self.path}")
        self._body()
        self._error(404, f"no route for {self.command} {split.path}")

    # ---------------------------------------------------------------------------------- handlers
    def h_create_repo(self, type: str) -> None:  # noqa: A002
        if not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return
        payload = json.loads(self._body() or b"{}")
        name, org = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if not name or not org:
            self._error(400, "this test Hub needs a namespaced repo id (organization/name)")
            return
        repo_id = f"{org}/{name}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.base}/{prefix}{repo_id}"
        if self.state.create(repo_type, repo_id, bool(payload.get("private", False))) is None:
            self._send(409, {"error": "You already created this repo", "url": url})
        else:
            self._send(200, {"url": url, "name": repo_id})

    def h_whoami(self, type: str) -> None:  # noqa: A002
        if not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return
        self._send(200, {"type": "user", "name": "tester", "orgs": [], "auth": {"accessToken": {"role": "write"}}})

    def h_validate_yaml(self, type: str) -> None:  # noqa: A002
        self._body()
        self._send(200, {"errors": [], "warnings": []})

    def h_repo_info(self, type: str, repo: str, rev: str = "main") -> None:  # noqa: A002
        r = self._repo(type, repo)
        if r is None:
            return
        commit = self._snapshot(r, rev)
        if commit is None:
            return
        card_data = None
        readme = commit.files.get("README.md")
        if readme is not None:
            card_data = _front_matter(readme.content.decode("utf-8", "replace"))
        self._send(
            200,
            {
                "_id": hashlib.md5(repo.encode()).hexdigest()[:24],
                "id": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "private": r.private,
                "gated": False,
                "disabled": False,
                "createdAt": r.created_at,
                "lastModified": commit.date,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "cardData": card_data,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            },
        )

    def h_refs(self, type: str, repo: str) -> None:  # noqa: A002
        r = self._repo(type, repo)
        if r is None:
            return
        head = r.commits[-1].oid
        self._send(
            200,
            {
                "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": head}],
                "tags": [],
                "converts": [],
            },
        )

    def h_preupload(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
        r = self._repo(type, repo, write=True)
        if r is None:
            return
        payload = json.loads(self._body() or b"{}")
        files = []
        for f in payload.get("files", []):
            lfs = f["path"].endswith(LFS_SUFFIXES) or int(f.get("size", 0)) >= LFS_MIN_SIZE
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._send(200, {"files": files, "commitOid": r.commits[-1].oid})

    def h_lfs_batch(self, repo: str, type: str = "model") -> None:  # noqa: A002
        r = self._repo(type, repo, write=True)
        if r is None:
            return
        payload = json.loads(self._body() or b"{}")
        objects = []
        for obj in payload.get("objects", []):
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if payload.get("operation", "upload") == "upload" and obj["oid"] not in self.state.blobs:
                item["actions"] = {"upload": {"href": f"{self.base}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(item)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def h_lfs_put(self, oid: str, type: str) -> None:  # noqa: A002
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, "sha256 of the uploaded content does not match the oid")
            return
        with self.state.lock:
            self.state.blobs[oid] = data
        self._send(200, b"")

    def h_commit(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
        r = self._repo(type, repo, write=True)
        if r is None:
            return
        if rev not in ("main", "refs/heads/main"):
            self._error(404, f"this test Hub only commits to main, got {rev}", "RevisionNotFound")
            return
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        with self.state.lock:
            files = dict(r.commits[-1].files)
            title = "commit"
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    title = value.get("summary") or title
                elif key == "file":
                    content = value["content"]
                    raw = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    files[value["path"]] = Entry(raw)
                elif key == "lfsFile":
                    blob = self.state.blobs.get(value["oid"])
                    if blob is None:
                        self._error(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                        return
                    files[value["path"]] = Entry(blob, lfs_oid=value["oid"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
                else:
                    self._error(400, f"unsupported commit operation {key!r}")
                    return
            oid = HubState._oid(repo, title, str(len(r.commits)))
            r.commits.append(Commit(oid, title, _now(), files))
        prefix = "" if type == "model" else f"{type}s/"
        self._send(200, {"commitUrl": f"{self.base}/{prefix}{repo}/commit/{oid}", "commitOid": oid, "success": True})

    def _entries(self, commit: Commit, path: str, recursive: bool) -> list[dict[str, Any]] | None:
        prefix = path.strip("/")
        if prefix and prefix in commit.files:
            return None  # a file, not a folder: the Hub answers 404 on tree/<file>
        head = prefix + "/" if prefix else ""
        out: dict[str, dict[str, Any]] = {}
        for p, e in sorted(commit.files.items()):
            if not p.startswith(head):
                continue
            rest = p[len(head) :].split("/")
            for depth in range(1, len(rest)):
                folder = head + "/".join(rest[:depth])
                if recursive or depth == 1:
                    out.setdefault(folder, {"type": "directory", "path": folder, "oid": _git_blob_oid(folder.encode())})
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                out[p] = e.as_json(p)
        if prefix and not out:
            return None
        return list(out.values())

    def h_tree(self, type: str, repo: str, rev: str, path: str | None = None) -> None:  # noqa: A002
        r = self._repo(type, repo)
        if r is None:
            return
        commit = self._snapshot(r, rev)
        if commit is None:
            return
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = self._entries(commit, path or "", recursive)
        if entries is None:
            self._error(404, f"{path} not found", "EntryNotFound")
            return
        self._send(200, entries)

    def h_paths_info(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
        r = self._repo(type, repo)
        if r is None:
            return
        commit = self._snapshot(r, rev)
        if commit is None:
            return
        body = self._body().decode()
        ctype = self.headers.get("Content-Type", "")
        paths = json.loads(body).get("paths", []) if "json" in ctype else parse_qs(body).get("paths", [])
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                out.append(commit.files[p].as_json(p))
            elif any(f.startswith(p + "/") for f in commit.files):
                out.append({"type": "directory", "path": p, "oid": _git_blob_oid(p.encode())})
        self._send(200, out)

    def h_resolve(self, repo: str, rev: str, path: str, type: str = "model") -> None:  # noqa: A002
        r = self._repo(type, repo)
        if r is None:
            return
        commit = self._snapshot(r, rev)
        if commit is None:
            return
        entry = commit.files.get(path)
        if entry is None:
            self._send(
                404,
                {"error": "Entry not found"},
                {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": commit.oid},
            )
            return
        data = entry.content
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs_oid:
            headers["X-Linked-Etag"] = f'"{entry.lfs_oid}"'
            headers["X-Linked-Size"] = str(len(data))
        status = 200
        range_header = self.headers.get("Range")
        if range_header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if m:
                start = int(m.group(1)) if m.group(1) else max(len(data) - int(m.group(2)), 0)
                end = int(m.group(2)) if m.group(1) and m.group(2) else len(data) - 1
                end = min(end, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data = data[start : end + 1]
                status = 206
        headers["Content-Length"] = str(len(data))
        self._send(status, data, headers)


def _front_matter(text: str) -> dict[str, Any] | None:
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    import yaml

    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    url: str


class HubServer:
    """Start/stop the test Hub on 127.0.0.1 (a free port by default).

    Example::

        with HubServer(token="hf_test") as hub:
            env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1"}
            ...  # run huggingface_hub / datasets code with that environment
    """

    def __init__(self, token: str = "hf_test_token", host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self._httpd = HubHTTPServer((host, port), _Handler)
        self._httpd.state = HubState(token)
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._httpd.url = self.url
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> HubState:
        return self._httpd.state

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def files(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        """Latest content of every file in a repo (for assertions)."""
        repo = self.state.repos[(repo_type, repo_id)]
        return {p: e.content for p, e in repo.commits[-1].files.items()}


if __name__ == "__main__":  # manual use: python -m tests.support.hub_server
    import time

    server = HubServer().start()
    print(f"test Hub on {server.url} (token {server.token})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
