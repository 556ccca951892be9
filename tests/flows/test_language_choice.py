"""Anyone can choose the language at the foot of every page (issue 16, item 6): remembered in a
cookie for visitors, saved as the preference of a signed-in user, whose saved preference wins
over the cookie. Order: the user's preference, the cookie, Accept-Language, English. And the
help page (item 13) with the organizer's contact address."""

from __future__ import annotations

import re

import pytest

from tests.conftest import csrf_token, sign_in
from upss import accounts
from upss.extensions import db
from upss.models import User
from upss.web.main import LANGUAGE_COOKIE

#: At least this long the browser keeps the choice (a "long max-age").
MIN_COOKIE_DAYS = 180


def page_lang(response) -> str:
    match = re.search(r'<html lang="([^"]*)"', response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:300]
    return match.group(1)


def language_cookie_header(response) -> str | None:
    """The Set-Cookie header that sets the language cookie (None: not set)."""
    found = [h for h in response.headers.getlist("Set-Cookie")
             if h.startswith(f"{LANGUAGE_COOKIE}=")]
    assert len(found) <= 1
    return found[0] if found else None


LANGUAGE_FORM = re.compile(r'<form method="post" action="([^"]+)" class="language-form" '
                           r'aria-labelledby="language-label">(.*?)</form>', re.S)


def language_form(page: str) -> re.Match:
    form = LANGUAGE_FORM.search(page)
    assert form, "no language form on the page"
    return form


def choose(client, locale: str, next_url: str | None = "/", form_url: str = "/"):
    """Send the language form of ``form_url`` as a browser does: with its CSRF token if it
    carries one (a signed-in user's), from a page of this site (``Sec-Fetch-Site``), to go
    back to ``next_url`` (as it stands in the form's query string)."""
    url = "/language" if next_url is None else f"/language?next={next_url}"
    form = language_form(client.get(form_url).get_data(as_text=True)).group(2)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    data = {"locale": locale, **({"csrf_token": token[1]} if token else {})}
    return client.post(url, data=data, headers={"Sec-Fetch-Site": "same-origin"})


def test_every_page_offers_the_languages_each_in_its_own_name(client):
    text = client.get("/sign-in?next=/ask").get_data(as_text=True)
    form = language_form(text)
    assert form.group(1) == "/language?next=/sign-in?next%3D/ask"
    assert '<label id="language-label" class="language-form__label" for="language-choice">' \
           'Language</label>' in form.group(2)
    options = re.findall(r'<option value="(\w+)" lang="(\w+)"( selected)?>([^<]+)</option>',
                         form.group(2))
    assert [(value, lang, name) for value, lang, _selected, name in options] == [
        ("en", "en", "English"), ("nb", "nb", "Norsk bokmål"), ("fi", "fi", "Suomi"),
        ("sv", "sv", "Svenska"), ("sl", "sl", "Slovenščina")]
    assert [value for value, _lang, selected, _name in options if selected] == ["en"]
    # A visitor's form has no token (``test_a_visitor_s_page_sets_no_cookie``).
    assert 'name="csrf_token"' not in form.group(2)


def test_a_visitor_s_page_sets_no_cookie(client):
    """The pages a visitor reads start no session: nothing on them needs one."""
    for url in ("/", "/help", "/", "/help?x=1"):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers.getlist("Set-Cookie") == [], url
    assert client.get_cookie("session") is None


def test_a_signed_in_user_s_form_carries_the_token(client, make_user):
    _, email, password = make_user()
    sign_in(client, email, password)
    form = language_form(client.get("/questions").get_data(as_text=True))
    assert re.search(r'<input type="hidden" name="csrf_token" value="[^"]+">', form.group(2))


def test_a_visitor_s_choice_is_remembered_in_a_cookie(client):
    response = choose(client, "fi", "/sign-in", form_url="/sign-in")
    assert response.status_code == 302 and response.location == "/sign-in"
    header = language_cookie_header(response)
    assert header is not None and header.startswith(f"{LANGUAGE_COOKIE}=fi;")
    attributes = {part.strip().split("=")[0].lower(): part.strip().partition("=")[2]
                  for part in header.split(";")[1:]}
    assert attributes["samesite"] == "Lax"
    assert "httponly" in attributes
    assert "secure" not in attributes  # the session cookie is not Secure in this set-up
    assert int(attributes["max-age"]) >= MIN_COOKIE_DAYS * 24 * 3600
    # The cookie wins over the browser's Accept-Language, on every page.
    for url in ("/sign-in", "/", "/help", "/sign-up"):
        page = client.get(url, headers={"Accept-Language": "sv,en;q=0.5"})
        assert page_lang(page) == "fi", url
    assert 'value="fi" lang="fi" selected' in client.get("/").get_data(as_text=True)


def test_the_cookie_is_secure_when_the_session_cookie_is(app, client):
    app.config["SESSION_COOKIE_SECURE"] = True
    response = client.post("/language?next=/", data={"locale": "sv"},
                           base_url="https://localhost",
                           headers={"Origin": "https://localhost"})
    assert response.status_code == 302
    header = language_cookie_header(response)
    assert header is not None and "Secure" in [part.strip() for part in header.split(";")]


def test_without_a_choice_accept_language_then_english(client):
    assert page_lang(client.get("/", headers={"Accept-Language": "sl,en;q=0.5"})) == "sl"
    assert page_lang(client.get("/", headers={"Accept-Language": "de"})) == "en"
    assert page_lang(client.get("/")) == "en"


@pytest.mark.parametrize("value", ["xx", "", "FI", "fi-FI", "fi;", "en,fi", "../fi",
                                   "<script>", "sl " * 3])
def test_an_invalid_cookie_value_is_ignored(client, value):
    client.set_cookie(LANGUAGE_COOKIE, value)
    assert page_lang(client.get("/", headers={"Accept-Language": "nb"})) == "nb"
    assert page_lang(client.get("/help")) == "en"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/",
                                    "/\\evil.example", "\\\\evil.example", "javascript:alert(1)",
                                    "evil.example/ask", "http:/ask"])
def test_next_must_be_a_path_on_this_site(client, target):
    response = choose(client, "nb", target.replace("\\", "%5C"))
    assert response.status_code == 302
    assert response.location == "/", f"{target!r} led to {response.location!r}"
    assert language_cookie_header(response) is not None


def test_without_next_the_choice_leads_home(client):
    response = choose(client, "sv", None)
    assert response.status_code == 302 and response.location == "/"


def test_a_safe_next_keeps_its_query(client):
    response = choose(client, "sl", "/sign-in%3Fnext%3D/ask")
    assert response.location == "/sign-in?next=/ask"


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example"}, {"Origin": "http://localhost.evil.example"},
    # A browser that sends both is judged by Sec-Fetch-Site.
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"}])
def test_a_visitor_s_choice_sent_from_another_site_is_refused(client, headers):
    response = client.post("/language?next=/", data={"locale": "fi"}, headers=headers)
    assert response.status_code == 400
    assert language_cookie_header(response) is None
    assert page_lang(client.get("/")) == "en"


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
    {"Origin": "http://localhost"}, {}])
def test_a_visitor_s_choice_from_this_site_needs_no_token(client, headers):
    """``none``: typed or bookmarked; neither header: an old browser or a script, which can
    change only its own cookie."""
    response = client.post("/language?next=/help", data={"locale": "fi"}, headers=headers)
    assert response.status_code == 302 and response.location == "/help"
    assert language_cookie_header(response).startswith(f"{LANGUAGE_COOKIE}=fi;")
    assert page_lang(client.get("/help")) == "fi"


def test_a_signed_in_choice_needs_the_form_s_csrf_token(app, client, make_user):
    user_id, email, password = make_user()
    sign_in(client, email, password)
    for data in ({"locale": "fi"}, {"locale": "fi", "csrf_token": "not-the-token"}):
        response = client.post("/language?next=/", data=data,
                               headers={"Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 400
        assert language_cookie_header(response) is None
    with app.app_context():
        assert db.session.get(User, user_id).locale == ""
    assert page_lang(client.get("/questions")) == "en"


def test_an_unknown_language_is_refused(client):
    for locale in ("xx", "", "de"):
        response = choose(client, locale, "/")
        assert response.status_code == 400 and language_cookie_header(response) is None
    assert client.get_cookie(LANGUAGE_COOKIE) is None


def test_a_signed_in_choice_is_saved_as_the_preference(app, client, make_user):
    user_id, email, password = make_user()
    with app.app_context():
        user = db.session.get(User, user_id)
        accounts.update_preferences(db.session, user, locale="", large_text=True,
                                    high_contrast=True)
        db.session.commit()
    sign_in(client, email, password)
    response = choose(client, "sl", "/questions")
    assert response.status_code == 302 and response.location == "/questions"
    with app.app_context():
        user = db.session.get(User, user_id)
        # Saved, and the display settings are kept as they were.
        assert (user.locale, user.large_text, user.high_contrast) == ("sl", True, True)
    assert page_lang(client.get("/questions", headers={"Accept-Language": "fi"})) == "sl"
    # The same browser keeps the language after signing out too.
    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/questions")})
    assert page_lang(client.get("/")) == "sl"


def test_a_saved_preference_wins_over_the_cookie(app, client, make_user):
    user_id, email, password = make_user()
    with app.app_context():
        user = db.session.get(User, user_id)
        accounts.update_preferences(db.session, user, locale="sv", large_text=False,
                                    high_contrast=False)
        db.session.commit()
    choose(client, "fi", "/")
    assert page_lang(client.get("/")) == "fi"
    sign_in(client, email, password)
    assert client.get_cookie(LANGUAGE_COOKIE).value == "fi"
    assert page_lang(client.get("/questions")) == "sv"
    assert page_lang(client.get("/help")) == "sv"


def test_the_cookie_applies_to_a_user_who_follows_the_browser(client, make_user):
    """"The language of my browser" (no saved language) lets the cookie decide."""
    _, email, password = make_user()
    client.set_cookie(LANGUAGE_COOKIE, "nb")
    sign_in(client, email, password)
    assert page_lang(client.get("/questions", headers={"Accept-Language": "fi"})) == "nb"


# --- 13. The help page ------------------------------------------------------------------------

@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSS_CONTACT_EMAIL": "help@upss.example"}


@pytest.mark.parametrize("locale", ["en", "nb", "fi", "sv", "sl"])
def test_the_help_page_is_in_each_language_with_the_contact_address(client, locale):
    response = client.get("/help", headers={"Accept-Language": locale})
    assert response.status_code == 200 and page_lang(response) == locale
    text = response.get_data(as_text=True)
    assert '<a href="mailto:help@upss.example">help@upss.example</a>' in text
    assert '<a id="help-link" href="/help" aria-current="page">' in text
    assert text.count("<h2") == 7  # contents + six sections
    if locale != "en":
        assert "Contact the organizer" not in text and "Refunds" not in text


def test_every_page_links_to_the_help_page(client):
    for url in ("/", "/sign-in", "/sign-up", "/no-such-page", "/answer/apply"):
        response = client.get(url, follow_redirects=True)
        assert '<a id="help-link" href="/help">' in response.get_data(as_text=True), url
