"""What a second server process on one SQLite file (WAL) gives, before any server code: write transactions
shaped like the server's per-request ones (BEGIN IMMEDIATE, insert + indexed count, COMMIT), from 2
processes, next to the same work from 1 process measured in the same run.

    .venv/bin/python benchmarks/bench_sqlite_workers.py [--transactions 1500] [--rounds 3] [--think-ms 3]

Each process runs the transactions back to back, with ``--think-ms`` of busy CPU after each (a passkey
login costs the server about 3 ms of CPU outside its transactions; 0 measures the lock alone). Reported:
total transactions/s, p50/p99/max of one transaction's wall time (waiting for the write lock included),
the medians over the rounds, and the 2-process/1-process ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path

BUSY_TIMEOUT_MS = 5000  # as the server's SQLite adapter


def _worker(path: str, count: int, think: float, out: Queue[list[float]]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA synchronous = NORMAL")
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        now = time.time()
        db.execute("INSERT INTO rate_hits (ip, at) VALUES (?, ?)", ("203.0.113.9", now))
        db.execute(
            "SELECT count(*) FROM rate_hits WHERE ip = ? AND at > ?", ("203.0.113.9", now - 60)
        ).fetchone()
        db.execute("COMMIT")
        latencies.append(time.perf_counter() - began)
        until = time.perf_counter() + think
        while time.perf_counter() < until:
            pass
    out.put(latencies)


def run(processes: int, count: int, think: float) -> tuple[float, float, float, float]:
    """transactions/s, p50, p99, max (seconds) for ``processes`` processes on a fresh database."""
    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "bench.sqlite3")
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE rate_hits (ip TEXT NOT NULL, at REAL NOT NULL)")
        db.execute("CREATE INDEX rate_hits_ip_at ON rate_hits(ip, at)")
        db.commit()
        db.close()
        context = multiprocessing.get_context("fork")
        out: Queue[list[float]] = context.Queue()
        workers = [context.Process(target=_worker, args=(path, count, think, out)) for _ in range(processes)]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        latencies = sorted(x for _ in workers for x in out.get())
        elapsed = time.perf_counter() - began
        for worker in workers:
            worker.join()
    return (
        len(latencies) / elapsed,
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99)],
        latencies[-1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=1500, help="per process and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--think-ms", type=float, default=3.0)
    args = parser.parse_args()
    results: dict[int, list[tuple[float, float, float, float]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for processes in (1, 2):  # interleaved, so both see the same machine load
            results[processes].append(run(processes, args.transactions, args.think_ms / 1000))
    medians = {p: [statistics.median(r[i] for r in rs) for i in range(4)] for p, rs in results.items()}
    for processes, (rate, p50, p99, worst) in medians.items():
        print(
            f"{processes} process(es), {args.think_ms:g} ms CPU between transactions: {rate:,.0f} tx/s, "
            f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.1f} ms, max {worst * 1e3:.0f} ms"
        )
    print(f"2 processes / 1 process: {medians[2][0] / medians[1][0]:.2f}x the transactions/s")


if __name__ == "__main__":
    main()
