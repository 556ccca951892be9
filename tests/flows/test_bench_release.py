"""The release benchmark (``bench/release.py``) still runs: with tiny numbers on a scratch
PostgreSQL database, the free case makes its offers, the busy case none, and every claim round
claims each question once. Nothing here looks at how long anything took."""

from __future__ import annotations

from bench import release as bench


def test_the_bench_offers_when_free_nothing_when_busy_and_claims_once(postgres_url, capsys):
    bench.main(["--queued", "30", "--answerers", "4", "--rounds", "1", "--max-per-run", "3",
                "--claims", "12", "--threads", "2", "--database", "upss_bench_release_smoke"])
    lines = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split()[:2]): line.split() for line in lines
            if line.split()[:1] == ["30"]}
    assert rows[("30", "free")][-2] == "3" and rows[("30", "busy")][-2] == "0"
    assert rows[("30", "busy")][-3] == "2"  # the settings and the answerers with room
    assert any(line.startswith("claims,") and "no question claimed twice" in line
               for line in lines)
