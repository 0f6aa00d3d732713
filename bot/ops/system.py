"""The process and GPU gauges: the model process's CPU and memory, and each GPU's utilisation and
memory through NVML.

The process serving the metrics gets its own ``process_*`` from prometheus_client already; the
model runs in a child process (``generation.supervisor``) that a restart replaces, so its gauges
(``sdbot_worker_process_*``) follow whichever child runs now, and are absent while none does.
The GPU gauges (``sdbot_gpu_*``, labelled by the GPU's index: a bounded set) exist only where
NVML starts: on a machine without an NVIDIA driver they are simply not there.

Both collectors are registered once per process on the default registry; ``follow_model``
points the first at the model process of the supervisor in use (a test or a restarted service
may build several).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PidSource = Callable[[], int | None]


def _no_process() -> int | None:
    return None


class ModelProcessCollector(Collector):
    """prometheus_client's process gauges (CPU seconds, resident and virtual memory, open files,
    start time) for the model process, named ``sdbot_worker_process_*``; nothing while none
    runs."""

    def __init__(self) -> None:
        self.pid: PidSource = _no_process
        self._inner = ProcessCollector(namespace="sdbot_worker", pid=self._pid_text, registry=None)

    def _pid_text(self) -> str:
        return str(self.pid())

    def collect(self) -> Iterable[Metric]:
        if self.pid() is None:
            return []
        return self._inner.collect()  # reads /proc/PID; a process gone meanwhile gives nothing


class GpuCollector(Collector):
    """Each GPU's utilisation (0 to 1, over NVML's last sample period) and memory, by index.
    A GPU that cannot be read this time (lost, reset) is left out of this scrape."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    def collect(self) -> Iterable[Metric]:
        nvml = self._nvml
        utilisation = GaugeMetricFamily(
            "sdbot_gpu_utilization_ratio",
            "How busy each GPU was over NVML's last sample period (0 to 1)",
            labels=["gpu"],
        )
        used = GaugeMetricFamily(
            "sdbot_gpu_memory_used_bytes", "GPU memory in use (all processes)", labels=["gpu"]
        )
        total = GaugeMetricFamily("sdbot_gpu_memory_total_bytes", "GPU memory", labels=["gpu"])
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as error:
            log.warning("NVML could not count the GPUs ◆ %s", error)
            return []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as error:
                log.warning("NVML could not read GPU %d ◆ %s", index, error)
                continue
            label = [str(index)]
            utilisation.add_metric(label, rates.gpu / 100.0)
            used.add_metric(label, float(memory.used))
            total.add_metric(label, float(memory.total))
        return [utilisation, used, total]


_lock = threading.Lock()
_model: ModelProcessCollector | None = None
_gpu: GpuCollector | None = None
_gpu_tried = False


def follow_model(pid: PidSource | None) -> None:
    """The model process's gauges follow ``pid()`` (the supervisor's current child; None: no
    model process here). Registers the collectors on the first call."""
    global _model
    with _lock:
        if _model is None:
            _model = ModelProcessCollector()
            REGISTRY.register(_model)
        _model.pid = pid or _no_process
    install_gpu()


def install_gpu() -> bool:
    """Registers the GPU gauges once, when NVML starts (an NVIDIA driver is there). True: they
    are registered."""
    global _gpu, _gpu_tried
    with _lock:
        if _gpu_tried:
            return _gpu is not None
        _gpu_tried = True
        nvml = _start_nvml()
        if nvml is not None:
            _gpu = GpuCollector(nvml)
            REGISTRY.register(_gpu)
        return _gpu is not None


def _start_nvml() -> Any | None:
    """pynvml, initialised; None without the library or a driver."""
    try:
        import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no types
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:  # no driver, no GPU: the GPU gauges stay absent
        log.debug("no GPU gauges: NVML did not start ◆ %s", error)
        return None
    return pynvml
