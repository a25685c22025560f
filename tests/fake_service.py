"""A model service as the HTTP clients' tests need one: a tiny local server giving one
answer to every request (``lammps_stream/service_api.py`` and the commands using it)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lammps_stream.config import Config, load_config


@contextlib.contextmanager
def fake_service(status: int = 200, body: object = None, delay: float = 0.0) -> Iterator[Config]:
    """A local HTTP server answering every request with ``status`` and ``body`` (JSON) after
    ``delay`` seconds (cut short when the block ends); the config that points at it."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            release.wait(delay)
            payload = json.dumps({} if body is None else body).encode()
            with contextlib.suppress(OSError):  # the client may have given up
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield load_config(path=None, env={}, overrides={"service.http_port": port})
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
