"""The events the local Stripe makes (Connect's and money's) and their delivery to webhook
endpoints: ``EventSender``, the base of ``connect.Connect`` (``money.Money`` sends its events
through it too).

Events are in the current API version's shape (``api_version`` the pinned library's,
``request`` the id and idempotency key of the API request that caused them). A platform event
goes to localstripe's endpoints (``/_config/webhooks/{id}``) and is listed by ``GET
/v1/events`` (and ``/v1/events/{id}``); a Connect event carries ``"account": "acct_..."`` and
goes only to the Connect endpoints, registered with ``POST /_config/connect_webhooks/{id}``
(form fields ``url``, ``secret``, optional ``events[]``, like localstripe's) or
``--connect-webhook-url``. Each delivery is signed with its endpoint's secret as Stripe
does (``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``), sent
0.2 s after the change, and retried after 0.5, 1, 2, 4 and 8 s more on a non-2xx answer or
a connection error (localstripe's own events keep its one attempt after 1 s).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

from .api import _REQUEST_LOG_SIZE, _missing, _new_id

log = logging.getLogger(__name__)

#: Seconds before the first delivery of an event, then between the retries after a failure.
WEBHOOK_FIRST_DELAY = 0.2
WEBHOOK_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Seconds one delivery attempt may take.
WEBHOOK_TIMEOUT = 5.0


class EventSender:
    """Makes events, delivers them in the background and keeps them with every delivery
    attempt (see the module docstring). ``clock`` is injectable; without a running event loop
    events are only recorded (``self.events``)."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 platform_events: Callable[[dict], None] | None = None,
                 platform_webhooks: Callable[[], dict] = dict,
                 retry_delays: tuple[float, ...] = WEBHOOK_RETRY_DELAYS):
        self.clock = clock
        self.platform_events = platform_events
        self.platform_webhooks = platform_webhooks
        self.retry_delays = retry_delays
        #: Connect webhook endpoints: id -> localstripe ``Webhook`` (url, secret, events).
        self.connect_webhooks: dict = {}
        #: Every event made, oldest first, with its deliveries: endpoint id -> attempts, status.
        self.events: collections.deque = collections.deque(maxlen=_REQUEST_LOG_SIZE)
        self.deliveries: dict[str, dict] = {}
        #: event id -> endpoint id -> every attempt: ``{"at", "status", "kind"}``.
        self.attempt_log: dict[str, dict] = {}
        self._tasks: set[asyncio.Task] = set()

    def now(self) -> int:
        return int(self.clock())

    def emit(self, type_: str, obj: dict, *, account: str | None = None,
             previous: dict | None = None, request: dict | None = None,
             delay: float = 0.0) -> dict:
        """Make an event and deliver it in the background: a Connect event (``account`` set) to
        the Connect endpoints only, a platform event to localstripe's endpoints (and its
        ``/v1/events``)."""
        data = {"object": obj}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        endpoints = self._endpoints_for(type_, connect=account is not None)
        event = {"id": _new_id("evt_"), "object": "event", "api_version": _api_version(),
                 "created": self.now(), "data": data, "livemode": False,
                 "pending_webhooks": len(endpoints),
                 "request": request or {"id": None, "idempotency_key": None}, "type": type_}
        if account is not None:
            event["account"] = account
        elif self.platform_events is not None:
            self.platform_events(copy.deepcopy(event))
        if len(self.events) == self.events.maxlen:
            self.deliveries.pop(self.events[0]["id"], None)
            self.attempt_log.pop(self.events[0]["id"], None)
        self.events.append(event)
        self.deliveries[event["id"]] = {name: {"attempts": 0, "delivered": False,
                                               "last_status": None} for name, _ in endpoints}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return event  # no server running (unit tests): recorded only
        task = loop.create_task(self._deliver(event, endpoints, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return event

    def _endpoints_for(self, type_: str, *, connect: bool) -> list:
        hooks = self.connect_webhooks if connect else self.platform_webhooks()
        return [(name, hook) for name, hook in list(hooks.items())
                if hook.events is None or type_ in hook.events]

    async def _deliver(self, event: dict, endpoints: list, delay: float = 0.0) -> None:
        payload = json.dumps(event, indent=2, sort_keys=True).encode("utf-8")
        await asyncio.gather(*(self._deliver_to(event["id"], name, hook, payload, delay)
                               for name, hook in endpoints))

    def _signed_headers(self, secret: str, payload: bytes) -> dict:
        timestamp = self.now()
        signature = hmac.new(secret.encode("utf-8"), b"%d.%s" % (timestamp, payload),
                             hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": f"t={timestamp},v1={signature}"}

    def _log_attempt(self, event_id: str, name: str, status: int | None, kind: str) -> None:
        if event_id in self.deliveries:
            self.attempt_log.setdefault(event_id, {}).setdefault(name, []).append(
                {"at": round(self.clock(), 3), "status": status, "kind": kind})

    def event_log(self, type_: str | None = None) -> list[dict]:
        """Every event made here, oldest first, with its deliveries and each attempt."""
        return [{**event, "deliveries": self.deliveries.get(event["id"], {}),
                 "attempts": self.attempt_log.get(event["id"], {})}
                for event in self.events if type_ is None or event["type"] == type_]

    async def deliver_copies(self, event_id: str, copies: int) -> dict:
        """Send ``copies`` copies of an event at once, each signed, to every endpoint that
        takes it (no retries); their HTTP statuses (None: no answer) by endpoint."""
        import aiohttp

        event = next((e for e in self.events if e["id"] == event_id), None)
        if event is None:
            from localstripe.resources import store

            stored = store.get(f"event:{event_id}")
            if stored is None:
                raise _missing("event", event_id, "id", 404)
            event = stored._export()
        endpoints = self._endpoints_for(event["type"], connect="account" in event)
        payload = json.dumps(event, indent=2, sort_keys=True).encode("utf-8")

        async def one(session, name: str, hook) -> int | None:
            try:
                async with session.post(hook.url, data=payload,
                                        headers=self._signed_headers(hook.secret, payload)
                                        ) as answer:
                    status = answer.status
            except (TimeoutError, aiohttp.ClientError):
                status = None
            self._log_attempt(event_id, name, status, "copy")
            return status

        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            jobs = [(name, one(session, name, hook)) for name, hook in endpoints
                    for _ in range(copies)]
            statuses = await asyncio.gather(*(job for _, job in jobs))
        by_endpoint: dict[str, list] = {name: [] for name, _ in endpoints}
        for (name, _), status in zip(jobs, statuses, strict=True):
            by_endpoint[name].append(status)
        return {"event": event_id, "type": event["type"], "copies": copies,
                "statuses": by_endpoint}

    async def _deliver_to(self, event_id: str, name: str, hook, payload: bytes,
                          delay: float = 0.0) -> None:
        """Signed like Stripe (``t=...,v1=HMAC-SHA256(secret, "t.body")``), retried after
        a non-2xx answer or a connection error."""
        import aiohttp

        record = self.deliveries.get(event_id, {}).get(name) or {
            "attempts": 0, "delivered": False, "last_status": None}
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for wait in (WEBHOOK_FIRST_DELAY + delay, *self.retry_delays):
                await asyncio.sleep(wait)
                headers = self._signed_headers(hook.secret, payload)
                record["attempts"] += 1
                try:
                    async with session.post(hook.url, data=payload, headers=headers) as answer:
                        record["last_status"] = answer.status
                        self._log_attempt(event_id, name, answer.status, "delivery")
                        if 200 <= answer.status < 300:
                            record["delivered"] = True
                            return
                except (TimeoutError, aiohttp.ClientError) as exc:
                    record["last_status"] = None
                    self._log_attempt(event_id, name, None, "delivery")
                    log.info("event %s to %s failed: %s", event_id, hook.url, exc)


def _api_version() -> str:
    import stripe

    return stripe.api_version


def _platform_event_store(store) -> Callable[[dict], None]:
    """Put a platform event in localstripe's store too, so ``GET /v1/events`` lists it."""
    from localstripe.resources import Event

    def put(event: dict) -> None:
        obj = Event.__new__(Event)
        obj.__dict__.update(event)
        dict.__setitem__(store, f"event:{event['id']}", obj)

    return put
