"""100,000 seeded random and mutated responses through the parser and every reward.

    .venv/bin/python bench/fuzz_responses.py [--count 100000] [--seed 0]

The test suite runs 100,000 of the same generator with seed 1 (tests/reliability/test_fuzz_responses.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reliability.fuzzer import responses
from reliability.test_fuzz_responses import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    batch = []
    for text in responses(args.count, seed=args.seed):
        batch.append(text)
        if len(batch) == 1000:
            check(batch)
            batch = []
    if batch:
        check(batch)
    elapsed = time.perf_counter() - start
    print(
        f"{args.count} fuzzed responses: no exception, answers yes/no/None, boxes inside the frame, "
        f"rewards finite ({elapsed:.1f} s, {args.count / elapsed:.0f} responses/s)"
    )


if __name__ == "__main__":
    main()
