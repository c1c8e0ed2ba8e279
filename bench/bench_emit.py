"""The cost of `emit()` on the caller's thread: median and p99, against a log line.

`emit()` validates the event, writes it to the spool and queues it; the network is the
sender thread's business. The baseline is the same information written as one `logging`
line to a file, measured in the same run. Goal: median <= 20 us.

    python bench/bench_emit.py [--events 20000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from aisci_nb.events.emitter import Emitter, RunEmitter, SequenceCounter
from aisci_nb.events.spool import Spool


class NullSink:
    """Accepts every batch at once: the cost measured is the caller's, not the network's."""

    def send(self, lines: list[bytes]) -> None:
        pass


def percentiles(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(0.99 * len(samples))] / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        logger = logging.getLogger("bench.baseline")
        handler = logging.FileHandler(root / "baseline.log")
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        base: list[int] = []
        for i in tqdm(range(args.events), desc="logging baseline", leave=False):
            t = time.perf_counter_ns()
            logger.info("stage_progress run=r1 stage=Stage_1 progress=%s iteration=%d", i / 1e5, i)
            base.append(time.perf_counter_ns() - t)

        emitter = Emitter(NullSink(), source="bench://pod", spool=Spool(root / "spool"))
        run = RunEmitter(emitter, "r1", sequence=SequenceCounter(root / "events.seq"),
                         traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
        costs: list[int] = []
        for i in tqdm(range(args.events), desc="emit()", leave=False):
            t = time.perf_counter_ns()
            run.emit("ai.run.stage_progress", stage="Stage_1", progress=i / 1e5, iteration=i)
            costs.append(time.perf_counter_ns() - t)
        assert emitter.flush(timeout_s=60)
        assert emitter.sent == args.events
        emitter.close()

    b50, b99 = percentiles(base)
    e50, e99 = percentiles(costs)
    print(f"{'':<18} {'median us':>10} {'p99 us':>8}")
    print(f"{'logging.info':<18} {b50:>10.1f} {b99:>8.1f}")
    print(f"{'emit()':<18} {e50:>10.1f} {e99:>8.1f}")
    print(f"ratio emit/logging: median {e50 / b50:.2f}, p99 {e99 / b99:.2f}")


if __name__ == "__main__":
    main()
