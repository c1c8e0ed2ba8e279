"""What the pod's hardware is: reported in `ai.run.started` and heartbeats."""

from __future__ import annotations

import functools
import shutil
import subprocess


@functools.cache
def gpu_name() -> str | None:
    """The first GPU's name through nvidia-smi, or None on a CPU-only machine."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return names[0] if names else None
