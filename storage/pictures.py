"""Picture files that appear only with their record.

A job's PNGs are written into a hidden staging folder (``.partial-UID``), the outcome is
recorded with the paths they will have, and only then is the folder renamed into place, in one
step. A locked database, a full disk or a crash before the commit leaves at most a staging
folder, never a picture without a row; :func:`sweep` (``sdbot recover``) removes what such a
fault left, and finishes the rename of a folder whose row did commit.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STAGING_PREFIX = ".partial-"
_JOB_FOLDER = re.compile(r"job-\d+(-[0-9a-f]{8})?")


@dataclass(frozen=True)
class StagedPictures:
    """A job's files, written but not yet visible under their final names."""

    staging: Path
    final: Path

    def path_of(self, name: str) -> Path:
        """Where a file will be once published (what the record stores)."""
        return self.final / name

    def write(self, name: str, data: bytes) -> None:
        (self.staging / name).write_bytes(data)

    def publish(self) -> None:
        """The record committed: the folder takes its final name."""
        self.staging.rename(self.final)

    def discard(self) -> None:
        """Nothing was recorded: the files go."""
        shutil.rmtree(self.staging, ignore_errors=True)


def stage(output_dir: Path, job_id: int, uid: str) -> StagedPictures:
    """A staging folder for a job's files, and the final folder they will move to:
    ``job-ID``, or ``job-ID-UID8`` when a reset database hands out an id again."""
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"job-{job_id}"
    if final.exists():  # never overwrite older pictures
        final = output_dir / f"job-{job_id}-{uid[:8]}"
    staging = output_dir / f"{STAGING_PREFIX}{uid}"
    staging.mkdir()
    return StagedPictures(staging, final)


@dataclass(frozen=True)
class StagedState:
    """What the database says about a staging folder's job."""

    recorded: bool  # its outcome committed with these files
    final: Path | None  # where its record says the files are
    busy: bool  # a live process holds the open job: leave it alone


@dataclass
class SweepReport:
    published: list[Path]  # staging folders whose record committed, moved into place
    removed: list[Path]  # staging folders and unrecorded files, deleted


def sweep(
    output_dir: Path,
    recorded: Iterable[str],
    staged_state: Callable[[str], StagedState],
) -> SweepReport:
    """Cleans what a crash or a fault left in ``output_dir``.

    ``recorded``: every image path the database holds; a PNG in a ``job-*`` folder that no
    record names (by its folder and file name, so relative and absolute paths agree) is
    deleted: it is a picture that would trace to nothing, or to another job. Staging folders
    are published when their record committed, left alone while a live process holds their
    job, and deleted otherwise.
    """
    report = SweepReport([], [])
    if not output_dir.is_dir():
        return report
    names = {(Path(path).parent.name, Path(path).name) for path in recorded}
    for entry in sorted(output_dir.iterdir()):
        if entry.is_dir() and entry.name.startswith(STAGING_PREFIX):
            state = staged_state(entry.name.removeprefix(STAGING_PREFIX))
            if state.busy:
                continue
            if state.recorded and state.final is not None and not state.final.exists():
                entry.rename(state.final)
                report.published.append(state.final)
                log.warning("published %s: its record had committed", state.final)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            report.removed.append(entry)
        elif entry.is_dir() and _JOB_FOLDER.fullmatch(entry.name):
            for file in sorted(entry.iterdir()):
                if file.is_file() and (entry.name, file.name) not in names:
                    file.unlink()
                    report.removed.append(file)
            if not any(entry.iterdir()):
                entry.rmdir()
    for path in report.removed:
        log.warning("removed %s: no record names it", path)
    return report


# Deleting a purged job's pictures (storage.retention): the files, then the folders whole.


def delete_files(paths: Iterable[str], output_dir: Path | None) -> int:
    """Deletes the recorded image files; returns how many there were. A stored path may be
    relative to where the process ran: the file is also looked for in ``output_dir`` by its
    job folder and name (as ``pictures.sweep`` matches them). A job folder left empty goes."""
    deleted = 0
    emptied: set[Path] = set()
    for stored in paths:
        path = Path(stored)
        candidates = {path}
        if output_dir is not None:
            candidates.add(output_dir / path.parent.name / path.name)
        for candidate in candidates:
            try:
                candidate.unlink()
            except FileNotFoundError:
                continue
            deleted += 1
            emptied.add(candidate.parent)
    for folder in emptied:  # once each, after its files (trying after each file mostly fails)
        with contextlib.suppress(OSError):  # not empty (a file not recorded), or not ours
            folder.rmdir()
    return deleted


def delete_pictures(paths: Iterable[str], output_dir: Path | None, folders: list[Path]) -> int:
    """Deletes the recorded files and the jobs' ``folders`` (``job_folders``) whole; returns how
    many files there were. Files take their names only after the outcome committed, so a purge
    in between finds them in ``.partial-UID``: staging goes first, job folders last, so a
    rename landing in between is caught, and none can land after. What escapes anyway (a late
    writer) the next ``sdbot recover`` sweep removes: a purged record names no file."""
    staging = [folder for folder in folders if folder.name.startswith(STAGING_PREFIX)]
    final = [folder for folder in folders if not folder.name.startswith(STAGING_PREFIX)]
    deleted = sum(_remove_folder(folder) for folder in staging)
    deleted += delete_files(paths, output_dir)
    return deleted + sum(_remove_folder(folder) for folder in final)


def job_folders(
    output_dir: Path | None, job_id: int, uid: str, plain_named: Container[int]
) -> list[Path]:
    """Where a job's files are, in the order they go: its staging folder, then its final one:
    ``job-ID-UID8`` (a reset database handed the id out again: the name is this job's alone),
    and ``job-ID`` when its recorded paths name it (``plain_named``: ``plainly_named``'s ids;
    else it may hold an older database's job of the same id, not this purge's to delete)."""
    if output_dir is None:
        return []
    plain = f"job-{job_id}"
    folders = [output_dir / f"{STAGING_PREFIX}{uid}", output_dir / f"{plain}-{uid[:8]}"]
    if job_id in plain_named:
        folders.append(output_dir / plain)
    return folders


def plainly_named(recorded: Iterable[tuple[int, str]]) -> set[int]:
    """The jobs whose recorded paths sit in a plain ``job-ID`` folder (once for a batch: asked
    job by job over every path, it grew with the batch's square)."""
    return {job_id for job_id, path in recorded if Path(path).parent.name == f"job-{job_id}"}


def _remove_folder(folder: Path) -> int:
    """Removes a folder and what is in it; returns how many files it held."""
    if not folder.is_dir():
        return 0
    files = sum(1 for entry in folder.iterdir() if entry.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return files
