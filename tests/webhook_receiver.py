"""A tiny HTTP server that records webhook deliveries, for tests of the local Stripe's events."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

from tests.conftest import wait_until


class WebhookReceiver:
    """Every POST it receives, by path; ``fail_next`` makes the next deliveries answer 500.

    ``fail_next`` is keyed by a path (any event there) or by ``(path, event type, object id)``.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.deliveries: list[dict] = []
        self.fail_next: dict = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event = json.loads(body)
                with receiver.lock:
                    failing = False
                    for key in ((self.path, event["type"], event["data"]["object"]["id"]),
                                self.path):
                        if receiver.fail_next.get(key, 0) > 0:
                            receiver.fail_next[key] -= 1
                            failing = True
                            break
                    receiver.deliveries.append({
                        "path": self.path, "body": body.decode("utf-8"), "event": event,
                        "signature": self.headers.get("Stripe-Signature"), "failed": failing})
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, path: str | None = None, type_: str | None = None,
                 object_id: str | None = None, *, delivered_only: bool = True) -> list[dict]:
        """The deliveries that match (all paths if ``path`` is None)."""
        with self.lock:
            return [d for d in self.deliveries
                    if (path is None or d["path"] == path)
                    and (type_ is None or d["event"]["type"] == type_)
                    and (object_id is None or d["event"]["data"]["object"]["id"] == object_id)
                    and not (delivered_only and d["failed"])]

    def wait_received(self, path: str, type_: str, object_id: str,
                      count: int = 1) -> list[dict]:
        return wait_until(lambda: (lambda found: found if len(found) >= count else None)(
            self.received(path, type_, object_id)), timeout=8, interval=0.05)

    @contextlib.contextmanager
    def running(self):
        """Serve while the block runs."""
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
