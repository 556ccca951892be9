"""The baseline of ``flask upss verify-ledger``: one streaming pass over the ledger with the
same hashing (``ledger.hash_for``, or ``ledger._chain_hash`` before chain v2), checking each
link, each transaction's balance and every cached balance, in bounded memory (a server-side
cursor; only the per-account sums are kept).

``python -m bench.streaming postgresql://postgres@127.0.0.1:5432/upss_bench_1k`` prints what it
found and exits 1 when anything is wrong.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import psycopg

from upss import ledger


@dataclass
class Found:
    transactions: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)


def _hasher(has_version: bool):
    if has_version and hasattr(ledger, "hash_for"):
        def digest(prev, key, description, currency, reverses, entries, at, version):
            return ledger.hash_for(prev, key, description, currency, reverses, entries, at,
                                   version, hmac_key=None)
    else:
        def digest(prev, key, description, currency, reverses, entries, at, version):
            return ledger._chain_hash(prev, ledger._content(key, description, currency,
                                                            reverses, entries))
    return digest


def verify(url: str) -> Found:
    """Walk the chain in id order, its entries joined, through one server-side cursor."""
    found = Found()
    with psycopg.connect(url) as conn:
        has_version = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'ledger_transaction'"
            " AND column_name = 'hash_version'").fetchone() is not None
        digest = _hasher(has_version)
        names = dict(conn.execute("SELECT id, name FROM ledger_account").fetchall())
        sums: dict[int, int] = {}
        version_col = "t.hash_version" if has_version else "1"
        prev = ledger.GENESIS_HASH
        current = None
        broken = False
        entries: list[tuple[str, int]] = []

        def close(tx) -> None:
            nonlocal prev, broken
            _id, key, description, reverses, at, prev_hash, stored, version, currency = tx
            total = sum(a for _, a in entries)
            if len(entries) < 2 or total:
                found.problems.append(f"transaction {_id} is unbalanced")
            if not broken:  # past the first break, later links are not trusted
                if prev_hash != prev:
                    broken = True
                    found.problems.insert(0, f"chain broken at transaction {_id}: previous "
                                             "hash differs")
                elif stored != digest(prev, key, description, currency, reverses, entries,
                                      at, version):
                    broken = True
                    found.problems.insert(0, f"chain broken at transaction {_id}: content "
                                             "changed")
            prev = stored
            found.transactions += 1

        with conn.cursor(name="bench_walk") as cur:
            cur.itersize = 5000
            cur.execute(
                "SELECT t.id, t.idempotency_key, t.description, t.reverses_id, t.created_at,"
                f" t.prev_hash, t.hash, {version_col}, e.currency, e.account_id, e.amount_cents"
                " FROM ledger_transaction t JOIN ledger_entry e ON e.transaction_id = t.id"
                " ORDER BY t.id, e.id")
            for row in cur:
                if current is None or row[0] != current[0]:
                    if current is not None:
                        close(current)
                    current, entries = row[:9], []
                entries.append((names[row[9]], row[10]))
                sums[row[9]] = sums.get(row[9], 0) + row[10]
                found.entries += 1
            if current is not None:
                close(current)
        for account_id, balance in conn.execute("SELECT id, balance_cents FROM ledger_account"):
            if balance != sums.get(account_id, 0):
                found.problems.append(f"account {names[account_id]}: cached balance differs")
    return found


def main(argv: list[str] | None = None) -> int:
    url = (argv if argv is not None else sys.argv[1:])[0]
    found = verify(url)
    print(f"{found.transactions} transactions, {found.entries} entries, "
          f"{len(found.problems)} problems")
    for problem in found.problems[:10]:
        print(problem)
    return 1 if found.problems else 0


if __name__ == "__main__":
    sys.exit(main())
