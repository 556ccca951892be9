"""Mutation score per module from mutmut 3's results (``mutants/upss/*.py.meta``).

``make mutation`` plants small bugs (mutants) in the core modules and runs the unit and SQLite
flow tests against each; a mutant no test notices "survives". Every mutant takes a few
seconds (a pytest session each), so a whole run takes hours on two cores. To measure within
a working session, ``--sample FRACTION`` marks all but a uniform random sample of each
module's untested mutants as skipped (mutmut's own "skipped" status, 34); the score is then
reported over the sample, with a 95 % (Wilson) interval. The mutants must exist first: start
``mutmut run``, stop it (Ctrl-C) once it prints "Running mutation testing", then

    python scripts/mutation_score.py --sample 0.3 --seed 15   # then `mutmut run` again
    python scripts/mutation_score.py                          # after: the table
    python scripts/mutation_score.py --survivors              # and every survivor's name
    python scripts/mutation_score.py --retest-survivors       # mark survivors untested again
                                                              # (after adding tests)
Run it from the project directory (where ``mutants/`` is).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from pathlib import Path

META = Path("mutants/upss")
SAMPLE = Path("mutants/sample.txt")
#: mutmut's exit codes: 1 and 3 a test failed (killed); 0 survived; 33 and 5 no test covers
#: the code; 34 skipped; timeouts and crashes count as killed (the bug was noticed).
KILLED = {1, 3, 24, -24, 36, 152, 255, -9, -11}
SURVIVED = {0}
NO_TESTS = {33, 5}
SKIPPED = 34


def _metas() -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted(META.glob("*.py.meta"))]


def mark_sample(fraction: float, seed: int) -> None:
    """Keep a uniform random ``fraction`` of each module's mutants; skip the other untested."""
    chosen = []
    for path, meta in _metas():
        names = sorted(meta["exit_code_by_key"])
        picked = set(random.Random(f"{seed}:{path.name}").sample(
            names, round(len(names) * fraction)))
        chosen += sorted(picked)
        for name in names:
            if name not in picked and meta["exit_code_by_key"][name] is None:
                meta["exit_code_by_key"][name] = SKIPPED
        path.write_text(json.dumps(meta))
    SAMPLE.write_text("\n".join(chosen) + "\n")


def retest_survivors() -> int:
    """Mark the survivors untested, so the next ``mutmut run`` tries them with today's tests."""
    count = 0
    for path, meta in _metas():
        for name, code in meta["exit_code_by_key"].items():
            if code in SURVIVED:
                meta["exit_code_by_key"][name] = None
                count += 1
        path.write_text(json.dumps(meta))
    return count


def wilson(killed: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion."""
    if not n:
        return 0.0, 0.0
    z, p = 1.96, killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def report(show_survivors: bool) -> None:
    chosen = set(SAMPLE.read_text().split()) if SAMPLE.exists() else None
    print(f"{'module':<20}{'mutants':>8}{'tested':>8}{'killed':>8}{'survived':>9}"
          f"{'no test':>8}{'pending':>8}{'score':>8}  95 % interval")
    survivors = []
    for path, meta in _metas():
        codes = {name: code for name, code in meta["exit_code_by_key"].items()
                 if chosen is None or name in chosen}
        counts = Counter("killed" if c in KILLED else "survived" if c in SURVIVED
                         else "no test" if c in NO_TESTS else "pending" if c is None
                         else "other" for c in codes.values())
        tested = counts["killed"] + counts["survived"] + counts["no test"]
        low, high = wilson(counts["killed"], tested)
        score = 100 * counts["killed"] / tested if tested else 0.0
        print(f"{path.name[:-5]:<20}{len(codes):>8}{tested:>8}{counts['killed']:>8}"
              f"{counts['survived']:>9}{counts['no test']:>8}{counts['pending']:>8}"
              f"{score:>7.1f}%  {100 * low:.0f}–{100 * high:.0f} %")
        survivors += [name for name, code in codes.items()
                      if code in SURVIVED or code in NO_TESTS]
    if chosen is not None:
        print(f"(over the sample in {SAMPLE}: {len(chosen)} mutants)")
    if show_survivors:
        print("\n".join(sorted(survivors)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=float, help="keep this fraction of each module")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--survivors", action="store_true", help="list the survivors")
    parser.add_argument("--retest-survivors", action="store_true")
    args = parser.parse_args()
    if args.sample:
        mark_sample(args.sample, args.seed)
    if args.retest_survivors:
        print(f"{retest_survivors()} survivors will be tried again")
    report(args.survivors)


if __name__ == "__main__":
    main()
