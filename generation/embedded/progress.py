"""Progress lines for long loops: step, loss, it/s and ETA, logged every few steps."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class Progress:
    """Logs `name ◆ step i/N ◆ loss x ◆ r it/s ◆ ETA` every `every` steps and at the end."""

    def __init__(self, name: str, total: int, every: int) -> None:
        if total < 0 or every < 1:
            raise ValueError(f"need total >= 0 and every >= 1, got total={total}, every={every}")
        self.name = name
        self.total = total
        self.every = every
        self._start = time.perf_counter()
        self._loss_sum = 0.0
        self._loss_count = 0

    def update(self, step: int, loss: float) -> None:
        """Record the loss of `step` (1-based) and log when it is time."""
        self._loss_sum += loss
        self._loss_count += 1
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self._start
        rate = step / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        log.info(
            "%s ◆ step %d/%d ◆ loss %.4f ◆ %.2f it/s ◆ ETA %s ◆ elapsed %s",
            self.name,
            step,
            self.total,
            self._loss_sum / self._loss_count,
            rate,
            format_duration(eta),
            format_duration(elapsed),
        )
        self._loss_sum = 0.0
        self._loss_count = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
