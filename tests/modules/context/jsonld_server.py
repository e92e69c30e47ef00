"""JSON-LD @context documents served over real HTTP on 127.0.0.1, for tests that give the broker
a remote @context (the suite's own, locally): one server, documents by path, 404 for others."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ContextDocuments:
    """Serves ``documents`` (path -> JSON document); documents may be added after start."""

    def __init__(self, documents: dict[str, Any] | None = None) -> None:
        self.documents: dict[str, Any] = dict(documents or {})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path in outer.documents
                raw = json.dumps(outer.documents.get(self.path, {})).encode()
                self.send_response(200 if found else 404)
                self.send_header("content-type", "application/ld+json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url_of(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
