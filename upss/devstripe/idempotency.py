"""Idempotent requests like Stripe's (https://docs.stripe.com/api/idempotent_requests): the
saved results (``IdempotencyStore``) and what makes two requests the same
(``request_fingerprint``); ``layer.StripeLikeLayer`` applies them to every API request.

localstripe ignores ``Idempotency-Key``, so nothing tested against it could show that a retry
pays once. Here a POST with an ``Idempotency-Key`` (scoped to the API key of its
``Authorization`` header) is run once and its result (status, ``Content-Type``, body; any
status, 500 included) saved with a fingerprint of method, path and parameters (order does not
matter). The same key again: the same parameters get the saved response unchanged, with
``Idempotent-Replayed: true``, without running anything; other parameters or path get 400
``idempotency_error``; while the first is still running, 409 ``idempotency_key_in_use``. Keys
over 255 characters get 400; keys expire 24 hours after first use. These rejections are not
saved. The layer is the outermost middleware, so localstripe's own errors are saved too.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web

#: Stripe removes idempotency keys once they are at least this old (seconds).
IDEMPOTENCY_TTL = 24 * 3600
#: Stripe refuses longer idempotency keys.
MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass(frozen=True)
class SavedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_id: str


@dataclass
class _Entry:
    fingerprint: str
    created: float
    #: None while the first request with the key is still running.
    response: SavedResponse | None = None


class IdempotencyStore:
    """Idempotent results by (API key, idempotency key); ``clock`` is injectable for tests."""

    NEW, REPLAY, MISMATCH, IN_FLIGHT = "new", "replay", "mismatch", "in_flight"

    def __init__(self, *, ttl: float = IDEMPOTENCY_TTL, clock: Callable[[], float] = time.time):
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self) -> None:
        limit = self.clock() - self.ttl
        for k in [k for k, e in self._entries.items() if e.created <= limit]:
            del self._entries[k]

    def begin(self, scope: str, key: str, fingerprint: str
              ) -> tuple[str, SavedResponse | None]:
        """What to do with a request; ``NEW`` means it is now in flight under the key.

        No ``await`` happens in here, so on one event loop the check-and-take is atomic.
        """
        self._expire()
        entry = self._entries.get((scope, key))
        if entry is None:
            self._entries[(scope, key)] = _Entry(fingerprint, self.clock())
            return self.NEW, None
        if entry.fingerprint != fingerprint:
            return self.MISMATCH, None
        if entry.response is None:
            return self.IN_FLIGHT, None
        return self.REPLAY, entry.response

    def finish(self, scope: str, key: str, response: SavedResponse) -> None:
        entry = self._entries.get((scope, key))
        if entry is not None:
            entry.response = response

    def abandon(self, scope: str, key: str) -> None:
        """The request ended without a result (e.g. the server stopped it): free the key."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.response is None:
            del self._entries[(scope, key)]


def _api_key_scope(request: web.BaseRequest) -> str:
    """The API key of ``Authorization`` (Bearer or Basic), else the raw header."""
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if kind == "Bearer":
        return value.strip()
    if kind == "Basic":
        try:
            return base64.b64decode(value.strip()).decode("utf-8").split(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            pass
    return header


def _canonical_params(content_type: str, body: bytes) -> object:
    """Request parameters in a form where their order does not matter."""
    if content_type == "application/json":
        try:
            return json.loads(body or b"null")
        except ValueError:
            return body.hex()
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        grouped.setdefault(name, []).append(value)
    return grouped


async def request_fingerprint(request: web.BaseRequest) -> str:
    """Method, path and parameters (body and query string), independent of parameter order.

    ``request.read()`` keeps the body, so localstripe can still read it afterwards.
    """
    body = await request.read()
    query: dict[str, list[str]] = {}
    for name, value in request.query.items():
        query.setdefault(name, []).append(value)
    return json.dumps([request.method, request.path, query,
                       _canonical_params(request.content_type, body)],
                      sort_keys=True, default=str)
