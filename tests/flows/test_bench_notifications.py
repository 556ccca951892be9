"""The notifications benchmark (``bench/notifications.py``) still runs: with tiny numbers on
SQLite, every message of part (a) reaches its SMTP server exactly once, the baseline sends as
many, only the requests with the outbox write an ``answer_ready`` row, and the table has its
ratio lines. Nothing here looks at how long anything took."""

from __future__ import annotations

from bench import notifications as bench


def test_the_bench_sends_every_message_once_and_prints_its_ratios(capsys):
    result = bench.main(["--messages", "5", "--requests", "3"])
    output = capsys.readouterr().out

    sending = result.sending
    assert len(sending.expected) == 5
    assert sending.received == {message_id: 1 for message_id in sending.expected}
    assert sending.plain_received == 5

    timed = result.requests
    assert len(timed.with_ms) == len(timed.without_ms) == 3
    assert timed.with_rows == [1, 1, 1]
    assert timed.without_rows == [0, 0, 0]

    assert result.database == "sqlite"
    lines = output.splitlines()
    for name in ("ratio outbox / plain smtplib", "ratio with / without outbox row"):
        line = next(line for line in lines if line.startswith(name))
        assert float(line.split()[-1]) > 0
