"""The README opens with the two commands, .ci/run calls the test one, and `make run` works
in a fresh clone: it serves the home page, and a demo asker can ask and pay."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < 60, "README must open with its commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_run_and_test_and_ci_runs_the_test_command():
    assert readme_commands() == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if line and not line.startswith(("#", "set ", "cd "))] == [
        "make test"]


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git repository")
def test_run_command_in_a_fresh_clone_serves_ask_and_pay(tmp_path):
    """`make run` in a fresh clone: installs, migrates, seeds, serves; a demo asker pays."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    web_port, stripe_port, mail_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UPSS_", "FLASK_", "VIRTUAL_ENV", "PYTEST"))}
    env.update(UPSS_PORT=str(web_port), UPSS_LOCALSTRIPE_PORT=str(stripe_port),
               UPSS_DEVMAIL_PORT=str(mail_port),
               PYTHON=sys.executable, PATH=os.defpath + ":" + os.environ.get("PATH", ""))
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    command = readme_commands()[0].split()
    proc = subprocess.Popen(command, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{web_port}"
    try:
        def home():
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                return requests.get(base + "/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(home, timeout=600, interval=1)
        output = (tmp_path / "run.log").read_text()
        assert "sign in as asker@example.org with password asker-demo-pass" in output

        web = requests.Session()
        page = web.get(base + "/sign-in").text
        assert web.post(base + "/sign-in", data={
            "csrf_token": csrf(page), "email": "asker@example.org",
            "password": "asker-demo-pass"}).status_code == 200
        page = web.get(base + "/ask").text
        response = web.post(base + "/ask", data={
            "csrf_token": csrf(page), "title": "Fresh clone question", "body": "Does it work?",
            "language": "en", "topic": "other", "price": "7"})
        pay_url = response.url
        assert pay_url.endswith("/pay"), response.text[:500]
        page = web.get(pay_url).text
        paid = web.post(pay_url + "/test", data={"csrf_token": csrf(page), "scenario": "succeeds"})
        status_url = pay_url.removesuffix("/pay") + "/status.json"
        # The webhook queues it, usually within a second. On a loaded machine each of devstripe's
        # six attempts may run into its 5 s timeout: the last starts about 46 s after paying.
        try:
            wait_until(lambda: web.get(status_url).json()["status"] == "queued", timeout=60)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; paying answered {paid.status_code} at {paid.url}; the run's log ends:\n"
                + (tmp_path / "run.log").read_text()[-6000:]) from None
        if 8420 not in (web_port, stripe_port, mail_port):  # no process asks the default port
            assert "127.0.0.1:8420" not in (tmp_path / "run.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
