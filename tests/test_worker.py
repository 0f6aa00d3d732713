"""The worker process under the service: crashes, stalls, bad models and cancels all end in a
terminal audit status with a reason, and the next job still runs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.errors import ModelLoadError
from generation.options import RequestedOptions
from generation.protocol import Progress, WorkerSpec
from generation.queue import LocalQueue
from generation.supervisor import WorkerSupervisor
from generation.worker import cpu_threads, usable_cores
from storage.models import JobStatus

CLI = Requester(source="test")


def local_supervisor(service: ImagineService) -> WorkerSupervisor:
    assert isinstance(service.queue, LocalQueue)
    return service.queue.supervisor


async def test_killing_the_worker_fails_the_job_and_the_next_one_runs(
    service: ImagineService,
) -> None:
    killed: list[int] = []

    def kill_on_first_step(progress: Progress) -> None:
        pid = local_supervisor(service).pid
        if not killed and pid is not None:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    outcome = await service.imagine(
        RequestedOptions(prompt="a blue square", steps=40, seed=3),
        CLI,
        on_progress=kill_on_first_step,
    )
    assert killed
    assert outcome.status is JobStatus.FAILED
    assert outcome.error == (
        f"the worker process was killed by SIGKILL while running job {outcome.job_id}"
    )
    record = await service.storage.audit.get_job(outcome.job_id)
    assert record is not None
    assert (record.status, record.error) == (JobStatus.FAILED, outcome.error)

    after = await service.imagine(RequestedOptions(prompt="a blue square", variants=1), CLI)
    assert after.status is JobStatus.SUCCEEDED
    assert local_supervisor(service).pid not in (None, killed[0])


async def test_a_stalled_job_is_failed_not_forgotten(service: ImagineService) -> None:
    await local_supervisor(service).start()
    local_supervisor(service).stall_timeout_s = 0.001
    outcome = await service.imagine(RequestedOptions(prompt="a red circle", variants=1), CLI)
    assert outcome.status is JobStatus.FAILED
    assert outcome.error is not None
    assert "made no progress for 0.001 s; the worker was stopped" in outcome.error
    assert not local_supervisor(service).alive


async def test_a_cancelled_request_is_recorded_cancelled(service: ImagineService) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(
        service.imagine(
            RequestedOptions(prompt="a green triangle", steps=40),
            CLI,
            on_progress=lambda progress: started.set(),
        )
    )
    await asyncio.wait_for(started.wait(), 120)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = await service.storage.audit.list_jobs()
    assert (record.status, record.error) == (JobStatus.CANCELLED, "cancelled")


async def test_a_model_that_cannot_load_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    supervisor = WorkerSupervisor(WorkerSpec(model=str(broken), device="cpu"))
    with pytest.raises(ModelLoadError, match=f"could not start the worker: .*{broken.name}"):
        await supervisor.start()
    assert not supervisor.alive
    await supervisor.close()


async def test_an_unwritable_output_folder_fails_the_job_with_the_reason(
    service: ImagineService, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    service.pictures.output_dir = blocker
    outcome = await service.imagine(RequestedOptions(prompt="a red circle", variants=1), CLI)
    assert outcome.status is JobStatus.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("cannot save: ")
    assert str(blocker) in outcome.error


async def test_a_failing_progress_callback_fails_the_job_and_frees_the_worker(
    service: ImagineService,
) -> None:
    def explode(progress: Progress) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await service.imagine(
            RequestedOptions(prompt="a red circle", variants=1), CLI, on_progress=explode
        )
    [record] = await service.storage.audit.list_jobs()
    assert (record.status, record.error) == (JobStatus.FAILED, "internal error: RuntimeError: boom")
    after = await service.imagine(RequestedOptions(prompt="a red circle", variants=1), CLI)
    assert after.status is JobStatus.SUCCEEDED


async def test_a_reset_database_never_overwrites_older_pictures(
    service: ImagineService, settings: Settings
) -> None:
    old = settings.effective_output_dir() / "job-1"
    old.mkdir(parents=True)
    (old / "variant-1.png").write_bytes(b"an older picture")
    outcome = await service.imagine(RequestedOptions(prompt="a red circle", variants=1), CLI)
    assert outcome.job_id == 1
    assert (old / "variant-1.png").read_bytes() == b"an older picture"
    assert outcome.images[0].path is not None
    assert outcome.images[0].path.parent.name.startswith("job-1-")


def test_the_model_memory_budget_is_the_setting_or_half_the_ram_on_a_cpu() -> None:
    from generation.model_pool import memory_budget

    assert memory_budget(2.5, "cpu") == 2_500_000_000
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory_budget(0, "cpu") == int(ram * 0.5)


def test_the_worker_leaves_the_bot_a_core_unless_told_otherwise() -> None:
    assert cpu_threads(None, cores=2) == 1
    assert cpu_threads(None, cores=1) == 1
    assert cpu_threads(None, cores=16) == 15
    assert cpu_threads(2, cores=2) == 2  # SDBOT_TORCH_THREADS decides when it is set


async def test_a_cpu_worker_draws_on_every_core_but_one(model_dir: Path) -> None:
    supervisor = WorkerSupervisor(WorkerSpec(model=str(model_dir), device="cpu"))
    try:
        ready = await supervisor.start()
    finally:
        await supervisor.close()
    assert ready.cpu_threads == max(1, usable_cores() - 1)
