"""What a run consumes besides time: the worker's side of LLM spending and GPU time.

- The LLM ledger (see `research/llm/ledger.py`): seeded on every claim from the run's
  projected spending, so a budget holds across steps, attempts and pods.
- GPU time: each step execution's seconds with the pod's GPU name, written to the run as
  `gpuUsage: {name, seconds, byStep: {"<step>#<attempt>-<epoch>": seconds}}` under the
  lease fence. Keyed per execution, so a write retried after a lost reply counts once, and
  a failed attempt's GPU time still counts (it was spent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo.database import Database

from ..queue import claims
from ..research.llm.ledger import LEDGER_ENV, Ledger, seed

LEDGER_FILE = "llm-ledger.json"
__all__ = ["LEDGER_ENV", "LEDGER_FILE", "record_gpu_time", "seed_ledger"]


def seed_ledger(run: dict[str, Any], run_dir: Path) -> Ledger:
    """The run's ledger file, holding at least what the read model knows it spent."""
    usage = run.get("llmUsage") or {}
    steps = {row["step"]: row.get("costUsd", 0.0) for row in usage.get("byStep") or []
             if row.get("step")}
    return seed(run_dir / LEDGER_FILE, usage.get("costUsd") or 0.0, steps)


def record_gpu_time(db: Database, claim: claims.Claim, step: str, seconds: float,
                    gpu: str | None) -> bool:
    """Add one step execution's seconds on `gpu` (None: a CPU-only pod) to the run (or the
    ideation request)."""
    key = f"{step}#{claim.run.get('attempt') or 1}-{claim.epoch}".replace(".", "_") \
        .replace("$", "_")
    return db[claim.kind.collection].update_one(claims.fenced_filter(claim), [
        {"$set": {"gpuUsage.name": gpu, "gpuUsage.byStep": {"$mergeObjects": [
            {"$ifNull": ["$gpuUsage.byStep", {}]}, {"$literal": {key: round(seconds, 3)}}]}}},
        {"$set": {"gpuUsage.seconds": {"$round": [{"$sum": {"$map": {
            "input": {"$objectToArray": "$gpuUsage.byStep"}, "in": "$$this.v"}}}, 3]}}},
    ]).matched_count == 1
