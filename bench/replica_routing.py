"""What routing a read to a replica costs: ``Database.read()`` + one small query, on the
primary alone vs. through ``LOOKALIKE_DATABASE_REPLICA_URLS`` (replica pick, lag check at
most once a second, the failover wrapper), against a real streaming standby on this machine.

    .venv/bin/python bench/replica_routing.py [--reads 3000] [--rounds 3]

Both sides talk to servers on the same machine over TCP, so the difference is the routing's
own cost (the primary and the standby answer the query in the same time). Rounds alternate
A (primary) and B (replica) to spread the machine's drift over both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from api.db.engine import Database  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench.report import write_results  # noqa: E402
from tests.pg_cluster import LocalPostgres, wait_until  # noqa: E402

QUERY = text("SELECT count(*) FROM pg_class WHERE relkind = 'r'")


def timed_reads(database: Database, reads: int) -> list[float]:
    samples = []
    for _ in range(reads):
        start = time.perf_counter()
        with database.read() as conn:
            conn.execute(QUERY).scalar()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/replica_routing.json")
    args = parser.parse_args()

    primary = LocalPostgres.create()
    primary.start()
    standby = None
    try:
        url = primary.create_database("bench")
        standby = primary.standby()
        standby.start()
        base = {"clip_random_weights": True, "_env_file": None, "database_url": url}
        plain = Database(Settings(**base))  # type: ignore[arg-type]
        routed = Database(Settings(**base, database_replica_urls=(standby.url("bench"),)))  # type: ignore[arg-type]
        wait_until(lambda: routed.replicas is not None and routed.replicas.pick() is not None, timeout=30)
        with routed.read() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        timed_reads(plain, 200)  # warm both pools
        timed_reads(routed, 200)
        rows = []
        for round_ in range(1, args.rounds + 1):
            for side, database in (("primary", plain), ("replica", routed)):
                samples = timed_reads(database, args.reads)
                rows.append(
                    {
                        "round": round_,
                        "side": side,
                        "p50_ms": round(float(np.percentile(samples, 50)), 4),
                        "p95_ms": round(float(np.percentile(samples, 95)), 4),
                        "mean_ms": round(float(np.mean(samples)), 4),
                    }
                )
                print(rows[-1], flush=True)
        # The routing's own CPU cost, without the network: choosing a replica (breaker, lag
        # freshness) and wrapping its connection, per read.
        assert routed.replicas is not None
        picks = 100_000
        start = time.perf_counter()
        for _ in range(picks):
            routed.replicas.pick()
        pick_us = (time.perf_counter() - start) / picks * 1e6
        rows.append({"side": "pick_only", "mean_us": round(pick_us, 3)})
        print(rows[-1], flush=True)
        plain.dispose()
        routed.dispose()
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
