"""Step outputs, so that a run resumes on any pod: what a step wrote is uploaded, and a
re-claimed run gets the outputs of its finished steps back before continuing.

A step's outputs are the files it created or changed in the run's working directory; they
are stored under `runs/{run_id}/steps/{step}/{path}` and listed in the step record as
`outputs.files` (path -> key). Restoring goes step by step in pipeline order, so a file that
a later step rewrote ends as that step left it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .pipeline import Step
from .store import ArtifactStore

log = logging.getLogger("aisci.resume")

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path) -> Snapshot:
    """Size and modification time of every file under `root`, by relative path."""
    if not root.is_dir():
        return {}
    out: Snapshot = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def changed_files(root: Path, before: Snapshot) -> list[str]:
    after = snapshot(root)
    return sorted(p for p, sig in after.items() if before.get(p) != sig)


def output_key(run_id: str, step: str, relpath: str) -> str:
    return f"runs/{run_id}/steps/{step}/{relpath}"


def upload_outputs(store: ArtifactStore, run_id: str, step: str, root: Path,
                   paths: Sequence[str]) -> dict[str, str]:
    """Upload the step's new or changed files; path -> key for the step record."""
    return {p: store.put_file(output_key(run_id, step, p), root / p).key for p in paths}


def restore(store: ArtifactStore, run: dict, steps: Sequence[Step], root: Path) -> int:
    """Bring back the outputs of the run's finished steps; the index of the first step to run.

    A step counts as finished only if its record says COMPLETED and all its outputs could be
    fetched; from the first one that is not, every later step runs again.
    """
    records = run.get("steps") or {}
    root = root.resolve()
    for index, step in enumerate(steps):
        record = records.get(step.name) or {}
        if record.get("status") != "COMPLETED":
            return index
        files = (record.get("outputs") or {}).get("files") or {}
        try:
            for relpath, key in files.items():
                dest = (root / relpath).resolve()
                if not dest.is_relative_to(root):
                    raise ValueError(f"output path escapes the working directory: {relpath!r}")
                store.get_file(key, dest)
        except Exception as exc:
            log.warning("run %s: outputs of %s could not be restored (%s); running it again",
                        run["_id"], step.name, exc)
            return index
    return len(steps)
