"""UPSS — User-Pays Social Service: a paid question-and-answer marketplace.

``create_app(config)`` builds the Flask application; ``wsgi.py`` holds the instance that
gunicorn and ``flask --app wsgi`` use.
"""

from __future__ import annotations

import os
from datetime import timedelta

from babel import Locale
from babel.core import get_locale_identifier, parse_locale
from flask import Flask, request
from flask_login import current_user
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from .extensions import babel, csrf, db, login_manager, migrate
from .models import LANGUAGES

SUPPORTED_LOCALES = LANGUAGES


class NamedLocale(Locale):
    """A babel ``Locale`` that keeps its name. ``str()`` of a ``Locale`` builds the name from
    its parts each time (about 130 function calls), and a page asks for it several times
    (Flask-Babel's key for the request's translations, the page's ``lang``); and a
    ``Locale`` made for each request loads its CLDR data again for each request."""

    def __init__(self, code: str):
        parts = parse_locale(code)
        self._name = get_locale_identifier(parts)  # before: Locale.__init__ reads str(self)
        super().__init__(*parts)

    def __str__(self) -> str:
        return self._name


#: One ``Locale`` per supported language for every request (Flask-Babel keeps what the
#: selector returns when it is a ``Locale`` already).
_LOCALES = {code: NamedLocale(code) for code in SUPPORTED_LOCALES}


def create_app(config: dict | None = None) -> Flask:
    """Application factory; ``config`` overrides settings (tests pass their own)."""
    app = Flask(__name__, instance_relative_config=True,
                template_folder="../templates", static_folder="../static")
    app.config.from_mapping(config_module.from_environment(app.instance_path))
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = os.path.join(
        os.path.dirname(app.root_path), "translations")
    if config:
        app.config.update(config)
    config_module.check_deployment(app.config)
    app.permanent_session_lifetime = timedelta(hours=app.config["UPSS_SESSION_MAX_HOURS"])
    if app.config["UPSS_TRUSTED_PROXIES"]:
        hops = app.config["UPSS_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from .web.inputs import FilteredRequest
    app.request_class = FilteredRequest

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    # Templates read ``user`` (``web.auth.signed_in_user``), not Flask-Login's ``current_user``.
    login_manager.init_app(app, add_context_processor=False)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = None
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    from .web import limits
    limits.init_app(app)

    from . import stripe_gateway
    stripe_gateway.init_app(app)

    from .web import register_blueprints
    register_blueprints(app)

    from .cli import upss_cli
    app.cli.add_command(upss_cli)
    return app


def select_locale() -> Locale | str:
    """The signed-in user's own setting, else the language chosen on this browser (the
    language cookie; any other value in it is ignored), else the browser's Accept-Language,
    else English: as one of ``_LOCALES`` (a stored setting not among them, as it is, for
    Flask-Babel to read)."""
    if current_user and current_user.is_authenticated and getattr(current_user, "locale", ""):
        return _LOCALES.get(current_user.locale, current_user.locale)
    chosen = request.cookies.get(config_module.LANGUAGE_COOKIE, "")
    if chosen in SUPPORTED_LOCALES:
        return _LOCALES[chosen]
    return _LOCALES[request.accept_languages.best_match(SUPPORTED_LOCALES) or "en"]


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite: enforce foreign keys, wait for locks, WAL so readers never block the writer.

    pysqlite's own transaction handling breaks SAVEPOINT; SQLAlchemy's documented recipe is to
    switch it off here and emit BEGIN in the ``begin`` hook below.
    """
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):
    """SQLite: every transaction takes the write lock when it begins (``BEGIN IMMEDIATE``).

    With a plain ``BEGIN`` a transaction that read first and writes later fails at once with
    "database is locked" if another one wrote in between (its snapshot is stale, and waiting
    cannot help): two tabs or a double click got a 500. Taking the lock up front makes
    concurrent requests wait for each other (``busy_timeout``) instead; WAL readers outside
    a transaction are not blocked. SQLite is for one machine and modest traffic; PostgreSQL
    has row locks for the rest.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
