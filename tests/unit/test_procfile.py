"""``make run``'s Procfile: every process that runs the app talks to the local Stripe and the
local mail server that the same file starts, on the ports the person chose."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def processes() -> dict[str, tuple[dict[str, str], list[str]]]:
    """Each Procfile process: (its leading VAR=value assignments, the rest of its command)."""
    found = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, command = line.split(":", 1)
        words = shlex.split(command)
        assigned = {}
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            key, value = words.pop(0).split("=", 1)
            assigned[key] = value
        found[name] = (assigned, words)
    return found


def test_every_app_process_uses_the_stripe_and_mail_servers_the_procfile_starts():
    """The web and the scheduler both take the local Stripe's and the mail server's URLs from
    the ports the ``stripe`` and ``smtp`` processes listen on (the scheduler once asked the
    default port, 8420, whatever UPSS_LOCALSTRIPE_PORT said)."""
    found = processes()
    stripe_port = found["stripe"][1][found["stripe"][1].index("--port") + 1]
    smtp_listen = found["smtp"][1][found["smtp"][1].index("-l") + 1]
    app_processes = {name: env for name, (env, words) in found.items()
                     if "--app" in words and "wsgi" in words}
    assert set(app_processes) == {"web", "scheduler"}
    for name, env in app_processes.items():
        assert env.get("UPSS_LOCALSTRIPE_URL") == f"http://127.0.0.1:{stripe_port}", name
        assert env.get("UPSS_SMTP_URL") == f"smtp://{smtp_listen}", name
