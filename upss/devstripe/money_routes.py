"""Money's HTTP side (``MoneyRoutes``): the ``/v1`` routes it answers before localstripe (a
middleware after localstripe's auth) and its control requests (``/_upss/config``,
``/_upss/balance/available``, refunds, disputes, payouts, events; listed in ``server``).
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from .api import _body, _int, _invalid, _json, _query, _request_info, check_params
from .money import _CURRENT_REQUEST, Money

MAX_DELIVER_COPIES = 100


class MoneyRoutes(Money):
    """``Money`` answering HTTP: ``middleware()`` for its API routes, ``control`` for the
    control requests (loopback only, checked by the layer)."""

    # HTTP: the API routes it answers (a middleware after localstripe's auth)
    def middleware(self):
        routes = [
            ("GET", r"/v1/balance", self._http_balance),
            ("GET", r"/v1/(?:balance_transactions|balance/history)", self._http_transactions),
            ("GET", r"/v1/(?:balance_transactions|balance/history)/([^/]+)",
             self._http_transaction),
            ("POST", r"/v1/refunds", self._http_create_refund),
            ("GET", r"/v1/refunds", self._http_refunds),
            ("GET", r"/v1/refunds/([^/]+)", self._http_refund),
            ("GET", r"/v1/charges/([^/]+)", self._http_charge),
            ("GET", r"/v1/disputes", self._http_disputes),
            ("GET", r"/v1/disputes/([^/]+)", self._http_dispute),
            ("POST", r"/v1/payouts", self._http_create_payout),
            ("GET", r"/v1/payouts", self._http_payouts),
            ("GET", r"/v1/payouts/([^/]+)", self._http_payout)]
        compiled = [(method, re.compile(path), answer) for method, path, answer in routes]

        @web.middleware
        async def money_routes(request, handler):
            token = _CURRENT_REQUEST.set(_request_info(request))
            try:
                for method, pattern, answer in compiled:
                    match = pattern.fullmatch(request.path.rstrip("/"))
                    if match and request.method == method:
                        return await answer(request, handler, *match.groups())
                return await handler(request)
            finally:
                _CURRENT_REQUEST.reset(token)

        return money_routes

    async def _http_balance(self, request, handler):
        return _json(self.balance())

    async def _http_transactions(self, request, handler):
        return _json(self.list_transactions(_query(request),
                                                    request.path.rstrip("/")))

    async def _http_transaction(self, request, handler, txn_id):
        check_params(_query(request), "BalanceTransactionRetrieveParams")
        return _json(self.get_transaction(txn_id))

    async def _http_create_refund(self, request, handler):
        response = await handler(request)
        if response.status != 200 or not isinstance(getattr(response, "body", None), bytes):
            return response
        return _json(self.get_refund(json.loads(response.body)["id"]))

    async def _http_refunds(self, request, handler):
        return _json(self.list_refunds(_query(request)))

    async def _http_refund(self, request, handler, refund_id):
        if refund_id not in self.data()["refunds"]:
            return await handler(request)
        return _json(self.get_refund(refund_id))

    async def _http_charge(self, request, handler, charge_id):
        from localstripe.resources import store

        charge = store.get(f"charge:{charge_id}")
        query = _query(request)
        if charge is None or query.get("expand"):
            return await handler(request)
        return _json(self.charge_object(charge))

    async def _http_disputes(self, request, handler):
        return _json(self.list_disputes(_query(request)))

    async def _http_dispute(self, request, handler, dispute_id):
        return _json(self.get_dispute(dispute_id, _query(request)))

    async def _http_create_payout(self, request, handler):
        params = check_params(await _body(request), "PayoutCreateParams")
        return _json(self.create_payout(params, automatic=False,
                                                request=_request_info(request)))

    async def _http_payouts(self, request, handler):
        return _json(self.list_payouts(_query(request)))

    async def _http_payout(self, request, handler, payout_id):
        return _json(self.get_payout(payout_id, _query(request)))

    # HTTP: the control API (loopback only, checked by the layer)
    async def control(self, request: web.Request) -> web.StreamResponse | None:
        """Answers a ``/_upss/...`` money or events request, or None when it is not one."""
        from localstripe.errors import UserError

        path, method = request.path.rstrip("/"), request.method
        try:
            if path == "/_upss/config" and method == "POST":
                return web.json_response(self.set_config(await _json_body(request)))
            if path == "/_upss/config" and method == "GET":
                return web.json_response(dict(self.config))
            if path == "/_upss/balance/available" and method == "POST":
                return web.json_response({"made_available": self.make_available(),
                                          "balance": self.balance()})
            match = re.fullmatch(r"/_upss/refunds/([^/]+)/fail", path)
            if match and method == "POST":
                return web.json_response(self.fail_refund(match.group(1)))
            if path == "/_upss/disputes" and method == "POST":
                return web.json_response(self.create_dispute(await _json_body(request)))
            match = re.fullmatch(r"/_upss/disputes/([^/]+)/(update|close)", path)
            if match and method == "POST":
                act = self.update_dispute if match.group(2) == "update" else self.close_dispute
                return web.json_response(act(match.group(1), await _json_body(request)))
            if path == "/_upss/payouts" and method == "POST":
                return web.json_response(self.create_payout(await _json_body(request)))
            match = re.fullmatch(r"/_upss/payouts/([^/]+)/(paid|failed|canceled)", path)
            if match and method == "POST":
                return web.json_response(self.finish_payout(match.group(1), match.group(2)))
            if path == "/_upss/events" and method == "GET":
                return web.json_response({"events": self.connect.event_log(
                    request.query.get("type"))})
            match = re.fullmatch(r"/_upss/events/([^/]+)/deliver", path)
            if match and method == "POST":
                spec = await _json_body(request)
                copies = _int(spec.get("copies", 1), "copies", minimum=1,
                              maximum=MAX_DELIVER_COPIES)
                return web.json_response(await self.connect.deliver_copies(
                    match.group(1), copies))
        except UserError as exc:
            return exc.to_response()
        return None


async def _json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        spec = await request.json()
    except ValueError as exc:
        raise _invalid(f"the body is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise _invalid("expected a JSON object")
    return spec
