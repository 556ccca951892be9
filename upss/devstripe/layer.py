"""The outermost middleware (``StripeLikeLayer``): idempotent requests (with
``idempotency``), the fault switches, the request log, and the door of the control API.

Fault switches for tests (``/_upss/faults``): stall a request while it is in flight, delay or
lose its response after it was performed, answer 500/409/429 instead. And a log of the API
requests received (``/_upss/requests``) so a test can count what was really performed.

Control requests (``/_upss/...``, loopback clients only) are answered here (faults, requests) or
handed to Connect's and money's ``control``; ``server``'s docstring lists them all.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
import secrets
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .api import _REQUEST_LOG_SIZE, _stripe_error
from .idempotency import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    IdempotencyStore,
    SavedResponse,
    _api_key_scope,
    request_fingerprint,
)

if typing.TYPE_CHECKING:
    from .connect_routes import ConnectRoutes
    from .money_routes import MoneyRoutes

log = logging.getLogger(__name__)

#: Fault modes acting before the idempotency layer / on a request that is performed.
FRONT_MODES = ("error_409", "error_429")
EXECUTION_MODES = ("stall", "stall_after", "error_500", "error_500_after", "drop_after")
FAULT_MODES = FRONT_MODES + EXECUTION_MODES
#: Response headers kept with an idempotent result.
_SAVED_HEADERS = ("Content-Type",)
_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


@dataclass
class Fault:
    id: str
    method: str
    path: str
    mode: str
    seconds: float
    times: int
    pattern: re.Pattern = field(repr=False, compare=False, default=None)

    def matches(self, request: web.BaseRequest) -> bool:
        return ((self.method == "*" or self.method == request.method)
                and self.pattern.fullmatch(request.path) is not None)

    def export(self) -> dict:
        return {"id": self.id, "method": self.method, "path": self.path, "mode": self.mode,
                "seconds": self.seconds, "times": self.times}


class FaultError(ValueError):
    pass


class StripeLikeLayer:
    """Idempotency, fault switches and the request log, as one outermost aiohttp middleware."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self.store = IdempotencyStore(clock=clock)
        self.faults: list[Fault] = []
        self.requests: collections.deque[dict] = collections.deque(maxlen=_REQUEST_LOG_SIZE)
        self._fault_ids = itertools.count(1)
        #: Answers ``/_upss/connect/...`` (set by ``build_app``).
        self.connect: ConnectRoutes | None = None
        #: Answers the money and event controls (set by ``build_app``).
        self.money: MoneyRoutes | None = None

    # faults
    def add_fault(self, spec: object) -> Fault:
        if not isinstance(spec, dict):
            raise FaultError("expected a JSON object")
        mode = spec.get("mode")
        if mode not in FAULT_MODES:
            raise FaultError(f"mode must be one of {', '.join(FAULT_MODES)}")
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise FaultError("path (a regular expression) is required")
        try:
            pattern = re.compile(path)
        except re.error as exc:
            raise FaultError(f"path is not a regular expression: {exc}") from None
        method = spec.get("method", "*")
        seconds = spec.get("seconds", 2.0)
        times = spec.get("times", 1)
        if not isinstance(method, str):
            raise FaultError("method must be a string")
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not 0 <= seconds <= 600):
            raise FaultError("seconds must be a number from 0 to 600")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise FaultError("times must be a positive integer")
        fault = Fault(f"fault_{next(self._fault_ids)}", method.upper(), path, mode,
                      float(seconds), times, pattern)
        self.faults.append(fault)
        return fault

    def take_fault(self, request: web.BaseRequest, modes: tuple[str, ...]) -> Fault | None:
        for fault in self.faults:
            if fault.mode in modes and fault.matches(request):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # control API
    async def control(self, request: web.Request) -> web.StreamResponse:
        if request.remote not in _LOOPBACK:
            raise web.HTTPForbidden(text="loopback clients only\n")
        if request.path == "/_upss/faults":
            if request.method == "GET":
                return web.json_response({"faults": [f.export() for f in self.faults]})
            if request.method == "DELETE":
                deleted, self.faults = len(self.faults), []
                return web.json_response({"deleted": deleted})
            if request.method == "POST":
                try:
                    fault = self.add_fault(await request.json())
                except (ValueError, FaultError) as exc:
                    return _stripe_error(400, "invalid_request_error", str(exc))
                return web.json_response(fault.export())
        elif request.path.startswith("/_upss/connect/") and self.connect is not None:
            return await self.connect.control(request)
        elif self.money is not None and (
                answer := await self.money.control(request)) is not None:
            return answer
        elif request.path == "/_upss/requests":
            if request.method == "GET":
                return web.json_response({"requests": list(self.requests)})
            if request.method == "DELETE":
                deleted = len(self.requests)
                self.requests.clear()
                return web.json_response({"deleted": deleted})
        else:
            raise web.HTTPNotFound()
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "DELETE"])

    # the middleware
    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_upss/"):
            return await self.control(request)
        if not request.path.startswith("/v1/"):
            return await handler(request)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        record = {"method": request.method, "path": request.path, "idempotency_key": key,
                  "status": None, "replayed": False, "performed": False, "fault": None}
        self.requests.append(record)
        response = await self._api_request(request, handler, key or None, record)
        if record["fault"] != "drop_after":  # a dropped one keeps the status it was performed with
            record["status"] = response.status
        return response

    async def _api_request(self, request, handler, key, record) -> web.StreamResponse:
        fault = self.take_fault(request, FRONT_MODES)
        if fault is not None:
            record["fault"] = fault.mode
            if fault.mode == "error_409":
                return _stripe_error(
                    409, "invalid_request_error",
                    "This object cannot be accessed right now because another API request or "
                    "Stripe process is currently accessing it. (fault switch)", "lock_timeout")
            return _stripe_error(429, "invalid_request_error",
                                 "Request rate limit exceeded. (fault switch)", "rate_limit")

        if key is None:
            saved, after = await self._perform(request, handler, record)
            return await self._respond(request, saved, after)
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _stripe_error(
                400, "invalid_request_error",
                f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters long "
                f"(this one has {len(key)}).")
        scope = _api_key_scope(request)
        fingerprint = await request_fingerprint(request)
        verdict, saved = self.store.begin(scope, key, fingerprint)
        if verdict == IdempotencyStore.MISMATCH:
            return _stripe_error(
                400, "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.")
        if verdict == IdempotencyStore.IN_FLIGHT:
            return _stripe_error(
                409, "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                f"going through): {key}. Please try again later.", "idempotency_key_in_use")
        if verdict == IdempotencyStore.REPLAY:
            record["replayed"] = True
            return self._build(saved, key, replayed=True)
        try:
            saved, after = await self._perform(request, handler, record)
        except BaseException:
            self.store.abandon(scope, key)
            raise
        self.store.finish(scope, key, saved)
        return await self._respond(request, saved, after, key)

    async def _perform(self, request, handler, record) -> tuple[SavedResponse, Fault | None]:
        """Run the request (unless a fault says otherwise); the result as it would be saved."""
        request_id = "req_" + secrets.token_hex(7)
        fault = self.take_fault(request, EXECUTION_MODES)
        if fault is not None:
            record["fault"] = fault.mode
            if fault.mode == "stall":
                await asyncio.sleep(fault.seconds)
            elif fault.mode == "error_500":
                return self._snapshot(_stripe_error(
                    500, "api_error", "An unknown error occurred (fault switch)."),
                    request_id), None
        record["performed"] = True
        request["upss_request_id"] = request_id  # for the ``request`` of the events it makes
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        except Exception:  # noqa: BLE001 - Stripe answers 500 api_error, and saves it
            log.exception("localstripe failed on %s %s", request.method, request.path)
            response = _stripe_error(500, "api_error", "An unknown error occurred.")
        record["status"] = response.status
        after = fault if fault is not None and fault.mode.endswith("_after") else None
        return self._snapshot(response, request_id), after

    @staticmethod
    def _snapshot(response: web.StreamResponse, request_id: str) -> SavedResponse:
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes):  # localstripe only answers with bytes bodies
            body = b""
        headers = tuple((name, response.headers[name]) for name in _SAVED_HEADERS
                        if name in response.headers)
        return SavedResponse(response.status, headers, body, request_id)

    @staticmethod
    def _build(saved: SavedResponse, key: str | None, *, replayed: bool = False) -> web.Response:
        response = web.Response(status=saved.status, body=saved.body, headers=saved.headers)
        if replayed:
            response.headers["Request-Id"] = "req_" + secrets.token_hex(7)
            response.headers["Original-Request"] = saved.request_id
            response.headers["Idempotent-Replayed"] = "true"
        else:
            response.headers["Request-Id"] = saved.request_id
        if key is not None:
            response.headers["Idempotency-Key"] = key
        return response

    async def _respond(self, request, saved: SavedResponse, after: Fault | None,
                       key: str | None = None) -> web.StreamResponse:
        if after is None:
            return self._build(saved, key)
        if after.mode == "stall_after":
            await asyncio.sleep(after.seconds)
            return self._build(saved, key)
        if after.mode == "error_500_after":
            return _stripe_error(500, "api_error",
                                 "An unknown error occurred (fault switch, after performing).")
        # drop_after: close the connection without answering; aiohttp then has nowhere to
        # write the response it is handed and drops it.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)
