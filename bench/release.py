"""What a release run costs (issue 19): ``release.release_due_questions`` against one SQL
statement choosing the same questions, on PostgreSQL, with free and with busy answerers.

Run ``python -m bench.release [--queued 1000,10000,100000] [--answerers 200] [--rounds 5]
[--max-per-run 5] [--database upss_bench_release]``. The database is dropped, created again
and migrated (``flask db upgrade``); the data is made here with ``INSERT … SELECT
generate_series`` (nothing goes through the services): one asker, ``--answerers`` answerers
(English, open-offer limit 2, daily limit 1000) and, per size, that many queued questions of
random prices paid over the last day.

For each size two cases, each timed ``--rounds`` times, the run and its baseline interleaved
(the order swaps every round), every run rolled back so each round sees the same data:

* **free**: every answerer has room; the run makes ``--max-per-run`` offers.
* **busy**: every answerer holds two offered questions (their open-offer limit); the run makes
  no offer, and the question is only how long it takes to find that out.

The baseline is one statement: the oldest paid queued questions not past their deadline, as
many as the run may offer, if any active answerer is under their open-offer limit (the same
index-counted test the run makes). It chooses the questions but not the answerers, so it is a
lower bound. The table prints min and median milliseconds of each, the ratio of the medians
(the target is ≤ 3), and the statements the run sent. With ``--before REV`` (a git revision,
e.g. ``HEAD``) the release module of that revision is timed too, in the same rounds, as
``before`` (ms, timed once: at 100 000 queued with busy answerers it takes minutes): the run
before it became set-based.

``--claims N`` (0: skipped) adds the claim rate: N questions offered to ``--threads``
answerers, one thread each, claimed through ``questions.claim`` as the claim page calls it
(read the question and the answerer, claim, commit), against the raw rate of the same writes
(``SELECT … FOR UPDATE SKIP LOCKED`` of an offered question, the UPDATE, the event and the
offer's outcome, one commit) on plain psycopg connections, interleaved; every round starts
from the same offers and checks that no question was claimed twice. The target is ≥ 0.5.

Timing is never asserted anywhere; the tests pin the shape instead (the statement count of a
run does not grow with the queue or the busy answerers, ``tests/flows/test_release_sets.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import event, text

from upss import create_app, questions, release
from upss.extensions import db
from upss.models import Question, User

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("UPSS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
NOW = datetime(2026, 3, 4, 23, 0, tzinfo=UTC)

BASELINE = text("""
SELECT q.id FROM question q
WHERE q.status = 'queued' AND q.deadline_at > :now
  AND EXISTS (
    SELECT 1 FROM "user" u JOIN answerer_profile p ON p.user_id = u.id
    WHERE u.is_answerer AND p.active
      AND (SELECT count(*) FROM question o
           WHERE o.answerer_id = u.id AND o.status IN ('offered', 'claimed'))
          < p.open_offer_limit)
ORDER BY q.paid_at, q.id
LIMIT :n
""")


def sqlalchemy_url(database: str) -> str:
    return ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + database


def recreate_and_migrate(database: str) -> None:
    with psycopg.connect(ADMIN_URL + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    env = dict(os.environ, UPSS_DATABASE_URL=sqlalchemy_url(database), FLASK_APP="wsgi")
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_app(database: str, connections: int = 5):
    return create_app({
        "TESTING": True, "UPSS_ENV": "test", "SECRET_KEY": "bench-secret",
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(database),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": connections, "max_overflow": 0},
        "RATELIMIT_ENABLED": False,
        "UPSS_LOCALSTRIPE_URL": "http://127.0.0.1:9", "UPSS_USES_LOCALSTRIPE": True,
        "UPSS_STRIPE_SECRET_KEY": "sk_test_upss_localstripe",
        "UPSS_STRIPE_PUBLISHABLE_KEY": "pk_test_upss_localstripe",
        "UPSS_STRIPE_WEBHOOK_SECRET": "whsec_bench_secret",
        "UPSS_STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_bench_connect_secret",
    })


def add_people(answerers: int) -> int:
    """One asker and ``answerers`` answerers; returns the asker's id."""
    asker = db.session.execute(text(
        """INSERT INTO "user" (email, name, password_hash, is_answerer, is_organizer, locale,
                               large_text, high_contrast, digest_hour, created_at)
           VALUES ('asker@bench.example', 'Asker', '!', false, false, '', false, false, 8, :now)
           RETURNING id"""), {"now": NOW}).scalar_one()
    db.session.execute(text(
        """INSERT INTO "user" (email, name, password_hash, is_answerer, is_organizer, locale,
                               large_text, high_contrast, digest_hour, created_at)
           SELECT 'answerer' || n || '@bench.example', 'Answerer ' || n, '!', true, false, '',
                  false, false, 8, :now
           FROM generate_series(1, :count) n"""), {"now": NOW, "count": answerers})
    db.session.execute(text(
        """INSERT INTO answerer_profile (user_id, languages, available_from_minute,
               available_until_minute, timezone, daily_limit, open_offer_limit, active, topics,
               payout_method, connect_details_submitted, connect_payouts_enabled,
               connect_requirements, payout_failures, messages_outside_hours)
           SELECT id, 'en', 0, 1440, 'Europe/Oslo', 1000, 2, true, '', 'sepa', false, false, '',
                  0, false
           FROM "user" WHERE is_answerer"""))
    db.session.commit()
    return asker


def fill_queue(asker: int, queued: int) -> None:
    """Empty the questions, then ``queued`` paid questions waiting in the queue."""
    db.session.execute(text("TRUNCATE question, offer, question_event, notification CASCADE"))
    db.session.execute(text(
        """INSERT INTO question (asker_id, title, body, language, topic, price_cents, currency,
               status, payment_attempts, payment_checks, created_at, paid_at, commission_bps,
               deadline_at, refunded_cents)
           SELECT :asker, 'Question ' || n, 'Body', 'en', 'other',
                  (ARRAY[300, 500, 1000, 2000, 5000, 10000])[1 + n % 6], 'EUR', 'queued', 1, 0,
                  :now - interval '1 day', :now - interval '1 day' + n * interval '1 ms', 1000,
                  :now + interval '2 days', 0
           FROM generate_series(1, :count) n"""), {"asker": asker, "now": NOW, "count": queued})
    db.session.commit()
    db.session.execute(text("ANALYZE"))


def make_everyone_busy(asker: int) -> None:
    """Each answerer holds two offered questions: their open-offer limit."""
    db.session.execute(text(
        """INSERT INTO question (asker_id, title, body, language, topic, price_cents, currency,
               status, payment_attempts, payment_checks, created_at, paid_at, commission_bps,
               deadline_at, refunded_cents, answerer_id, offer_expires_at)
           SELECT :asker, 'Held', 'Body', 'en', 'other', 1000, 'EUR', 'offered', 1, 0,
                  :now - interval '2 days', :now - interval '2 days', 1000,
                  :now + interval '1 day', 0, u.id, :now + interval '12 hours'
           FROM "user" u CROSS JOIN generate_series(1, 2)
           WHERE u.is_answerer"""), {"asker": asker, "now": NOW})
    db.session.commit()
    db.session.execute(text("ANALYZE"))


def time_once(action) -> tuple[float, int, int]:
    """Milliseconds, statements sent and what ``action`` returned (its length), rolled back."""
    sent = []

    def count(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        result = action()
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        db.session.rollback()
        db.session.expunge_all()
    return elapsed, len(sent), len(result)


def release_module_at(revision: str) -> types.ModuleType:
    """``upss/release.py`` as it was at git ``revision``, loaded as a module of ``upss``."""
    source = subprocess.run(["git", "show", f"{revision}:upss/release.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("upss.release_before")
    module.__package__ = "upss"
    sys.modules[module.__name__] = module  # its dataclasses look themselves up there
    exec(compile(source, f"{revision}:upss/release.py", "exec"), module.__dict__)
    return module


def measure(rounds: int, max_per_run: int, before: types.ModuleType | None) -> dict:
    def run():
        return release.release_due_questions(db.session, NOW, ignore_window=True)

    def baseline():
        return db.session.execute(BASELINE, {"now": NOW, "n": max_per_run}).all()

    def run_before():
        return before.release_due_questions(db.session, NOW, ignore_window=True)

    timed = [("run", run), ("base", baseline)]
    for _, action in timed:
        time_once(action)  # warm caches and the connection
    results: dict[str, list] = {"run": [], "base": [], "before": []}
    for n in range(rounds):
        # The old run takes minutes on a long queue: once, in the first round.
        now_timed = timed + ([("before", run_before)] if before and n == 0 else [])
        for name, action in (now_timed if n % 2 == 0 else reversed(now_timed)):
            results[name].append(time_once(action))
    run_ms = [ms for ms, _, _ in results["run"]]
    base_ms = [ms for ms, _, _ in results["base"]]
    return {"run_min": min(run_ms), "run_median": statistics.median(run_ms),
            "base_min": min(base_ms), "base_median": statistics.median(base_ms),
            "ratio": statistics.median(run_ms) / statistics.median(base_ms),
            "before": results["before"][0][0] if before else None,
            "statements": results["run"][-1][1], "offers": results["run"][-1][2]}


CLAIM_NOW = NOW + timedelta(minutes=1)


def offer_for_claims(asker: int, count: int, threads: int) -> dict[int, list[int]]:
    """``count`` questions offered round-robin to the first ``threads`` answerers (with open
    offers, as the release would leave them); answerer id -> their question ids."""
    db.session.execute(text("TRUNCATE question, offer, question_event, notification CASCADE"))
    db.session.execute(text("UPDATE answerer_profile SET open_offer_limit = 1000000"))
    answerers = db.session.execute(text(
        'SELECT id FROM "user" WHERE is_answerer ORDER BY id LIMIT :n'), {"n": threads}
    ).scalars().all()
    db.session.execute(text(
        """INSERT INTO question (asker_id, title, body, language, topic, price_cents, currency,
               status, payment_attempts, payment_checks, created_at, paid_at, commission_bps,
               deadline_at, refunded_cents, answerer_id, offer_expires_at)
           SELECT :asker, 'Claim ' || n, 'Body', 'en', 'other', 1000, 'EUR', 'offered', 1, 0,
                  :now, :now, 1000, :now + interval '3 days', 0,
                  (CAST(:answerers AS integer[]))[1 + n % :threads], :now + interval '12 hours'
           FROM generate_series(0, :count - 1) n"""),
        {"asker": asker, "now": NOW, "answerers": list(answerers), "threads": threads,
         "count": count})
    db.session.execute(text(
        """INSERT INTO offer (question_id, answerer_id, offered_at, expires_at, outcome)
           SELECT id, answerer_id, :now, offer_expires_at, 'open' FROM question
           WHERE status = 'offered'"""), {"now": NOW})
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    mine: dict[int, list[int]] = {a: [] for a in answerers}
    for q_id, a_id in db.session.execute(text(
            "SELECT id, answerer_id FROM question WHERE status = 'offered' ORDER BY id")):
        mine[a_id].append(q_id)
    return mine


def reset_offers() -> None:
    db.session.execute(text(
        """UPDATE question SET status = 'offered', lock_expires_at = NULL,
               offer_expires_at = :now + interval '12 hours' WHERE title LIKE 'Claim %'"""),
        {"now": NOW})
    db.session.execute(text("UPDATE offer SET outcome = 'open', resolved_at = NULL"))
    db.session.execute(text("DELETE FROM question_event"))
    db.session.commit()


def check_claimed_once(count: int) -> None:
    claimed, events = db.session.execute(text(
        """SELECT (SELECT count(*) FROM question WHERE status = 'claimed'),
                  (SELECT count(*) FROM question_event WHERE action = 'claim')""")).one()
    doubled = db.session.execute(text(
        """SELECT count(*) FROM (SELECT question_id FROM question_event
           WHERE action = 'claim' GROUP BY question_id HAVING count(*) > 1) d""")).scalar_one()
    db.session.rollback()
    assert (claimed, events, doubled) == (count, count, 0), (claimed, events, doubled)


def in_threads(work: dict[int, list[int]], claim_one) -> float:
    """Seconds for every thread to claim its questions with ``claim_one(answerer, question)``."""
    barrier = threading.Barrier(len(work) + 1)

    def run(answerer: int, ids: list[int]):
        barrier.wait()
        for question_id in ids:
            claim_one(answerer, question_id)

    threads = [threading.Thread(target=run, args=item) for item in work.items()]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def claims_rate(app, database: str, asker: int, count: int, threads: int, rounds: int) -> dict:
    work = offer_for_claims(asker, count, threads)

    def service(answerer: int, question_id: int) -> None:
        with app.app_context():
            question = db.session.get(Question, question_id)
            questions.claim(db.session, question, db.session.get(User, answerer), CLAIM_NOW)
            db.session.commit()
            db.session.remove()

    local = threading.local()

    def raw(answerer: int, question_id: int) -> None:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(ADMIN_URL + "/" + database)
        with local.conn.transaction():
            row = local.conn.execute(
                """SELECT id, price_cents FROM question WHERE answerer_id = %s
                   AND status = 'offered' AND offer_expires_at > %s
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED""", (answerer, CLAIM_NOW)
            ).fetchone()
            local.conn.execute(
                """UPDATE question SET status = 'claimed', lock_expires_at = %s,
                   offer_expires_at = NULL WHERE id = %s""",
                (CLAIM_NOW + timedelta(hours=4), row[0]))
            local.conn.execute(
                """INSERT INTO question_event (question_id, actor_id, actor_kind, action,
                   from_status, to_status, at, note)
                   VALUES (%s, %s, 'user', 'claim', 'offered', 'claimed', %s, '')""",
                (row[0], answerer, CLAIM_NOW))
            local.conn.execute(
                """UPDATE offer SET outcome = 'claimed', resolved_at = %s
                   WHERE question_id = %s AND answerer_id = %s AND outcome = 'open'""",
                (CLAIM_NOW, row[0], answerer))

    rates = {"service": [], "raw": []}
    for n in range(rounds):
        pair = [("service", service), ("raw", raw)]
        for name, claim_one in (pair if n % 2 == 0 else reversed(pair)):
            reset_offers()
            seconds = in_threads(work, claim_one)
            check_claimed_once(count)
            rates[name].append(count / seconds)
    service_rates, raw_rates = rates["service"], rates["raw"]
    return {"service": statistics.median(service_rates), "raw": statistics.median(raw_rates),
            "ratio": statistics.median(service_rates) / statistics.median(raw_rates)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="1000,10000,100000",
                        help="comma-separated queue lengths")
    parser.add_argument("--answerers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-per-run", type=int, default=5)
    parser.add_argument("--database", default="upss_bench_release")
    parser.add_argument("--claims", type=int, default=2000,
                        help="questions claimed per round (0: skip the claim rate)")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--before", help="also time upss/release.py of this git revision")
    args = parser.parse_args(argv)
    recreate_and_migrate(args.database)
    app = make_app(args.database, connections=args.threads + 2)
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = args.max_per_run
    print(f"release run vs one statement, PostgreSQL, {args.answerers} answerers, "
          f"{args.rounds} rounds, max {args.max_per_run} offers per run (ms)")
    before = release_module_at(args.before) if args.before else None
    print(f"{'queued':>8} {'case':<5} {'run min':>8} {'run med':>8} {'base min':>8} "
          f"{'base med':>8} {'ratio':>6} {'stmts':>5} {'offers':>6} {'before':>8}")
    with app.app_context():
        asker = add_people(args.answerers)
        for queued in (int(n) for n in args.queued.split(",")):
            fill_queue(asker, queued)
            for case in ("free", "busy"):
                if case == "busy":
                    make_everyone_busy(asker)
                r = measure(args.rounds, args.max_per_run, before)
                was = f"{r['before']:>8.1f}" if before else f"{'-':>8}"
                print(f"{queued:>8} {case:<5} {r['run_min']:>8.1f} {r['run_median']:>8.1f} "
                      f"{r['base_min']:>8.1f} {r['base_median']:>8.1f} {r['ratio']:>6.2f} "
                      f"{r['statements']:>5} {r['offers']:>6} {was}", flush=True)
        if args.claims:
            c = claims_rate(app, args.database, asker, args.claims, args.threads, args.rounds)
            print(f"claims, {args.threads} threads, {args.claims} per round: "
                  f"questions.claim {c['service']:.0f}/s, raw SKIP LOCKED {c['raw']:.0f}/s, "
                  f"ratio {c['ratio']:.2f} (no question claimed twice)")


if __name__ == "__main__":
    main()
