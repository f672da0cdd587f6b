"""A scripted JSON server on 127.0.0.1, for the server shapes the simulated teacher does not make
(a body that is not a completion, a 200 then only errors, a generator's scripted answers)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

Respond = Callable[[int, Any, Mapping[str, str]], "tuple[int, Any]"]


class JsonServer:
    """Answers every POST with ``respond(n, body, headers) -> (status, JSON object)``; ``n`` counts
    requests from 1. ``base_url`` ends in ``/v1``; ``close()`` stops it."""

    def __init__(self, respond: Respond):
        count, lock = [0], threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
                with lock:
                    count[0] += 1
                    n = count[0]
                status, obj = respond(n, body, self.headers)
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
