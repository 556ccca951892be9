"""The local development mail server's store (``make run``'s ``smtp`` process) and its reader.

The Procfile runs aiosmtpd (a development requirement) with :class:`MailFolder` as handler::

    python -m aiosmtpd -n -l 127.0.0.1:8025 -c upss.devmail.MailFolder instance/devmail

Each message received is written whole to ``<folder>/<time>-<n>.eml``; :func:`received` reads
them back, newest first, for the development page ``/dev/mail`` (``upss/web/mail.py``), which
exists only outside production with ``UPSS_SMTP_URL`` on this machine. This module imports
nothing of aiosmtpd: the handler is a plain class aiosmtpd calls.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path

#: The folder under the instance folder where the development server keeps what it received.
FOLDER_NAME = "devmail"
#: The development page lists at most this many messages.
SHOWN = 50


class MailFolder:
    """An aiosmtpd handler that stores each message as an ``.eml`` file in ``folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.counter = itertools.count(1)

    @classmethod
    def from_cli(cls, parser, *args):
        """``-c upss.devmail.MailFolder [folder]`` on aiosmtpd's command line."""
        return cls(args[0] if args else f"instance/{FOLDER_NAME}")

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        name = f"{time.time_ns()}-{next(self.counter)}.eml"
        temporary = self.folder / f".{name}"
        temporary.write_bytes(envelope.original_content or envelope.content)
        temporary.rename(self.folder / name)
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class ReceivedMail:
    file_name: str
    sender: str
    to: str
    subject: str
    date: str
    text: str
    headers: list[tuple[str, str]]


def received(folder: str | Path, limit: int = SHOWN) -> list[ReceivedMail]:
    """The messages in ``folder``, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.eml"), key=lambda path: path.name, reverse=True)[:limit]
    mails = []
    for path in files:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        body = message.get_body(preferencelist=("plain",))
        mails.append(ReceivedMail(
            file_name=path.name, sender=str(message["From"] or ""), to=str(message["To"] or ""),
            subject=str(message["Subject"] or ""), date=str(message["Date"] or ""),
            text=body.get_content() if body is not None else "",
            headers=[(key, str(value)) for key, value in message.items()]))
    return mails
