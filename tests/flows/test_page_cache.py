"""The home and help pages are rendered once per language for visitors (``upss.web.page_cache``,
issue 19: the anonymous home under load), and as usual for everybody else."""

from __future__ import annotations

import re

import pytest
from flask import template_rendered

from tests.conftest import csrf_token, sign_in


@pytest.fixture
def renders(app):
    """The names of the templates rendered, in order."""
    seen: list[str] = []

    def record(sender, template, context, **extra):
        seen.append(template.name)

    template_rendered.connect(record, app)
    yield seen
    template_rendered.disconnect(record, app)


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]*)"', response.get_data(as_text=True))[1]


@pytest.mark.parametrize(("url", "template"), [("/", "main/home.html"),
                                               ("/help", "main/help.html")])
def test_a_visitor_s_page_is_rendered_once_per_language(client, renders, url, template):
    first = client.get(url)
    again = client.get(url)
    assert first.status_code == again.status_code == 200
    assert again.get_data() == first.get_data()
    assert renders == [template]
    finnish = client.get(url, headers={"Accept-Language": "fi"})
    assert html_lang(finnish) == "fi" and finnish.get_data() != first.get_data()
    assert client.get(url, headers={"Accept-Language": "fi"}).get_data() == finnish.get_data()
    assert renders == [template, template]
    # What was sent again is what a render gives now.
    assert html_lang(client.get(url)) == "en"
    # Headers are the response's own, not kept: each response has all of them.
    assert again.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in again.headers["Content-Security-Policy"]


def test_a_signed_in_user_gets_their_own_page(client, make_user, renders):
    visitor = client.get("/").get_data(as_text=True)
    assert "Create an account to ask" in visitor and "Sign out" not in visitor
    _, email, password = make_user()
    sign_in(client, email, password)
    renders.clear()
    page = client.get("/").get_data(as_text=True)
    assert "Sign out" in page and "Create an account to ask" not in page
    assert client.get("/").get_data(as_text=True).count("Sign out") == 1
    assert renders == ["main/home.html", "main/home.html"]


def test_a_message_for_the_visitor_is_shown(client, make_user):
    """A visitor with something in the session (here the message after signing out) gets
    the page rendered for them, with the message."""
    client.get("/")  # kept
    _, email, password = make_user()
    sign_in(client, email, password)
    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/questions")})
    assert "You have signed out." in client.get("/").get_data(as_text=True)
    assert "You have signed out." not in client.get("/").get_data(as_text=True)


def test_a_page_with_a_query_is_rendered_for_it(client, renders):
    client.get("/")
    page = client.get("/?next=/ask").get_data(as_text=True)
    assert 'href="/sign-in?next=/ask"' in page
    assert 'action="/language?next=/?next%3D/ask"' in page
    assert renders == ["main/home.html", "main/home.html"]


def test_templates_reloaded_on_change_are_rendered_each_time(app, client, renders):
    app.jinja_env.auto_reload = True  # flask run --debug
    client.get("/help")
    client.get("/help")
    assert renders == ["main/help.html", "main/help.html"]


def test_each_app_keeps_its_own(app_config, client):
    """Another app's settings (the contact address on the help page) are its own."""
    from upss import create_app

    assert "help@upss.example" not in client.get("/help").get_data(as_text=True)
    from upss.extensions import db

    other = create_app({**app_config, "UPSS_CONTACT_EMAIL": "help@upss.example"})
    assert "help@upss.example" in other.test_client().get("/help").get_data(as_text=True)
    with other.app_context():
        db.engine.dispose()
