"""What an ingest sender may say: the authorization of each event, after authentication.

- No sender moves a run to a status that belongs to people: `HUMAN_VALIDATED`, or a
  verdict (failed, canceled, validated) on a run that waits for its human review.
- A run-scoped token (a kernel's) speaks for its run and lease epoch only, and its epoch
  must still be the run's current one.
- Artifacts live under their run: `runs/{run_id}/` (`ideation/{request_id}/` for ideation).
"""

from __future__ import annotations

from pymongo.database import Database

from ..contract.envelope import Event
from ..contract.lifecycle import RunStatus
from .deps import IngestPrincipal

HUMAN_ONLY = frozenset({RunStatus.HUMAN_VALIDATED.value})
# Run statuses in which the next move is a person's.
HUMAN_TURN = frozenset({RunStatus.AWAITING_HUMAN.value})
STATUS_TYPES = frozenset({"ai.run.status_changed", "ai.run.failed", "ai.run.canceled",
                          "ai.run.completed"})
ARTIFACT_TYPES = frozenset({"ai.artifact.registered", "ai.artifact.failed"})


def artifact_prefixes(run_id: str) -> tuple[str, str]:
    return f"runs/{run_id}/", f"ideation/{run_id}/"


def _artifact_ok(e: Event) -> bool:
    key = e.data.get("key")
    if not isinstance(key, str) or not e.run_id:
        return False
    parts = key.split("/")
    return key.startswith(artifact_prefixes(e.run_id)) and ".." not in parts and "" not in parts


def _reports_the_wait(e: Event) -> bool:
    """The worker's own report that it handed the run to people: it decides nothing."""
    return e.type == "ai.run.status_changed" and e.data.get("to") in HUMAN_TURN


def refusals(db: Database, principal: IngestPrincipal, events: list[Event]) -> dict[int, str]:
    """index -> reason for each event this sender may not send; the others may go on."""
    out: dict[int, str] = {}
    scope = principal.scope
    status_runs = {e.run_id for e in events if e.type in STATUS_TYPES and e.run_id}
    current: dict[str, dict] = {}
    wanted = status_runs | ({scope.run_id} if scope else set())
    if wanted:
        current = {d["_id"]: d for d in db.runs.find({"_id": {"$in": list(wanted)}},
                                                      {"status": 1, "leaseEpoch": 1})}
    stale_scope = scope is not None and scope.epoch < (
        current.get(scope.run_id, {}).get("leaseEpoch") or 0)
    for i, e in enumerate(events):
        if scope is not None:
            if e.run_id != scope.run_id:
                out[i] = f"this run token is for run {scope.run_id}, not {e.run_id}"
                continue
            if e.epoch != scope.epoch:
                out[i] = f"this run token is for lease epoch {scope.epoch}, not {e.epoch}"
                continue
            if stale_scope:
                out[i] = (f"lease epoch {scope.epoch} of run {scope.run_id} was taken over: "
                          "this run token is stale")
                continue
        if e.type == "ai.run.status_changed" and e.data.get("to") in HUMAN_ONLY:
            out[i] = f"{e.data.get('to')} is a person's verdict, never accepted from ingest"
        elif e.type in STATUS_TYPES and current.get(e.run_id or "", {}).get(
                "status") in HUMAN_TURN and not _reports_the_wait(e):
            out[i] = f"run {e.run_id} awaits its human review: only a person may decide it"
        elif e.type in ARTIFACT_TYPES and not _artifact_ok(e):
            out[i] = (f"artifact key {e.data.get('key')!r} is outside runs/{e.run_id}/ "
                      f"(and ideation/{e.run_id}/)")
    return out
