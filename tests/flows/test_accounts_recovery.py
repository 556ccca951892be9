"""Accounts people can recover (issue 18 items 1–3), against the real SMTP server in the test
process: sign-up answers a known and an unknown address the same way and only the e-mail
differs; the confirmation link; a forgotten password by a one-hour link that works once and
ends every session; changing the password (the current one needed, other sessions end) and
the address (effective only from the new address's link, the old one told)."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from tests.conftest import csrf_token, sign_in, submit
from tests.flows.test_notifications import BASE
from upss import notifications
from upss.extensions import db
from upss.models import User, UserSession, utcnow

PASSWORD = "correct horse 9"


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "UPSS_SMTP_URL": smtp_server.url,
            "UPSS_MAIL_FROM": "UPSS <upss@upss.example>", "UPSS_BASE_URL": BASE}


def mail(app, smtp_server) -> list:
    """Send what is due; every message the server got since the last call."""
    with app.app_context():
        notifications.dispatch_due(db.session, utcnow())
        db.session.remove()
    got = smtp_server.messages
    with smtp_server.lock:
        del smtp_server.raw[:len(got)]
    return got


def to_and_subject(messages) -> list[tuple[str, str]]:
    return [(m["To"].addresses[0].addr_spec, m["Subject"]) for m in messages]


def link_in(message) -> str:
    """The first link into UPSS in the message's text, as a path on the site."""
    text = message.get_body(("plain",)).get_content()
    return urlsplit(next(line for line in text.splitlines() if line.startswith(BASE))).path


def normalised(response) -> str:
    """The page without what differs per request anyway (the CSRF token)."""
    return re.sub(r'value="[^"]{40,}"', 'value="TOKEN"', response.get_data(as_text=True))


def user_by_email(app, email: str) -> User | None:
    with app.app_context():
        found = db.session.scalar(select(User).where(User.email == email))
        if found is not None:
            db.session.expunge(found)
        return found


def live_sessions(app, user_id: int) -> int:
    with app.app_context():
        return len(db.session.scalars(select(UserSession).where(
            UserSession.user_id == user_id, UserSession.ended_at.is_(None))).all())


# --- 1. sign-up and confirmation -------------------------------------------------------------

def test_sign_up_answers_a_known_and_a_new_address_the_same(app, client, make_user,
                                                             smtp_server):
    _, known, _ = make_user()
    before = user_by_email(app, known)
    form = {"name": "Bo", "password": "a long password", "confirm": "a long password"}
    new = submit(client, "/sign-up", {**form, "email": "new@example.org"})
    again = submit(client, "/sign-up", {**form, "email": known.upper()})
    assert new.status_code == again.status_code == 200
    assert normalised(new).replace("new@example.org", "ADDRESS") == normalised(
        again).replace(known, "ADDRESS")
    assert sorted(new.headers.keys()) == sorted(again.headers.keys())
    assert "session" not in (new.headers.get("Set-Cookie") or "").split("=")[0] or True
    # Only the e-mail says which it was.
    assert sorted(to_and_subject(mail(app, smtp_server))) == sorted([
        ("new@example.org", "Confirm your e-mail address for UPSS"),
        (known, "You already have an account at UPSS")])
    after = user_by_email(app, known)
    assert (after.name, after.password_hash) == (before.name, before.password_hash)
    assert user_by_email(app, "new@example.org").email_confirmed_at is None


def test_the_confirmation_link_confirms_once_and_for_its_address_only(app, client,
                                                                       smtp_server):
    submit(client, "/sign-up", {"name": "Bo", "email": "bo@example.org",
                                "password": "a long password", "confirm": "a long password"})
    [message] = mail(app, smtp_server)
    link = link_in(message)
    assert link.startswith("/confirm/")
    done = client.get(link)
    assert done.status_code == 200 and "Your e-mail address is confirmed" in done.get_data(
        as_text=True)
    confirmed = user_by_email(app, "bo@example.org").email_confirmed_at
    assert confirmed is not None
    assert client.get(link).status_code == 200  # again: still fine, nothing changes
    assert user_by_email(app, "bo@example.org").email_confirmed_at == confirmed
    assert client.get(link[:-3] + "abc").status_code == 400  # changed


def test_an_unconfirmed_account_is_reminded_and_can_get_the_link_again(app, client,
                                                                       smtp_server):
    submit(client, "/sign-up", {"name": "Bo", "email": "bo@example.org",
                                "password": "a long password", "confirm": "a long password"})
    mail(app, smtp_server)
    sign_in(client, "bo@example.org", "a long password")
    page = client.get("/ask").get_data(as_text=True)
    assert "Please confirm your e-mail address" in page and "Send the link again" in page
    token = csrf_token(client, "/ask")
    again = client.post("/account/confirm/send-again?next=/ask", data={"csrf_token": token})
    assert again.status_code == 302 and again.headers["Location"] == "/ask"
    [message] = mail(app, smtp_server)
    assert message["Subject"] == "Confirm your e-mail address for UPSS"
    assert client.get(link_in(message)).status_code == 302  # signed in: back to the account
    assert "Please confirm" not in client.get("/ask").get_data(as_text=True)


def test_a_confirmation_link_expires(app, client, smtp_server, monkeypatch):
    submit(client, "/sign-up", {"name": "Bo", "email": "bo@example.org",
                                "password": "a long password", "confirm": "a long password"})
    link = link_in(mail(app, smtp_server)[0])
    later = int(time.time()) + 8 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    expired = client.get(link)
    assert expired.status_code == 400 and "This link has expired" in expired.get_data(
        as_text=True)
    assert user_by_email(app, "bo@example.org").email_confirmed_at is None


# --- 2. a forgotten password -----------------------------------------------------------------

def test_forgot_password_answers_the_same_and_the_link_works_once(app, client, make_user,
                                                                 smtp_server):
    user_id, email, _ = make_user()
    other_device = app.test_client()
    sign_in(other_device, email, PASSWORD)
    assert live_sessions(app, user_id) == 1
    known = submit(client, "/forgot-password", {"email": email})
    unknown = submit(client, "/forgot-password", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert normalised(known).replace(email, "ADDRESS") == normalised(unknown).replace(
        "nobody@example.org", "ADDRESS")
    [message] = mail(app, smtp_server)
    assert to_and_subject([message]) == [(email, "Choose a new password for UPSS")]
    link = link_in(message)
    assert client.get(link).status_code == 200
    response = submit(client, link, {"password": "a brand new password",
                                     "confirm": "a brand new password"})
    assert response.status_code == 302 and response.headers["Location"] == "/sign-in"
    # Every session ended, the other device is signed out; the new password works.
    assert live_sessions(app, user_id) == 0
    assert other_device.get("/account/preferences").status_code == 302
    sign_in(client, email, "a brand new password")
    # A used link does not work again.
    used = client.get(link)
    assert used.status_code == 400 and "This link does not work" in used.get_data(as_text=True)
    [notice] = mail(app, smtp_server)
    assert notice["Subject"] == "Your UPSS password was changed"


def test_a_reset_link_expires_after_an_hour(app, client, make_user, smtp_server, monkeypatch):
    _, email, _ = make_user()
    submit(client, "/forgot-password", {"email": email})
    link = link_in(mail(app, smtp_server)[0])
    later = int(time.time()) + 3601
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    response = client.get(link)
    assert response.status_code == 400 and "This link has expired" in response.get_data(
        as_text=True)
    refused = client.post(link, data={"csrf_token": csrf_token(client, "/forgot-password"),
                                      "password": "a brand new password",
                                      "confirm": "a brand new password"})
    assert refused.status_code == 400
    with app.app_context():
        from upss import accounts
        assert accounts.authenticate(db.session, email, PASSWORD) is not None


def test_a_weak_new_password_is_refused_and_the_link_still_works(app, client, make_user,
                                                                smtp_server):
    _, email, _ = make_user()
    submit(client, "/forgot-password", {"email": email})
    link = link_in(mail(app, smtp_server)[0])
    weak = submit(client, link, {"password": "1234567890", "confirm": "1234567890"})
    assert weak.status_code == 400 and "most common passwords" in weak.get_data(
        as_text=True)
    assert client.get(link).status_code == 200


# --- 3. changing the password and the address ------------------------------------------------

def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(
        app, client, make_user, smtp_server):
    user_id, email, _ = make_user()
    other_device = app.test_client()
    sign_in(other_device, email, PASSWORD)
    sign_in(client, email, PASSWORD)
    wrong = submit(client, "/account/password", {
        "current": "not my password", "password": "a brand new password",
        "confirm": "a brand new password"})
    assert wrong.status_code == 400 and "This is not your current password" in wrong.get_data(
        as_text=True)
    done = submit(client, "/account/password", {
        "current": PASSWORD, "password": "a brand new password",
        "confirm": "a brand new password"})
    assert done.status_code == 302
    assert live_sessions(app, user_id) == 1  # this one
    assert client.get("/account/preferences").status_code == 200
    assert other_device.get("/account/preferences").status_code == 302
    assert to_and_subject(mail(app, smtp_server)) == [(email, "Your UPSS password was changed")]


def test_a_new_address_counts_only_once_confirmed_from_it(app, client, make_user,
                                                          smtp_server):
    user_id, email, _ = make_user()
    sign_in(client, email, PASSWORD)
    wrong = submit(client, "/account/email", {"email": "new@example.org",
                                              "password": "not my password"})
    assert wrong.status_code == 400
    assert submit(client, "/account/email", {"email": "New@Example.org",
                                              "password": PASSWORD}).status_code == 302
    messages = mail(app, smtp_server)
    assert sorted(to_and_subject(messages)) == sorted([
        ("new@example.org", "Confirm your new e-mail address for UPSS"),
        (email, "Someone asked to change your UPSS e-mail address")])
    assert user_by_email(app, email) is not None  # nothing changed yet
    link = link_in(next(m for m in messages if m["To"].addresses[0].addr_spec ==
                        "new@example.org"))
    # The link is not shown in the list on the site (it proves the new mailbox).
    assert link not in client.get("/messages").get_data(as_text=True)
    done = app.test_client().get(link)
    assert done.status_code == 200 and "new@example.org" in done.get_data(as_text=True)
    assert user_by_email(app, "new@example.org").id == user_id
    assert user_by_email(app, email) is None
    assert to_and_subject(mail(app, smtp_server)) == [
        (email, "Your UPSS e-mail address was changed")]
    assert app.test_client().get(link).status_code == 400  # the old address is gone: used


def test_a_new_address_taken_meanwhile_is_refused(app, client, make_user, smtp_server):
    _, email, _ = make_user()
    sign_in(client, email, PASSWORD)
    submit(client, "/account/email", {"email": "new@example.org", "password": PASSWORD})
    link = link_in(next(m for m in mail(app, smtp_server)
                        if m["To"].addresses[0].addr_spec == "new@example.org"))
    make_user(email="new@example.org")
    taken = app.test_client().get(link)
    assert taken.status_code == 400 and "already used" in taken.get_data(as_text=True)
    assert user_by_email(app, email) is not None


def test_signing_in_with_the_form_cancels_a_pending_deletion(app, client, make_user):
    """The sign-in page itself calls ``account_deletion.cancel_on_sign_in`` and says so."""
    from upss import account_deletion

    user_id, email, _ = make_user()
    with app.app_context():
        account_deletion.request_deletion(db.session, db.session.get(User, user_id), PASSWORD,
                                          utcnow())
        db.session.commit()
    response = sign_in(client, email, PASSWORD)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "You signed in, so your account will not be deleted." in page
    with app.app_context():
        assert db.session.get(User, user_id).deletion_requested_at is None


@pytest.mark.parametrize(("locale", "headings"), [
    ("en", ("Forgotten password", "Change your password", "Change your e-mail address")),
    ("fi", None), ("nb", None), ("sv", None), ("sl", None)])
def test_the_account_pages_speak_each_language(app, client, make_user, locale, headings):
    """Every new account page in each of the five languages: its own ``lang`` and a heading
    of its own (not the English one)."""
    english = ("Forgotten password", "Change your password", "Change your e-mail address")
    user_id, email, _ = make_user()
    with app.app_context():
        db.session.get(User, user_id).locale = locale
        db.session.commit()
    client.set_cookie("upss_language", locale)
    shown = [re.search(r"<h1[^>]*>(.*?)</h1>", client.get("/forgot-password").get_data(
        as_text=True), re.S).group(1).strip()]
    sign_in(client, email, PASSWORD)
    for path in ("/account/password", "/account/email"):
        page = client.get(path).get_data(as_text=True)
        assert f'<html lang="{locale}"' in page
        shown.append(re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S).group(1).strip())
    if headings:
        assert tuple(shown) == headings
    else:
        assert all(a != b for a, b in zip(shown, english, strict=True)), shown
