"""UPSS as the benchmark serves it: ``wsgi.app`` with, when ``UPSS_BENCH=1``, two response
headers per request that ``bench.run`` reads: ``X-Bench-Queries`` (SQL statements the request
ran) and ``X-Bench-CPU-ms`` (this worker's CPU time from the request's arrival to its response
headers: every hook, the view and the template). A WSGI middleware adds them around the whole
app; the app itself is not changed, and production serves ``wsgi:app``, which never adds them.
Counting is per process, which is right for gunicorn's sync workers (one request at a time).
"""

from __future__ import annotations

import os
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine

from wsgi import app

_queries = 0


class Measured:
    """WSGI middleware: counts SQL statements and CPU time of each request into its headers."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        global _queries
        _queries = 0
        started = time.process_time()

        def start(status, headers, exc_info=None):
            cpu_ms = (time.process_time() - started) * 1000
            headers = [*headers, ("X-Bench-Queries", str(_queries)),
                       ("X-Bench-CPU-ms", f"{cpu_ms:.1f}")]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


if os.environ.get("UPSS_BENCH") == "1":
    @event.listens_for(Engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        global _queries
        _queries += 1

    app.wsgi_app = Measured(app.wsgi_app)
