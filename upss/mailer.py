"""Sending e-mail: one small sender interface, its SMTP implementation, and the message format.

A sender has one method, ``send(message)``, which returns when the mail server has taken the
message and otherwise raises :class:`TemporaryFailure` (try again later: the server answered
4xx, refused the connection or did not answer in time) or :class:`PermanentFailure` (do not try
again: the server answered 5xx). ``upss.notifications`` only knows this interface, so another
channel (SMS, …) can be added beside :class:`SmtpSender` later.

:func:`build_message` makes an RFC 5322 message (``email.message.EmailMessage``): Date,
Message-ID, From, To, an encoded Subject, MIME-Version and a multipart/alternative body (plain
text first, then HTML). A message a person may turn off carries ``List-Unsubscribe`` (an HTTPS
link with a signed token) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058);
money and security messages carry neither. When ``UPSS_DKIM_*`` are set, :class:`SmtpSender`
signs each message with DKIM (``dkimpy``) over :data:`DKIM_HEADERS`, as RFC 8058 expects.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dkim

#: Seconds to wait for the mail server (connecting, and each answer) before giving up.
SMTP_TIMEOUT = 10
#: The headers the DKIM signature covers (those present in the message are signed).
DKIM_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"MIME-Version",
                b"List-Unsubscribe", b"List-Unsubscribe-Post")
#: How messages go on the wire: CRLF, and header lines folded only past RFC 5322's hard limit,
#: so a long unsubscribe link stays one plain ``<https://…>`` (at 78 characters the email
#: package would turn it into encoded words that mail clients do not read as a link).
WIRE_POLICY = SMTP.clone(max_line_length=998)
#: Hosts of the local development mail server (``make run``'s ``smtp`` process).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class SendError(Exception):
    """Sending failed; ``str()`` says what the server (or the network) answered."""


class TemporaryFailure(SendError):
    """Try again later: a 4xx answer, a refused or broken connection, a timeout.

    ``unreachable``: the server could not be reached at all (not this message's fault), so
    other messages need not be tried now either.
    """

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


class PermanentFailure(SendError):
    """Do not try again: a 5xx answer (no such mailbox, refused as spam, …)."""


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    private_key: bytes


def build_message(*, sender: str, to: str, subject: str, text: str, html: str,
                  message_id: str, date: datetime, unsubscribe_url: str | None = None
                  ) -> EmailMessage:
    """An RFC 5322 message with a plain-text part and an HTML alternative.

    ``unsubscribe_url`` (only for messages a person may turn off) adds ``List-Unsubscribe``
    and the one-click ``List-Unsubscribe-Post`` of RFC 8058.
    """
    message = EmailMessage()
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    if unsubscribe_url:
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def mail_domain(sender: str) -> str:
    """The domain of the sender's address (``UPSS <upss@example.org>`` → ``example.org``)."""
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def dkim_sign(data: bytes, key: DkimKey) -> bytes:
    """``data`` with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
    signature = dkim.sign(data, key.selector.encode(), key.domain.encode(), key.private_key,
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=list(DKIM_HEADERS))
    return signature + data


class SmtpSender:
    """Sends over SMTP to ``url``: ``smtp://[user:password@]host[:port]`` (STARTTLS when the
    server offers it) or ``smtps://…`` (TLS from the start). One connection per message."""

    def __init__(self, url: str, dkim_key: DkimKey | None = None,
                 timeout: float = SMTP_TIMEOUT):
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"UPSS_SMTP_URL must be smtp://host:port or smtps://host:port, "
                             f"not {url!r}")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.dkim_key = dkim_key
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        """The TLS settings, made once per sender: loading the system's certificates takes
        ~50 ms, most of a message's cost when made for each (``bench/notifications.py``)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            context = self.tls
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=self.tls)
            smtp.ehlo()
        return smtp

    def send(self, message: EmailMessage) -> None:
        data = message.as_bytes(policy=WIRE_POLICY)
        if self.dkim_key:
            data = dkim_sign(data, self.dkim_key)
        from_address = parseaddr(message["From"])[1]
        to_address = parseaddr(message["To"])[1]
        try:
            smtp = self._connect()
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}", unreachable=True) from exc
        try:
            try:
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.sendmail(from_address, [to_address], data)
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            code, answer = next(iter(exc.recipients.values()))
            raise _failure(code, answer) from exc
        except smtplib.SMTPResponseException as exc:
            raise _failure(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:  # reset, timed out
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


def _failure(code: int, answer) -> SendError:
    text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
    kind = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return kind(f"{code} {text}"[:500])


def sender_for(config) -> SmtpSender:
    """The sender the settings describe (``UPSS_SMTP_URL``, ``UPSS_DKIM_*``)."""
    key = None
    if config["UPSS_DKIM_SELECTOR"] and config["UPSS_DKIM_DOMAIN"] and \
            config["UPSS_DKIM_KEY_FILE"]:
        key = DkimKey(config["UPSS_DKIM_SELECTOR"], config["UPSS_DKIM_DOMAIN"],
                      Path(config["UPSS_DKIM_KEY_FILE"]).read_bytes())
    return SmtpSender(config["UPSS_SMTP_URL"], dkim_key=key)


def uses_local_dev_server(config) -> bool:
    """Outside production, with ``UPSS_SMTP_URL`` on this machine: the development mail
    server of ``make run``, whose messages the development page /dev/mail shows."""
    if config.get("UPSS_ENV") == "production":
        return False
    host = urlsplit(config.get("UPSS_SMTP_URL") or "").hostname
    return host in LOCAL_HOSTS
