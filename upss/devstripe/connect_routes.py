"""Connect's HTTP side (``ConnectRoutes``): its ``/v1`` routes on localstripe's app, the Connect
webhook endpoints' configuration, its control requests (``/_upss/connect/...``) and the
onboarding page that stands in for Stripe's hosted onboarding (``connect`` describes them).
"""

from __future__ import annotations

import html
import re

from aiohttp import web

from .api import _body, _json, _query, _request_info, _stripe_error
from .connect import _ONBOARDING_PREFIX, Connect


class ConnectRoutes(Connect):
    """``Connect`` answering HTTP: ``add_routes`` puts its API routes on localstripe's app;
    ``control`` answers the control requests and the onboarding page (loopback only, checked
    by the layer)."""

    # HTTP: the API routes
    async def http_create_account(self, request):
        return _json(self.create_account(await _body(request)))

    async def http_list_accounts(self, request):
        return _json(self.list_accounts(_query(request)))

    async def http_get_account(self, request):
        return _json(self.get_account(request.match_info["id"], _query(request)))

    async def http_create_account_link(self, request):
        base = f"{request.scheme}://{request.host}"
        link = self.create_account_link(await _body(request), base)
        return _json(link)

    async def http_create_transfer(self, request):
        return _json(self.create_transfer(await _body(request),
                                               request=_request_info(request)))

    async def http_list_transfers(self, request):
        return _json(self.list_transfers(_query(request)))

    async def http_get_transfer(self, request):
        return _json(self.get_transfer(request.match_info["id"], _query(request)))

    async def http_create_reversal(self, request):
        return _json(self.create_reversal(request.match_info["id"],
                                               await _body(request),
                                               request=_request_info(request)))

    async def http_list_reversals(self, request):
        return _json(self.list_reversals(request.match_info["id"], _query(request)))

    async def http_get_reversal(self, request):
        return _json(self.get_reversal(request.match_info["transfer"],
                                            request.match_info["id"], _query(request)))

    async def http_config_webhook(self, request):
        """``POST /_config/connect_webhooks/{id}``: like localstripe's ``/_config/webhooks``."""
        from localstripe.errors import UserError
        from localstripe.webhooks import Webhook

        data = await _body(request)
        url, secret, events = data.get("url"), data.get("secret"), data.get("events")
        if not isinstance(url, str) or not url.startswith("http") or not secret:
            raise UserError(400, "Bad request")
        if events is not None and not isinstance(events, list):
            raise UserError(400, "Bad request")
        self.connect_webhooks[request.match_info["id"]] = Webhook(url, secret, events)
        return web.Response()

    def add_routes(self, app: web.Application) -> None:
        for method, path, handler in (
                ("POST", "/v1/accounts", self.http_create_account),
                ("GET", "/v1/accounts", self.http_list_accounts),
                ("GET", "/v1/accounts/{id}", self.http_get_account),
                ("POST", "/v1/account_links", self.http_create_account_link),
                ("POST", "/v1/transfers", self.http_create_transfer),
                ("GET", "/v1/transfers", self.http_list_transfers),
                ("GET", "/v1/transfers/{id}", self.http_get_transfer),
                ("POST", "/v1/transfers/{id}/reversals", self.http_create_reversal),
                ("GET", "/v1/transfers/{id}/reversals", self.http_list_reversals),
                ("GET", "/v1/transfers/{transfer}/reversals/{id}", self.http_get_reversal),
                ("POST", "/_config/connect_webhooks/{id}", self.http_config_webhook)):
            app.router.add_route(method, path, handler)

    # HTTP: the control API and the onboarding page (loopback only, checked by the layer)
    async def control(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(_ONBOARDING_PREFIX):
            token = path[len(_ONBOARDING_PREFIX):]
            if request.method == "GET":
                return self._onboarding_visit(token)
            if request.method == "POST":
                form = await request.post()
                return self._onboarding_submit(token, form.get("session"), form.get("action"))
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        match = re.fullmatch(r"/_upss/connect/accounts/([^/]+)", path)
        if match and request.method == "POST":
            try:
                spec = await request.json()
                state = spec.get("state") if isinstance(spec, dict) else None
                if state not in ("enabled", "details_needed"):
                    raise ValueError('state must be "enabled" or "details_needed"')
            except ValueError as exc:
                return _stripe_error(400, "invalid_request_error", str(exc))
            if match.group(1) not in self.data()["accounts"]:
                return _stripe_error(404, "invalid_request_error",
                                     f"No such account: '{match.group(1)}'", "resource_missing")
            return web.json_response(self.set_account_state(match.group(1), state))
        if path == "/_upss/connect/account_links/expire" and request.method == "POST":
            try:
                spec = await request.json() if request.can_read_body else {}
            except ValueError as exc:
                return _stripe_error(400, "invalid_request_error", str(exc))
            account = spec.get("account") if isinstance(spec, dict) else None
            return web.json_response({"expired": self.expire_links(account)})
        if path == "/_upss/connect/events" and request.method == "GET":
            return web.json_response({"events": [
                {**event, "deliveries": self.deliveries.get(event["id"], {})}
                for event in self.events]})
        raise web.HTTPNotFound()

    def _onboarding_visit(self, token: str) -> web.Response:
        verdict, link = self.open_link(token)
        if verdict == self.OPEN:
            account = self.data()["accounts"][link["account"]]
            return _onboarding_page(token, link, account)
        return self._onboarding_refresh(verdict, link)

    def _onboarding_submit(self, token: str, session, action) -> web.Response:
        if action not in ("complete", "leave"):
            return _message_page(400, "Unknown choice",
                                 "Choose “Complete onboarding” or “Leave without finishing”.")
        verdict, link = self.finish_link(token, session, action)
        if verdict != self.OPEN:
            return self._onboarding_refresh(verdict, link)
        if link["return_url"]:
            raise web.HTTPSeeOther(link["return_url"])
        done = ("Onboarding is complete" if action == "complete"
                else "You left onboarding without finishing")
        return _message_page(200, done, "You can close this page.")

    @staticmethod
    def _onboarding_refresh(verdict: str, link: dict | None) -> web.Response:
        if verdict == Connect.UNKNOWN or link is None:
            return _message_page(404, "Link not found",
                                 "This onboarding link does not exist on this local Stripe.")
        if link["refresh_url"]:
            raise web.HTTPSeeOther(link["refresh_url"])
        return _message_page(410, "Link expired",
                             "This onboarding link has expired or was already used. Ask for a "
                             "new one.")


_PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       background: #ffffff; color: #1a1a1a; line-height: 1.5; }
main { max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; color: #0a2540; }
code { font-size: 1rem; background: #eef1f5; color: #1a1a1a; padding: 0 .25rem; }
.buttons { display: flex; flex-wrap: wrap; gap: .75rem; margin-top: 1.5rem; }
button { font: inherit; padding: .6rem 1.1rem; border-radius: 6px; border: 2px solid #0a2540;
         cursor: pointer; }
button.primary { background: #0a2540; color: #ffffff; }
button.secondary { background: #ffffff; color: #0a2540; }
button:focus-visible { outline: 3px solid #0a2540; outline-offset: 3px; }
"""


def _html_page(status: int, title: str, body: str) -> web.Response:
    text = ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)} – Stripe test onboarding (local)</title>\n"
            f"<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            "</body>\n</html>\n")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _message_page(status: int, title: str, message: str) -> web.Response:
    return _html_page(status, title, f"<h1>{html.escape(title)}</h1>\n"
                                     f"<p>{html.escape(message)}</p>")


def _onboarding_page(token: str, link: dict, account: dict) -> web.Response:
    """Stands in for Stripe's hosted onboarding: one form, two buttons."""
    what = ("update the details of" if link["type"] == "account_update"
            else "finish onboarding for")
    email = (f" (<span>{html.escape(account['email'])}</span>)" if account.get("email")
             else "")
    body = (
        "<h1>Stripe test onboarding (local)</h1>\n"
        f"<p>This page stands in for Stripe's hosted onboarding. It lets you {what} the "
        f"connected account <code>{html.escape(account['id'])}</code>{email}.</p>\n"
        "<p>“Complete onboarding” marks the account as verified, with payouts enabled. "
        "“Leave without finishing” returns without changing it.</p>\n"
        f"<form method=\"post\" action=\"{_ONBOARDING_PREFIX}{html.escape(token)}\">\n"
        f"<input type=\"hidden\" name=\"session\" value=\"{html.escape(link['session'])}\">\n"
        "<div class=\"buttons\">\n"
        "<button type=\"submit\" class=\"primary\" name=\"action\" value=\"complete\">"
        "Complete onboarding</button>\n"
        "<button type=\"submit\" class=\"secondary\" name=\"action\" value=\"leave\">"
        "Leave without finishing</button>\n"
        "</div>\n</form>")
    return _html_page(200, "Account onboarding", body)
