"""What the pod's hardware is: the GPU named in `ai.run.started`, its load in heartbeats.

Read through NVML (NVIDIA's management library, via `nvidia-ml-py`), the same source
`nvidia-smi` uses, without spawning a process per heartbeat. A machine without an NVIDIA
driver gets `None` everywhere: CPU-only pods work and report no GPU.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")
_lock = threading.Lock()


@dataclass(frozen=True)
class DeviceReading:
    """One GPU as NVML sees it; a field NVML does not support on that device is None."""

    name: str
    util_pct: float | None
    mem_used_bytes: int | None
    temp_c: float | None


@dataclass(frozen=True)
class GpuSample:
    """The pod's GPUs at one moment, summed up the way a heartbeat reports them."""

    name: str  # "NVIDIA H200", or "4x NVIDIA H200" when a pod has several
    count: int
    gpu_util: float | None  # percent, mean over the devices
    mem_gb: float | None  # GiB in use, summed over the devices
    temp_c: float | None  # the hottest device

    def heartbeat_data(self) -> dict[str, float]:
        """The `ai.run.heartbeat` fields this sample can fill (absent ones are left out)."""
        fields = {"gpu_util": self.gpu_util, "mem_gb": self.mem_gb, "temp_c": self.temp_c}
        return {k: v for k, v in fields.items() if v is not None}


def combine(readings: Sequence[DeviceReading]) -> GpuSample | None:
    """Sum several devices up into one sample; None for none."""
    if not readings:
        return None
    first = readings[0].name
    name = first if len(readings) == 1 else f"{len(readings)}x {first}"
    utils = [r.util_pct for r in readings if r.util_pct is not None]
    mems = [r.mem_used_bytes for r in readings if r.mem_used_bytes is not None]
    temps = [r.temp_c for r in readings if r.temp_c is not None]
    return GpuSample(
        name=name,
        count=len(readings),
        gpu_util=round(sum(utils) / len(utils), 1) if utils else None,
        mem_gb=round(sum(mems) / 2**30, 3) if mems else None,
        temp_c=max(temps) if temps else None,
    )


@functools.cache
def _nvml() -> Any | None:
    """The initialised NVML module, or None where there is no driver (initialised once)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver, no device: a CPU-only machine
        return None
    return pynvml


def _optional(read: Callable[[], _T]) -> _T | None:
    try:
        return read()
    except Exception:  # NVMLError_NotSupported on some virtual or older devices
        return None


def read_devices() -> list[DeviceReading]:
    """Every GPU NVML can see, read now; an empty list on a CPU-only machine."""
    nvml = _nvml()
    if nvml is None:
        return []
    with _lock:
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception:
            return []
        readings = []
        for h in handles:
            name = _optional(lambda h=h: nvml.nvmlDeviceGetName(h))
            if isinstance(name, bytes):  # older bindings return bytes
                name = name.decode()
            readings.append(DeviceReading(
                name=name or "NVIDIA GPU",
                util_pct=_optional(lambda h=h: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)),
                mem_used_bytes=_optional(lambda h=h: int(nvml.nvmlDeviceGetMemoryInfo(h).used)),
                temp_c=_optional(lambda h=h: float(
                    nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))),
            ))
    return readings


def gpu_sample() -> GpuSample | None:
    """The pod's GPUs now (name, load, memory, temperature), or None without a GPU."""
    return combine(read_devices())


@functools.cache
def gpu_name() -> str | None:
    """The GPU named in `ai.run.started`; it does not change while the process lives."""
    sample = gpu_sample()
    return sample.name if sample else None
