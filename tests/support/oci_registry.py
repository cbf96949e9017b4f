"""A minimal OCI distribution registry on loopback, for testing ``helm push``/``helm pull``.

Only what helm (oras-go) uses to push and pull a chart over plain HTTP: the ``/v2/`` ping,
blob existence checks, monolithic and chunked blob uploads, and manifests by tag or digest.
Everything is kept in memory; digests are checked. ``ThreadingHTTPServer`` in a thread.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import uuid
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.support.service import Service

_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[0-9a-f-]*)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OciRegistry(Service):
    """``url`` is ``127.0.0.1:<port>``; ``manifests`` maps (repository, tag) to the manifest."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self._lock = threading.Lock()
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path in ("/v2", "/v2/"):
                    return self._send(200, b"{}", Content_Type="application/json")
                if match := _BLOB.match(path):
                    blob = registry.blobs.get(match["digest"])
                    if blob is None:
                        return self._send(404)
                    return self._send(200, blob, Docker_Content_Digest=match["digest"],
                                      Content_Type="application/octet-stream")
                if match := _MANIFEST.match(path):
                    ref = match["ref"]
                    found = registry.manifests.get((match["name"], ref))
                    if found is None:  # by digest
                        found = next((m for m in registry.manifests.values()
                                      if digest_of(m[0]) == ref), None)
                    if found is None:
                        return self._send(404)
                    body, media_type = found
                    return self._send(200, body, Content_Type=media_type,
                                      Docker_Content_Digest=digest_of(body))
                return self._send(404)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                split = urlsplit(self.path)
                match = _UPLOADS.match(split.path)
                if not match:
                    return self._send(404)
                body = self._body()
                digest = parse_qs(split.query).get("digest", [None])[0]
                if digest:  # monolithic upload in one POST
                    return self._finish(match["name"], digest, body)
                upload = str(uuid.uuid4())
                with registry._lock:
                    registry.uploads[upload] = bytearray(body)
                location = f"/v2/{match['name']}/blobs/uploads/{upload}"
                return self._send(202, Location=location, Range="0-0",
                                  Docker_Upload_UUID=upload)

            def do_PATCH(self) -> None:
                match = _UPLOADS.match(urlsplit(self.path).path)
                if not match or match["id"] not in registry.uploads:
                    return self._send(404)
                with registry._lock:
                    data = registry.uploads[match["id"]]
                    data.extend(self._body())
                    size = len(data)
                return self._send(202, Location=urlsplit(self.path).path,
                                  Range=f"0-{max(0, size - 1)}")

            def do_PUT(self) -> None:
                split = urlsplit(self.path)
                body = self._body()
                if match := _UPLOADS.match(split.path):
                    digest = parse_qs(split.query).get("digest", [""])[0]
                    with registry._lock:
                        data = bytes(registry.uploads.pop(match["id"], bytearray())) + body
                    return self._finish(match["name"], digest, data)
                if match := _MANIFEST.match(split.path):
                    media_type = self.headers.get("Content-Type") or ""
                    with registry._lock:
                        registry.manifests[(match["name"], match["ref"])] = (body, media_type)
                    digest = digest_of(body)
                    return self._send(201, Docker_Content_Digest=digest,
                                      Location=f"/v2/{match['name']}/manifests/{digest}")
                return self._send(404)

            def _finish(self, name: str, digest: str, data: bytes) -> None:
                if digest_of(data) != digest:
                    return self._send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                with registry._lock:
                    registry.blobs[digest] = data
                return self._send(201, Location=f"/v2/{name}/blobs/{digest}",
                                  Docker_Content_Digest=digest)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
