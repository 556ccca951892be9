"""Data for the scale benchmarks (issue 19): a PostgreSQL database of N questions with a
realistic mix of states, users, answerers, tips, payouts and a ledger whose hash chain verifies.

Run ``python -m bench.generate --questions 1000 [--database upss_bench_1k] [--regenerate]``.
The database is dropped and created again, migrated with ``flask db upgrade`` (the app's own
migrations, so the schema is the code's), and filled with PostgreSQL ``COPY``. Nothing goes
through the services: at 100 000 questions that would take hours. Instead the generator
writes what the services would have written:

* users: one organizer, an asker per ten questions, an answerer per hundred (at least five),
  all with the password ``PASSWORD``; asker 1 and answerer 1 (the ones the benchmark signs in
  as) own 1 % of the questions and of the answers, so their own pages grow with the data;
* questions over the last year in every state (mostly closed, a few percent open, refunded,
  disputed, drafts), each with its ``question_event`` history and its offers;
* the ledger postings of ``upss.questions``, ``upss.stripe_money``, ``upss.payments`` and
  ``upss.payouts``/``upss.sepa`` for each of them: the payment (stripe_balance → escrow),
  Stripe's fee, the split when accepted (escrow → payable + commission), the refund, tips,
  the weekly payouts of what answerers earned at least 14 days before (SEPA or Connect), the
  SEPA files settled by the bank, and the organizer's weekly Stripe payouts to the bank.
  Every transaction balances, every cached balance is the sum of its entries, and the hash
  chain is made by the ledger's own function (``ledger.hash_for``; at a commit before chain
  v2, ``ledger._chain_hash`` of ``ledger._content``), so ``flask upss verify-ledger`` passes.

The database's comment records what was generated (JSON), so ``bench.run`` reuses a database
that matches the size and the migrations' head instead of generating it again.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from upss import ledger, money

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("UPSS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
PASSWORD = "correct horse 9"
ORGANIZER_EMAIL = "bench-organizer@example.org"
CURRENCY = "EUR"
COMMISSION_BPS = 1000
PRICES = (300, 500, 800, 1000, 1500, 2000, 3000, 5000, 8000)
TOPICS = ("everyday", "health", "home", "money", "technology", "language", "law", "other")
#: Question states and their share of the questions.
STATE_MIX = (
    ("closed", 0.78), ("refunded", 0.06), ("disputed", 0.005), ("answered", 0.03),
    ("clarifying", 0.005), ("claimed", 0.015), ("offered", 0.015), ("queued", 0.02),
    ("awaiting_payment", 0.02), ("draft", 0.04),
)
OPEN_STATES = {"answered", "clarifying", "claimed", "offered", "queued", "awaiting_payment",
               "draft", "disputed"}
IBAN = "NO9386011117947"


def sqlalchemy_url(database: str) -> str:
    return ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + database


def psycopg_url(database: str) -> str:
    return ADMIN_URL + "/" + database


# --- what is stored where ----------------------------------------------------------------------

def migrations_head() -> str:
    """The newest revision of ``migrations/versions`` (what ``flask db upgrade`` reaches)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def stored_info(database: str) -> dict | None:
    """What the database's comment says was generated into it, or None (missing, or not ours)."""
    with psycopg.connect(psycopg_url("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (database,)).fetchone()
    if not row or not row[0]:
        return None
    try:
        return json.loads(row[0])
    except ValueError:
        return None


def usable(database: str, questions: int) -> dict | None:
    """The stored info when ``database`` holds ``questions`` questions at the migrations' head
    (so it can be reused), else None."""
    info = stored_info(database)
    if info and info.get("questions") == questions and info.get("head") == migrations_head():
        return info
    return None


def recreate(database: str) -> None:
    with psycopg.connect(psycopg_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def migrate(database: str) -> None:
    """``flask db upgrade`` with ``UPSS_DATABASE_URL`` naming ``database``."""
    env = dict(os.environ, UPSS_DATABASE_URL=sqlalchemy_url(database), FLASK_APP="wsgi")
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


# --- COPY --------------------------------------------------------------------------------------

def _cell(value) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    return (str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


class Table:
    """Rows of one table, written with one COPY."""

    def __init__(self, name: str, columns: tuple[str, ...]):
        self.name, self.columns = name, columns
        self.lines: list[str] = []

    def add(self, *values) -> None:
        self.lines.append("\t".join(map(_cell, values)))

    def copy(self, conn: psycopg.Connection) -> int:
        cols = ", ".join(f'"{c}"' for c in self.columns)
        with conn.cursor() as cur, cur.copy(f'COPY "{self.name}" ({cols}) FROM STDIN') as copy:
            for start in range(0, len(self.lines), 20_000):
                copy.write("\n".join(self.lines[start:start + 20_000]) + "\n")
        return len(self.lines)


# --- the ledger --------------------------------------------------------------------------------

def hashing(conn: psycopg.Connection):
    """``(hash function, version or None)``: the ledger's own hashing of the code checked out,
    and the ``hash_version`` to store (None where the column does not exist yet)."""
    has_column = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'ledger_transaction' "
        "AND column_name = 'hash_version'").fetchone() is not None
    if has_column and hasattr(ledger, "hash_for"):
        version = ledger.CURRENT_HASH_VERSION

        def chain(prev, key, description, currency, reverses_id, entries, created_at):
            return ledger.hash_for(prev, key, description, currency, reverses_id, entries,
                                   created_at, version, hmac_key=None)
        return chain, version

    def chain_v1(prev, key, description, currency, reverses_id, entries, created_at):
        return ledger._chain_hash(prev, ledger._content(key, description, currency,
                                                        reverses_id, entries))
    return chain_v1, (1 if has_column else None)


@dataclass(order=True)
class Posting:
    at: datetime
    seq: int
    key: str = field(compare=False)
    description: str = field(compare=False)
    entries: list = field(compare=False)
    #: Called when the posting is applied (payout bookkeeping), or None.
    kind: str = field(compare=False, default="")
    data: dict = field(compare=False, default_factory=dict)


# --- the generator -----------------------------------------------------------------------------

@dataclass
class Generated:
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0


def generate(database: str, questions: int, seed: int = 1, *, quiet: bool = False) -> dict:
    """Drop and create ``database``, migrate it and fill it with ``questions`` questions.
    Returns the info stored as the database's comment (counts, users to sign in as)."""
    started = time.perf_counter()
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    recreate(database)
    migrate(database)
    say(f"[generate] {database}: migrated in {time.perf_counter() - started:.1f}s")

    from werkzeug.security import generate_password_hash
    password_hash = generate_password_hash(PASSWORD)

    n_askers = max(2, questions // 10)
    n_answerers = max(5, questions // 100)
    users = Table("user", ("id", "email", "name", "password_hash", "is_answerer",
                           "is_organizer", "locale", "created_at", "email_confirmed_at"))
    profiles = Table("answerer_profile", (
        "user_id", "languages", "available_from_minute", "available_until_minute", "timezone",
        "daily_limit", "open_offer_limit", "active", "topics", "payout_method", "iban",
        "account_holder", "stripe_account_id", "connect_details_submitted",
        "connect_payouts_enabled"))
    year_ago = now - timedelta(days=365)
    users.add(1, ORGANIZER_EMAIL, "Bench Organizer", password_hash, False, True, "", year_ago,
              year_ago)
    asker_ids = list(range(2, 2 + n_askers))
    answerer_ids = list(range(2 + n_askers, 2 + n_askers + n_answerers))
    for n, uid in enumerate(asker_ids, 1):
        users.add(uid, f"bench-asker{n}@example.org", f"Asker {n}", password_hash, False,
                  False, rng.choice(("", "nb", "en")), year_ago, year_ago)
    connect = set()
    for n, uid in enumerate(answerer_ids, 1):
        users.add(uid, f"bench-answerer{n}@example.org", f"Answerer {n}", password_hash, True,
                  False, "nb", year_ago, year_ago)
        by_connect = n % 5 == 0
        if by_connect:
            connect.add(uid)
        profiles.add(uid, "nb,en" if n % 7 else "sv,en", 0, 1440, "Europe/Oslo", 5, 2, True, "",
                     "connect" if by_connect else "sepa", None if by_connect else IBAN,
                     None if by_connect else f"Answerer {n}",
                     f"acct_bench{uid}" if by_connect else None, by_connect, by_connect)

    # Questions: 1 % to asker 1 and (of the answered ones) to answerer 1.
    heavy_asker, heavy_answerer = asker_ids[0], answerer_ids[0]
    states = rng.choices([s for s, _ in STATE_MIX], [w for _, w in STATE_MIX], k=questions)
    created = []
    for state in states:
        if state in OPEN_STATES and state != "disputed":
            created.append(now - timedelta(seconds=rng.randint(600, 40 * 3600)))
        else:
            created.append(year_ago + timedelta(seconds=rng.randint(0, 360 * 86400)))
    order = sorted(range(questions), key=lambda i: created[i])

    question = Table("question", (
        "id", "asker_id", "title", "body", "language", "topic", "price_cents", "currency",
        "status", "payment_intent_id", "payment_attempts", "created_at", "paid_at",
        "commission_bps", "deadline_at", "answerer_id", "offer_expires_at", "lock_expires_at",
        "answer_body", "answered_at", "closed_at", "dispute_reason", "stripe_refund_id",
        "rating", "payment_started_at", "refund_status", "refund_requested_at",
        "refunded_cents"))
    events = Table("question_event", ("question_id", "actor_id", "actor_kind", "action",
                                      "from_status", "to_status", "at", "note"))
    offers = Table("offer", ("question_id", "answerer_id", "offered_at", "expires_at",
                             "outcome", "resolved_at"))
    tips = Table("tip", ("id", "question_id", "answerer_id", "amount_cents", "currency",
                         "payment_intent_id", "status", "created_at", "paid_at"))
    postings: list[Posting] = []
    seq = 0

    def post(at, key, description, entries, kind="", **data):
        nonlocal seq
        seq += 1
        postings.append(Posting(at, seq, key, description, entries, kind, data))

    open_offers = defaultdict(int)
    tip_id = 0
    for qid, i in enumerate(order, 1):
        state, at = states[i], created[i]
        asker = heavy_asker if rng.random() < 0.01 else rng.choice(asker_ids)
        price = rng.choice(PRICES)
        language = rng.choice(("nb", "nb", "en"))
        answerer = None
        if state in ("offered", "claimed", "answered", "clarifying", "closed", "disputed") or (
                state == "refunded" and rng.random() < 0.2):
            pool = [a for a in answerer_ids if open_offers[a] < 2] if state == "offered" else (
                answerer_ids)
            answerer = heavy_answerer if rng.random() < 0.01 and (
                state != "offered" or open_offers[heavy_answerer] < 2) else rng.choice(pool)
            if state == "offered":
                open_offers[answerer] += 1
        paid = state not in ("draft", "awaiting_payment")
        row = dict.fromkeys(question.columns)
        row.update(id=qid, asker_id=asker, title=f"Question {qid} about {rng.choice(TOPICS)}",
                   body="How do I do this? I have tried several things and would like help.",
                   language=language, topic=rng.choice(TOPICS), price_cents=price,
                   currency=CURRENCY, status=state, payment_attempts=0, created_at=at,
                   refunded_cents=0)
        ev = []  # (action, from, to, actor, kind, at)
        t = at
        if state != "draft":
            t += timedelta(minutes=2)
            row.update(payment_intent_id=f"pi_bench{qid}", payment_attempts=1,
                       payment_started_at=t)
            ev.append(("start_payment", "draft", "awaiting_payment", asker, "user", t))
        if paid:
            t += timedelta(seconds=30)
            row.update(paid_at=t, commission_bps=COMMISSION_BPS,
                       deadline_at=t + timedelta(hours=72))
            ev.append(("confirm_payment", "awaiting_payment", "queued", None, "stripe", t))
            post(t, f"payment:pi_bench{qid}", f"Payment for question {qid}",
                 [(ledger.STRIPE_BALANCE, price), (ledger.escrow_account(qid), -price)])
            fee = price * 14 // 1000 + 25
            post(t + timedelta(minutes=1), f"fee:txn_bench{qid}", f"Stripe fee on ch_bench{qid}",
                 [(ledger.STRIPE_FEES, fee), (ledger.STRIPE_BALANCE, -fee)])
        if answerer is not None:
            t += timedelta(hours=rng.randint(1, 12))
            # A refunded question that had an answerer: their lock ran out first (below).
            outcome = ("open" if state == "offered" else
                       "lapsed" if state == "refunded" else "claimed")
            offers.add(qid, answerer, t, t + timedelta(hours=12), outcome,
                       None if outcome == "open" else t + timedelta(minutes=20))
            ev.append(("offer", "queued", "offered", None, "scheduler", t))
            row.update(answerer_id=answerer)
            if state == "offered":
                row.update(offer_expires_at=max(t + timedelta(hours=12),
                                                now + timedelta(hours=1)))
            else:
                t += timedelta(minutes=20)
                ev.append(("claim", "offered", "claimed", answerer, "user", t))
                if state == "claimed":
                    row.update(lock_expires_at=max(t + timedelta(hours=4),
                                                   now + timedelta(hours=1)))
                elif state != "refunded":
                    t += timedelta(hours=1)
                    row.update(answer_body="Open the settings, choose Display, then Larger text.",
                               answered_at=t)
                    ev.append(("post_answer", "claimed", "answered", answerer, "user", t))
        if state == "clarifying":
            ev.append(("ask_clarification", "answered", "clarifying", asker, "user",
                       t + timedelta(hours=1)))
        elif state == "disputed":
            row.update(dispute_reason="The answer does not fit my phone.")
            ev.append(("reject", "answered", "disputed", asker, "user", t + timedelta(hours=2)))
        elif state == "closed":
            auto = rng.random() < 0.3
            t += timedelta(days=3) if auto else timedelta(hours=rng.randint(1, 48))
            row.update(closed_at=t, rating=None if auto else rng.randint(3, 5))
            ev.append(("auto_accept" if auto else "accept", "answered", "closed",
                       None if auto else asker, "scheduler" if auto else "user", t))
            payout, commission = money.split(price, COMMISSION_BPS)
            post(t, f"settle:question:{qid}", f"Answer to question {qid} accepted",
                 [(n, a) for n, a in ((ledger.escrow_account(qid), price),
                                      (ledger.payable_account(answerer), -payout),
                                      (ledger.COMMISSION, -commission)) if a],
                 "credit", answerer=answerer, cents=payout)
            if rng.random() < 0.08:
                tip_id += 1
                amount = rng.choice((200, 500, 1000))
                paid_tip = t + timedelta(hours=1)
                tips.add(tip_id, qid, answerer, amount, CURRENCY, f"pi_bench_tip{tip_id}",
                         "paid", t, paid_tip)
                post(paid_tip, f"payment:pi_bench_tip{tip_id}", f"Tip {tip_id} for question {qid}",
                     [(ledger.STRIPE_BALANCE, amount), (ledger.payable_account(answerer), -amount)],
                     "credit", answerer=answerer, cents=amount)
                fee = amount * 14 // 1000 + 25
                post(paid_tip + timedelta(minutes=1), f"fee:txn_bench_tip{tip_id}",
                     f"Stripe fee on ch_bench_tip{tip_id}",
                     [(ledger.STRIPE_FEES, fee), (ledger.STRIPE_BALANCE, -fee)])
        elif state == "refunded":
            t = row["deadline_at"]
            how = "refund_at_deadline" if answerer is None else "expire_lock"
            if how == "expire_lock":
                ev.append(("expire_lock", "claimed", "queued", None, "scheduler",
                           t - timedelta(hours=1)))
                row.update(answerer_id=None)
            ev.append(("refund_at_deadline", "queued", "refunded", None, "scheduler", t))
            row.update(closed_at=t, refund_status="sent", stripe_refund_id=f"re_bench{qid}",
                       refund_requested_at=t, refunded_cents=price)
            post(t + timedelta(minutes=1), f"refund:re_bench{qid}", f"Refund of question {qid}",
                 [(ledger.escrow_account(qid), price), (ledger.STRIPE_BALANCE, -price)])
        question.add(*(row[c] for c in question.columns))
        for action, from_status, to_status, actor, kind, moment in ev:
            events.add(qid, actor, kind, action, from_status, to_status, moment, "")
    say(f"[generate] {questions} questions built in {time.perf_counter() - started:.1f}s")

    # Weekly payouts (Monday 06:00 UTC) and the organizer's Stripe payouts, in time order.
    batches = Table("payout_batch", ("id", "created_at", "currency", "sepa_xml",
                                     "sepa_marked_sent_at", "sepa_settled_at",
                                     "sepa_marked_sent_by_id", "sepa_settled_by_id"))
    payouts = Table("payout", ("id", "batch_id", "answerer_id", "amount_cents", "currency",
                               "method", "status", "stripe_transfer_id", "iban",
                               "created_at", "idempotency_key", "attempts", "last_attempt_at"))
    heap = list(postings)
    heapq.heapify(heap)
    week = year_ago + timedelta(days=(7 - year_ago.weekday()) % 7)
    week = week.replace(hour=6, minute=0, second=0)
    while week < now:
        seq += 1
        heapq.heappush(heap, Posting(week, seq, "", "", [], "week"))
        week += timedelta(days=7)

    chain, version = None, None
    accounts: dict[str, list] = {}  # name -> [id, type, balance]
    tx_rows = Table("ledger_transaction", ("id", "idempotency_key", "description",
                                           "created_at", "prev_hash", "hash"))
    entry_rows = Table("ledger_entry", ("transaction_id", "account_id", "amount_cents",
                                        "currency"))
    recent = defaultdict(deque)  # answerer -> credits (at, cents) of the last 14 days
    recent_sum = defaultdict(int)
    batch_id = payout_id = 0
    conn = psycopg.connect(psycopg_url(database))
    chain, version = hashing(conn)
    if version is not None:
        tx_rows.columns += ("hash_version",)
    prev = ledger.GENESIS_HASH
    tx_id = 0

    def account(name):
        found = accounts.get(name)
        if found is None:
            found = accounts[name] = [len(accounts) + 1, ledger.account_type(name), 0]
        return found

    while heap:
        p = heapq.heappop(heap)
        if p.kind == "week":
            batch_id += 1
            cutoff = p.at - timedelta(days=14)
            sepa_total = 0
            made = False
            for answerer in answerer_ids:
                credits = recent[answerer]
                while credits and credits[0][0] <= cutoff:
                    recent_sum[answerer] -= credits.popleft()[1]
                owed = -accounts.get(ledger.payable_account(answerer), [0, "", 0])[2]
                eligible = owed - recent_sum[answerer]
                if eligible < 1000:
                    continue
                made = True
                payout_id += 1
                by_connect = answerer in connect
                method = "connect" if by_connect else "sepa"
                payouts.add(payout_id, batch_id, answerer, eligible, CURRENCY, method, "sent",
                            f"tr_bench{payout_id}" if by_connect else None,
                            None if by_connect else IBAN, p.at,
                            f"bench-payout-{payout_id}" if by_connect else None,
                            1 if by_connect else 0, p.at if by_connect else None)
                seq += 1
                heapq.heappush(heap, Posting(
                    p.at, seq, f"payout:{payout_id}",
                    f"Payout {payout_id} to answerer {answerer} ({method})",
                    [(ledger.payable_account(answerer), eligible),
                     (ledger.STRIPE_BALANCE if by_connect else ledger.BANK_CLEARING,
                      -eligible)]))
                if not by_connect:
                    sepa_total += eligible
            if made:
                settled = p.at + timedelta(days=2) if sepa_total else None
                batches.add(batch_id, p.at, CURRENCY,
                            "<Document/>" if sepa_total else None,
                            p.at + timedelta(hours=1) if sepa_total else None, settled,
                            1 if sepa_total else None, 1 if sepa_total else None)
                if sepa_total:
                    seq += 1
                    heapq.heappush(heap, Posting(
                        settled, seq, f"sepa-settled:batch:{batch_id}",
                        f"SEPA file of batch {batch_id} paid by the bank",
                        [(ledger.BANK_CLEARING, sepa_total), (ledger.BANK, -sepa_total)]))
            else:
                batch_id -= 1
            balance = accounts.get(ledger.STRIPE_BALANCE, [0, "", 0])[2]
            amount = balance * 6 // 10
            if amount > 0:
                key = f"stripe-payout:po_bench{p.seq}"
                seq += 1
                heapq.heappush(heap, Posting(
                    p.at + timedelta(minutes=5), seq, key, f"Stripe payout po_bench{p.seq} made",
                    [(ledger.PAYOUTS_IN_TRANSIT, amount), (ledger.STRIPE_BALANCE, -amount)]))
                seq += 1
                heapq.heappush(heap, Posting(
                    p.at + timedelta(days=2, minutes=5), seq, key + ":paid",
                    f"Stripe payout po_bench{p.seq} paid",
                    [(ledger.BANK, amount), (ledger.PAYOUTS_IN_TRANSIT, -amount)]))
            continue
        # A posting: the ledger's own checks, then its rows and the chain.
        if sum(a for _, a in p.entries) != 0 or len(p.entries) < 2:
            raise AssertionError(f"unbalanced {p.key}")
        tx_id += 1
        digest = chain(prev, p.key, p.description, CURRENCY, None, p.entries, p.at)
        values = [tx_id, p.key, p.description, p.at, prev, digest]
        if version is not None:
            values.append(version)
        tx_rows.add(*values)
        prev = digest
        for name, amount in p.entries:
            acc = account(name)
            acc[2] += amount
            entry_rows.add(tx_id, acc[0], amount, CURRENCY)
        if p.kind == "credit":
            recent[p.data["answerer"]].append((p.at, p.data["cents"]))
            recent_sum[p.data["answerer"]] += p.data["cents"]
    say(f"[generate] {tx_id} ledger transactions chained in "
        f"{time.perf_counter() - started:.1f}s")

    account_rows = Table("ledger_account", ("id", "name", "type", "currency", "balance_cents"))
    for name, (aid, kind, balance) in accounts.items():
        account_rows.add(aid, name, kind, CURRENCY, balance)

    counts = {}
    # Rows are written as the services would have; triggers (append-only, balanced
    # transactions) and foreign keys are not fired during the load: the checks below
    # and the chain's verification cover what they would.
    conn.execute("SET session_replication_role = replica")
    for table in (users, profiles, question, events, offers, tips, batches, payouts,
                  account_rows, tx_rows, entry_rows):
        counts[table.name] = table.copy(conn)
        table.lines = []
    conn.execute("SET session_replication_role = origin")
    if conn.execute("SELECT to_regclass('income_mark')").fetchone()[0] is not None:
        from upss import ledger as upss_ledger  # what ledger.post keeps: the running income
        conn.execute(upss_ledger.REBUILD_INCOME_MARKS)
        counts["income_mark"] = conn.execute("SELECT count(*) FROM income_mark").fetchone()[0]
    for table in ("user", "question", "question_event", "offer", "tip", "payout_batch",
                  "payout", "ledger_account", "ledger_transaction", "ledger_entry"):
        conn.execute(f"""SELECT setval(pg_get_serial_sequence('"{table}"', 'id'),
                         coalesce((SELECT max(id) FROM "{table}"), 0) + 1, false)""")
    conn.commit()
    say(f"[generate] copied in {time.perf_counter() - started:.1f}s: {counts}")
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    problems = check(conn)
    conn.close()
    if problems:
        raise AssertionError("generated ledger is inconsistent: " + "; ".join(problems))
    info = {
        "questions": questions, "seed": seed, "head": migrations_head(),
        "generated_at": now.isoformat(), "hash_version": version,
        "seconds": round(time.perf_counter() - started, 1), "counts": counts,
        "password": PASSWORD, "organizer": ORGANIZER_EMAIL,
        "asker": "bench-asker1@example.org", "answerer": "bench-answerer1@example.org",
        "answerers": n_answerers,
    }
    with psycopg.connect(psycopg_url("postgres"), autocommit=True) as admin:
        admin.execute(f"COMMENT ON DATABASE \"{database}\" IS "
                      + "'" + json.dumps(info).replace("'", "''") + "'")
    say(f"[generate] {database} done in {info['seconds']}s")
    return info


def check(conn: psycopg.Connection) -> list[str]:
    """What the database's own triggers would have refused, checked in SQL: every transaction
    balances with two or more entries, every cached balance is the sum of its entries, every
    prev_hash is the hash before it, and the whole ledger sums to zero."""
    problems = []
    unbalanced = conn.execute(
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entry GROUP BY transaction_id "
        "HAVING sum(amount_cents) <> 0 OR count(*) < 2) x").fetchone()[0]
    if unbalanced:
        problems.append(f"{unbalanced} unbalanced transactions")
    wrong = conn.execute(
        "SELECT count(*) FROM ledger_account a LEFT JOIN (SELECT account_id, sum(amount_cents) s"
        " FROM ledger_entry GROUP BY account_id) e ON e.account_id = a.id"
        " WHERE a.balance_cents <> coalesce(e.s, 0)").fetchone()[0]
    if wrong:
        problems.append(f"{wrong} cached balances differ from their entries")
    unlinked = conn.execute(
        "SELECT count(*) FROM ledger_transaction t JOIN ledger_transaction p ON p.id = t.id - 1"
        " WHERE t.prev_hash <> p.hash").fetchone()[0]
    if unlinked:
        problems.append(f"{unlinked} transactions not linked to the one before")
    total = conn.execute("SELECT coalesce(sum(balance_cents), 0) FROM ledger_account").fetchone()
    if total[0]:
        problems.append(f"the trial balance is off by {total[0]}")
    return problems


def ensure(database: str, questions: int, *, regenerate: bool = False,
           quiet: bool = False) -> dict:
    """The info of ``database``, generated first when asked to or when it does not match."""
    info = None if regenerate else usable(database, questions)
    return info or generate(database, questions, quiet=quiet)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.generate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--database", default=None,
                        help="database name (default upss_bench_<questions>)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--regenerate", action="store_true",
                        help="generate even if the database already matches")
    options = parser.parse_args(argv)
    database = options.database or f"upss_bench_{options.questions}"
    if options.regenerate or not usable(database, options.questions):
        info = generate(database, options.questions, options.seed)
    else:
        info = stored_info(database)
    print(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    main()
