"""GPU telemetry: how several devices are summed up, and what a CPU-only machine reports."""

from __future__ import annotations

import pynvml

from aisci_nb.contract.catalog import validate_data
from aisci_nb.worker.telemetry import DeviceReading, combine, gpu_name, gpu_sample, read_devices

H200 = "NVIDIA H200"


def test_one_device_is_reported_as_it_is() -> None:
    sample = combine([DeviceReading(H200, 37.0, 3 * 2**30, 41.0)])
    assert sample is not None
    assert (sample.name, sample.count) == (H200, 1)
    assert sample.heartbeat_data() == {"gpu_util": 37.0, "mem_gb": 3.0, "temp_c": 41.0}


def test_several_devices_are_summed_up_for_a_heartbeat() -> None:
    sample = combine([
        DeviceReading(H200, 20.0, 2**30, 40.0),
        DeviceReading(H200, 60.0, 3 * 2**30 // 2, 71.0),
        DeviceReading(H200, None, None, None),  # a device that reports nothing
    ])
    assert sample is not None
    assert sample.name == "3x NVIDIA H200"
    assert sample.gpu_util == 40.0  # the mean of those that report
    assert sample.mem_gb == 2.5  # GiB in use, summed
    assert sample.temp_c == 71.0  # the hottest


def test_missing_fields_are_left_out_and_the_rest_fits_the_contract() -> None:
    sample = combine([DeviceReading(H200, None, 5 * 2**29, None)])
    assert sample is not None
    data = sample.heartbeat_data()
    assert data == {"mem_gb": 2.5}
    assert validate_data("ai.run.heartbeat", {"run_id": "r1", **data}) == {"run_id": "r1", **data}


def test_no_device_means_no_sample() -> None:
    assert combine([]) is None


def test_this_machine_is_reported_as_nvml_sees_it() -> None:
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError:
        count = 0  # no driver: a CPU-only machine
    assert len(read_devices()) == count
    sample = gpu_sample()
    if count == 0:
        assert sample is None and gpu_name() is None
    else:
        assert sample is not None and sample.count == count
        assert gpu_name() == sample.name
