"""A fake Hugging Face Hub for the pods tier: the part of the Hub's HTTP API that huggingface_hub 0.34
(snapshot_download, hf_hub_download, HfApi.repo_exists) and datasets 3.6 (load_dataset of a repo
of parquet files) use, over the files of a folder:

    <root>/models/<owner>/<name>/...      <root>/datasets/<owner>/<name>/...

Clients reach it through HF_ENDPOINT. Models are gated like meta-llama's: without an
`Authorization: Bearer hf_...` header they answer 401, as the real Hub does. Range requests are
served (hf_transfer downloads in parallel ranges).

    python hub.py --root DIR [--port 8080]
"""

import argparse
import hashlib
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

ROOT = Path(".")
KINDS = {"models": "models", "datasets": "datasets"}


def repo_dir(kind: str, repo: str) -> Path:
    return ROOT / kind / repo


def files_of(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def sha_of(d: Path) -> str:
    h = hashlib.sha1()
    for f in files_of(d):
        h.update(f.encode())
        h.update(str((d / f).stat().st_size).encode())
    return h.hexdigest()


def etag(p: Path) -> str:
    st = p.stat()
    return hashlib.sha1(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


def entry(d: Path, rel: str) -> dict:
    p = d / rel
    if p.is_dir():
        return {"type": "directory", "oid": sha_of(p), "path": rel}
    return {"type": "file", "oid": etag(p), "size": p.stat().st_size, "path": rel}


def sibling(d: Path, rel: str, blobs: bool) -> dict:
    if not blobs:
        return {"rfilename": rel}
    size = (d / rel).stat().st_size
    return {"rfilename": rel, "blobId": etag(d / rel), "size": size}


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # noqa: D102 - one line per request on stderr
        sys.stderr.write("hub: " + (fmt % args) + "\n")

    # -- helpers --------------------------------------------------------------------------------
    def send_json(self, obj, code=200):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, code, message, error_code=None):
        self.send_response(code)
        body = json.dumps({"error": message}).encode()
        if error_code:
            self.send_header("X-Error-Code", error_code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def authorized(self, kind: str) -> bool:
        if kind != "models":
            return True
        return bool(re.match(r"Bearer hf_\S+$", self.headers.get("Authorization", "")))

    def repo_info(self, kind: str, repo: str):
        # files_metadata=True asks ?blobs=True: the Hub then lists each file's size (what the download's
        # progress total is summed from).
        blobs = parse_qs(urlparse(self.path).query).get("blobs", [""])[0].lower() == "true"
        d = repo_dir(kind, repo)
        if not d.is_dir():
            return self.fail(404, "Repository not found", "RepoNotFound")
        if not self.authorized(kind):
            return self.fail(401, "Access to this gated repo is restricted: log in with a token.", "GatedRepo")
        self.send_json({
            "_id": repo, "id": repo, "modelId": repo, "sha": sha_of(d), "private": False, "gated": "manual" if kind == "models" else False,
            "disabled": False, "lastModified": "2024-09-25T00:00:00.000Z", "tags": [], "cardData": {},
            "siblings": [sibling(d, f, blobs) for f in files_of(d)],
        })

    def send_file(self, kind: str, repo: str, rel: str):
        d = repo_dir(kind, repo)
        p = (d / rel).resolve()
        if not d.is_dir() or not str(p).startswith(str(d.resolve()) + os.sep) or not p.is_file():
            return self.fail(404, "Entry not found", "EntryNotFound")
        if not self.authorized(kind):
            return self.fail(401, "Access to this gated repo is restricted: log in with a token.", "GatedRepo")
        size = p.stat().st_size
        start, end = 0, size - 1
        rng = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        self.send_response(206 if rng else 200)
        if rng:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else size - 1, size - 1)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        tag = etag(p)
        self.send_header("ETag", f'"{tag}"')
        self.send_header("X-Repo-Commit", sha_of(d))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command == "HEAD":
            return
        with p.open("rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def tree(self, kind: str, repo: str, sub: str, query: dict):
        d = repo_dir(kind, repo)
        base = d / sub if sub else d
        if not base.is_dir():
            return self.fail(404, "Entry not found", "EntryNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        items = base.rglob("*") if recursive else base.iterdir()
        self.send_json([entry(d, str(p.relative_to(d))) for p in sorted(items)])

    # -- routes ---------------------------------------------------------------------------------
    def route(self):
        u = urlparse(self.path)
        path, query = unquote(u.path), parse_qs(u.query)
        if path == "/health":
            return self.send_json({"ok": True})
        m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/[^/]+)?/?$", path)
        if m:
            return self.repo_info(m.group(1), m.group(2))
        m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/tree/[^/]+/?(.*)$", path)
        if m:
            return self.tree(m.group(1), m.group(2), m.group(3).strip("/"), query)
        m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/paths-info/[^/]+$", path)
        if m and self.command == "POST":
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            d = repo_dir(m.group(1), m.group(2))
            return self.send_json([entry(d, p) for p in form.get("paths", []) if (d / p).exists()])
        m = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
        if m:
            return self.send_file("datasets" if m.group(1) else "models", m.group(2), m.group(3))
        return self.fail(404, f"no route {path}")

    do_GET = do_HEAD = do_POST = route


def main() -> int:
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args()
    ROOT = a.root
    srv = ThreadingHTTPServer(("0.0.0.0", a.port), Hub)
    print(f"hub: serving {ROOT} on :{a.port}", file=sys.stderr, flush=True)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
