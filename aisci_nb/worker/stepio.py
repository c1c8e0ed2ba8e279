"""What steps hand to each other: a step's outputs in, the earlier steps' outputs out.

A step's outputs are recorded on the run (`steps.<name>.outputs`: name → artifact key);
the kernel lists what it registers in a small manifest (`notebook.outputs`) that
the worker reads after the step. Before a step, the outputs of the steps that completed
before it are downloaded and offered in the run info's `inputs` (step → name → local path).
The worker and `aisci debug` both use `fetch_inputs`, so a debugged step sees what it saw.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from ..contract.lifecycle import StepStatus
from ..notebook.outputs import outputs_manifest
from ..storage.store import ArtifactStore, StorageError

log = logging.getLogger(__name__)

NOTEBOOK_OUTPUT = "notebook"  # the executed notebook itself is not handed on


def read_outputs(cwd: Path, stage: str) -> dict[str, str]:
    """The outputs the step's kernel registered (name → key); empty when none or unreadable."""
    path = outputs_manifest(cwd, stage)
    if not path.exists():
        return {}
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable outputs manifest %s: %s", path, exc)
        return {}
    return {str(k): str(v) for k, v in listed.items()} if isinstance(listed, dict) else {}


def earlier_steps(steps: dict[str, Any], name: str) -> list[str]:
    """Steps that completed and started before `name` (all completed ones if it has not)."""
    started = (steps.get(name) or {}).get("startedAt")
    out = []
    for other, record in steps.items():
        if other == name or record.get("status") != StepStatus.COMPLETED:
            continue
        if started is None or (record.get("startedAt") and record["startedAt"] < started):
            out.append(other)
    return sorted(out, key=lambda n: str(steps[n].get("startedAt") or ""))


def fetch_inputs(
    store: ArtifactStore, steps: dict[str, Any], name: str, dest: Path
) -> dict[str, dict[str, str]]:
    """Download the outputs of the steps before `name` under `dest/<step>/`; their paths."""
    inputs: dict[str, dict[str, str]] = {}
    for step in earlier_steps(steps, name):
        for output, key in (steps[step].get("outputs") or {}).items():
            if output == NOTEBOOK_OUTPUT:
                continue
            local = dest / step / PurePosixPath(key).name
            try:
                store.get_file(key, local)
            except Exception as exc:
                raise StorageError(f"could not download input {step}.{output} ({key}): "
                                   f"{exc}") from exc
            inputs.setdefault(step, {})[output] = str(local.resolve())
    return inputs
