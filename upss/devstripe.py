"""Run localstripe (a fake Stripe server for development and tests) on 127.0.0.1 only.

localstripe's own ``start()`` binds every interface and pickles its whole store to
``/tmp/localstripe.pickle`` after each write; this wrapper binds loopback only and keeps the
state in memory, or in ``--state FILE`` when a developer wants it to survive a restart.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle

from .config import LOCAL_WEBHOOK_SECRET


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--state", default=None, help="file that keeps localstripe's data")
    parser.add_argument("--webhook-url", default=None,
                        help="the app's webhook endpoint, registered at start-up")
    parser.add_argument("--webhook-secret", default=None,
                        help="signing secret (default: UPSS_STRIPE_WEBHOOK_SECRET, "
                             "else the local one)")
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    _use_state_file(store, args.state)
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
