"""The step outputs manifest: which artifacts a kernel registered as its step's outputs.

The kernel writes it, the worker reads it after the step (`worker.stepio.read_outputs`) and
records the outputs on the run, so later steps receive them as inputs. Its path is fixed
when the context is built: a notebook that changes directory later still writes where the
worker looks.
"""

from __future__ import annotations

import json
from pathlib import Path

OUTPUTS_DIR = ".aisci-outputs"


def outputs_manifest(cwd: Path, stage: str) -> Path:
    """Where a step's kernel lists the artifacts it registered as the step's outputs."""
    return cwd / OUTPUTS_DIR / f"{stage}.json"


def add_output(manifest: Path, name: str, key: str) -> None:
    """List `key` as output `name` (a later registration under the same name wins)."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    listed = json.loads(manifest.read_text()) if manifest.exists() else {}
    listed[name] = key
    manifest.write_text(json.dumps(listed, indent=1))
