"""The process and GPU gauges: the model process's CPU and memory, and each GPU's utilisation and
memory through NVML.

The process serving the metrics gets its own ``process_*`` from prometheus_client already; the
model runs in a child process (``generation.supervisor``) that a restart replaces, so its gauges
(``sdbot_worker_process_*``) follow whichever child runs now, and are absent while none does.
The GPU gauges (``sdbot_gpu_*``, labelled by the GPU's index as the model process numbers it and
its UUID: a bounded set) come only from a process that runs a model, for the GPUs
``CUDA_VISIBLE_DEVICES`` lets it use, and only where NVML starts: on a machine without an NVIDIA
driver they are simply not there.

Both collectors are registered once per process on the default registry; ``follow_model``
points the first at the model process of the supervisor in use (a test or a restarted service
may build several).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class VisibleGpu:
    """A GPU as the model process sees it: ``index`` in its own numbering (CUDA's, after
    ``CUDA_VISIBLE_DEVICES``), NVML's handle and the GPU's UUID."""

    index: int
    handle: Any
    uuid: str


def visible_entries(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it: its entries in order (indexes or UUIDs);
    None when unset (every GPU). Set but empty: none."""
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",")] if value.strip() else []


def visible_gpus(nvml: Any, entries: list[str] | None) -> list[VisibleGpu]:
    """The GPUs ``entries`` make visible, numbered as CUDA numbers them for the process. An
    entry is an NVML index or a UUID (or its unique prefix, "GPU-" included); like CUDA, the
    list ends at the first entry that names no GPU (``-1`` hides them all)."""
    every = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        every.append((handle, _text(nvml.nvmlDeviceGetUUID(handle))))
    if entries is None:
        return [VisibleGpu(index, handle, uuid) for index, (handle, uuid) in enumerate(every)]
    shown: list[VisibleGpu] = []
    for entry in entries:
        if entry.isdigit():
            found = [every[int(entry)]] if int(entry) < len(every) else []
        else:
            found = [gpu for gpu in every if entry and gpu[1].startswith(entry)]
        if len(found) != 1:  # CUDA stops at an entry it cannot resolve
            break
        shown.append(VisibleGpu(len(shown), *found[0]))
    return shown


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # older pynvml: bytes


class GpuCollector(Collector):
    """Each GPU the model process can use (``CUDA_VISIBLE_DEVICES``; unset: all): its
    utilisation (0 to 1, over NVML's last sample period) and memory, labelled by its index as
    that process numbers it (``gpu``) and its ``uuid`` (the same on every process and host
    tool). A GPU that cannot be read this time (lost, reset) is left out of this scrape."""

    def __init__(self, nvml: Any, visible: str | None = None) -> None:
        self._nvml = nvml
        self._entries = visible_entries(visible)

    def collect(self) -> Iterable[Metric]:
        nvml = self._nvml
        labels = ["gpu", "uuid"]
        utilisation = GaugeMetricFamily(
            "sdbot_gpu_utilization_ratio",
            "How busy each GPU was over NVML's last sample period (0 to 1)",
            labels=labels,
        )
        used = GaugeMetricFamily(
            "sdbot_gpu_memory_used_bytes", "GPU memory in use (all processes)", labels=labels
        )
        total = GaugeMetricFamily("sdbot_gpu_memory_total_bytes", "GPU memory", labels=labels)
        try:
            gpus = visible_gpus(nvml, self._entries)
        except nvml.NVMLError as error:
            log.warning("NVML could not list the GPUs ◆ %s", error)
            return []
        for gpu in gpus:
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(gpu.handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(gpu.handle)
            except nvml.NVMLError as error:
                log.warning("NVML could not read GPU %s ◆ %s", gpu.uuid, error)
                continue
            label = [str(gpu.index), gpu.uuid]
            utilisation.add_metric(label, rates.gpu / 100.0)
            used.add_metric(label, float(memory.used))
            total.add_metric(label, float(memory.total))
        return [utilisation, used, total]


_lock = threading.Lock()
_model: ModelProcessCollector | None = None
_gpu: GpuCollector | None = None
_gpu_tried = False
_gpu_shown = False


def follow_model(pid: PidSource | None) -> None:
    """The model process's gauges follow ``pid()`` (the supervisor's current child; None: no
    model process here), and the GPU gauges are shown only while there is one: a bot whose
    model runs in `sdbot worker` processes says nothing of a GPU it does not use (the worker
    on that host does). Registers the collectors on first use."""
    global _model
    with _lock:
        if _model is None:
            _model = ModelProcessCollector()
            REGISTRY.register(_model)
        _model.pid = pid or _no_process
    show_gpus(pid is not None)


def show_gpus(shown: bool) -> bool:
    """Registers the GPU gauges (``shown``, once NVML starts: an NVIDIA driver is there) or
    takes them away. True: they are registered now."""
    global _gpu, _gpu_tried, _gpu_shown
    with _lock:
        if shown and not _gpu_tried:
            _gpu_tried = True
            nvml = _start_nvml()
            if nvml is not None:  # the model process inherits this process's environment
                _gpu = GpuCollector(nvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if _gpu is not None and shown != _gpu_shown:
            if shown:
                REGISTRY.register(_gpu)
            else:
                REGISTRY.unregister(_gpu)
            _gpu_shown = shown
        return _gpu_shown


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
