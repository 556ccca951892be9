"""The project's local Stripe: localstripe, bound to 127.0.0.1, made to behave like Stripe where
UPSS depends on it.

localstripe's own ``start()`` binds every interface and pickles its whole store to
``/tmp/localstripe.pickle`` after each write; this wrapper binds loopback only and keeps the
state in memory, or in ``--state FILE`` when a developer wants it to survive a restart.

What it adds over localstripe, and why:

* **Idempotent requests like Stripe** (https://docs.stripe.com/api/idempotent_requests).
  localstripe ignores ``Idempotency-Key``, so nothing tested against it could show that a retry
  pays once. Here a POST with an ``Idempotency-Key`` (scoped to the API key of its
  ``Authorization`` header) is run once and its result (status, ``Content-Type``, body; any
  status, 500 included) saved with a fingerprint of method, path and parameters (order does not
  matter). The same key again: the same parameters get the saved response unchanged, with
  ``Idempotent-Replayed: true``, without running anything; other parameters or path get 400
  ``idempotency_error``; while the first is still running, 409 ``idempotency_key_in_use``. Keys
  over 255 characters get 400; keys expire 24 hours after first use. These rejections are not
  saved. The layer is the outermost middleware, so localstripe's own errors are saved too.
* **The current API's PaymentIntent parameters.** The API version stripe-python 16 speaks removed
  ``payment_method_types`` from PaymentIntent creation: ``allowed_payment_method_types`` replaces
  it and ``automatic_payment_methods`` may come along. localstripe refuses parameters it does not
  know, so ``POST /v1/payment_intents`` is translated for it (``allowed_payment_method_types`` ->
  ``payment_method_types``; ``automatic_payment_methods`` dropped, cards are all there is here),
  and, like Stripe, a create that still sends ``payment_method_types`` gets 400
  ``payment_method_types_no_longer_supported``. The translation wraps localstripe's
  ``localstripe.server.get_post_data`` (every localstripe handler reads its parameters through
  it, by module global), so the request body itself is untouched and the idempotency fingerprint
  sees what the client sent.
* **Fault switches** for tests (``/_upss/faults``): stall a request while it is in flight, delay
  or lose its response after it was performed, answer 500/409/429 instead. And a **log** of the
  API requests received (``/_upss/requests``) so a test can count what was really performed.

Control API (no API key; only answered to loopback clients), all JSON:

* ``POST /_upss/faults`` ``{"method": "POST", "path": "/v1/payment_intents", "mode": "stall",
  "seconds": 2.0, "times": 1}`` -> 200, the fault with its ``id``. ``path`` is a regular
  expression that must match the whole request path; ``method`` may be ``"*"`` (the default);
  ``seconds`` defaults to 2.0, ``times`` to 1. The next ``times`` requests that match and reach
  the point where the mode acts get the fault; then it is used up. Modes:

  - ``stall``: held ``seconds`` while in flight (the key is taken, localstripe has not run it
    yet), then performed;
  - ``stall_after``: performed (and saved), then the response is delayed ``seconds``;
  - ``error_500``: 500 ``api_error`` instead of performing it; saved, so replayed for the key;
  - ``error_500_after``: performed and saved, but this response is a 500 ``api_error``;
  - ``drop_after``: performed and saved, then the connection is closed without a response;
  - ``error_409`` / ``error_429``: 409 ``lock_timeout`` / 429 ``rate_limit`` before the
    idempotency layer, not performed, not saved.

  ``stall``, ``error_500`` and the ``*_after`` modes only act on requests that are performed
  (not on replays, nor on requests the idempotency layer refuses).
* ``GET /_upss/faults`` -> ``{"faults": [...]}`` (what remains); ``DELETE /_upss/faults`` ->
  ``{"deleted": n}``.
* ``GET /_upss/requests`` -> ``{"requests": [{"method", "path", "idempotency_key", "status",
  "replayed", "performed", "fault"}, ...]}`` (``/v1/`` requests, oldest first; ``performed``:
  handed to localstripe, which may still have refused it, see ``status``; a dropped response
  keeps the status it was performed with); ``DELETE /_upss/requests`` -> ``{"deleted": n}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import itertools
import json
import logging
import os
import pickle
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from .config import LOCAL_WEBHOOK_SECRET

log = logging.getLogger(__name__)

#: Stripe removes idempotency keys once they are at least this old (seconds).
IDEMPOTENCY_TTL = 24 * 3600
#: Stripe refuses longer idempotency keys.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
#: Fault modes acting before the idempotency layer / on a request that is performed.
FRONT_MODES = ("error_409", "error_429")
EXECUTION_MODES = ("stall", "stall_after", "error_500", "error_500_after", "drop_after")
FAULT_MODES = FRONT_MODES + EXECUTION_MODES
#: Response headers kept with an idempotent result.
_SAVED_HEADERS = ("Content-Type",)
_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
_REQUEST_LOG_SIZE = 10_000


def _use_state_file(store, path: str | None) -> None:
    """Point localstripe's store at ``path`` (or nowhere) instead of /tmp/localstripe.pickle."""

    def dump_to_disk() -> None:
        if path:
            with open(path, "wb") as f:
                pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)

    store.dump_to_disk = dump_to_disk
    if path:
        try:
            with open(path, "rb") as f:
                dict.update(store, pickle.load(f))  # noqa: S301 - our own local file
        except (FileNotFoundError, EOFError):
            pass


# --- idempotency --------------------------------------------------------------------------

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


# --- current-API parameters -----------------------------------------------------------------

def is_payment_intent_create(request: web.BaseRequest) -> bool:
    return request.method == "POST" and request.path.rstrip("/") == "/v1/payment_intents"


def adapt_payment_intent_params(data: dict) -> dict:
    """Today's PaymentIntent-create parameters as localstripe's (2017-era) ones."""
    data = dict(data)
    allowed = data.pop("allowed_payment_method_types", None)
    if allowed is not None:
        data["payment_method_types"] = allowed
    data.pop("automatic_payment_methods", None)
    return data


def _install_param_translation(server) -> None:
    """Wrap ``localstripe.server.get_post_data``, through which every handler reads its data.

    A handler looks the function up as a module global on each call, so replacing it is
    enough; the body itself is not touched.
    """
    original = server.get_post_data
    if getattr(original, "upss_original", None):
        return

    async def get_post_data(request, remove_auth=True):
        data = await original(request, remove_auth=remove_auth)
        if isinstance(data, dict) and is_payment_intent_create(request):
            data = adapt_payment_intent_params(data)
        return data

    get_post_data.upss_original = original
    server.get_post_data = get_post_data


def _refuse_removed_params_middleware(server):
    """Like Stripe: ``payment_method_types`` on PaymentIntent creation is a 400.

    Sits after localstripe's auth (a 401 comes first) and inside its error middleware, which
    turns the ``UserError`` into Stripe's error JSON.
    """
    from localstripe.errors import UserError

    original = getattr(server.get_post_data, "upss_original", server.get_post_data)

    @web.middleware
    async def refuse_removed_params(request, handler):
        if is_payment_intent_create(request):
            data = await original(request, remove_auth=False)
            if isinstance(data, dict) and "payment_method_types" in data:
                raise UserError(400, (
                    "The parameter payment_method_types is no longer supported when creating "
                    "a PaymentIntent: use allowed_payment_method_types (or "
                    "automatic_payment_methods) instead."), {
                        "code": "payment_method_types_no_longer_supported",
                        "param": "payment_method_types"})
        return await handler(request)

    return refuse_removed_params


# --- faults and request log -----------------------------------------------------------------

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


def _stripe_error(status: int, type_: str, message: str, code: str | None = None,
                  headers: dict | None = None) -> web.Response:
    error = {"type": type_, "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status, headers=headers)


class StripeLikeLayer:
    """Idempotency, fault switches and the request log, as one outermost aiohttp middleware."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self.store = IdempotencyStore(clock=clock)
        self.faults: list[Fault] = []
        self.requests: collections.deque[dict] = collections.deque(maxlen=_REQUEST_LOG_SIZE)
        self._fault_ids = itertools.count(1)

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


# --- the app --------------------------------------------------------------------------------

def build_app(*, state: str | None = None, clock: Callable[[], float] = time.time
              ) -> tuple[web.Application, StripeLikeLayer]:
    """localstripe's app with the Stripe-like layer; call once per process, before it starts.

    localstripe registers its routes on one module-level ``app``, so that app is extended.
    """
    from localstripe import server
    from localstripe.resources import store

    app = server.app
    _use_state_file(store, state)
    _install_param_translation(server)
    layer = StripeLikeLayer(clock=clock)
    names = [getattr(m, "__name__", "") for m in app.middlewares]
    app.middlewares.insert(names.index("auth_middleware") + 1,
                           _refuse_removed_params_middleware(server))
    app.middlewares.insert(0, layer.middleware)
    for path in ("/_upss/faults", "/_upss/requests"):
        # Routes for the router's sake; the layer answers them before localstripe's auth.
        app.router.add_route("*", path, layer.control)
    return app, layer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--state", default=None, help="file that keeps localstripe's data")
    parser.add_argument("--webhook-url", default=None,
                        help="the app's webhook endpoint, registered at start-up")
    parser.add_argument("--webhook-secret", default=None,
                        help="signing secret (default: UPSS_STRIPE_WEBHOOK_SECRET, "
                             "else the local one)")
    args = parser.parse_args(argv)

    app, _layer = build_app(state=args.state)
    if args.webhook_url:
        from localstripe.webhooks import register_webhook

        secret = (args.webhook_secret or os.environ.get("UPSS_STRIPE_WEBHOOK_SECRET")
                  or LOCAL_WEBHOOK_SECRET)
        register_webhook("upss", args.webhook_url, secret, None)
    logging.basicConfig(level=logging.INFO)
    banner = f"localstripe on http://{args.host}:{args.port}"
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                print=lambda *a: print(banner, flush=True))


if __name__ == "__main__":
    main()
