"""The UNet's forward as the fast path runs it: whole or shallow (DeepCache), compiled or not.

:class:`FastUNet` stands in for a loaded UNet's ``forward`` (an instance attribute, so the
pipelines that share the UNet, ``from_pipe`` ones included, all go through it, and its config,
adapters and weights stay where diffusers looks for them). With ``torch.compile`` on, the
whole and the shallow evaluations are each compiled with static shapes: every new shape (a
batch size, a picture size, guidance on or off) compiles once, and the time of that first
call is kept in ``compile_ms`` and logged. The caller pads batches to a few sizes
(``generation.fast_path.call_pipeline``) so that the queue's batches reuse those graphs.
Imported only by the worker: it imports torch.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import torch

from generation.deepcache import DeepCache, shallow_forward

log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 64  # graphs per compiled function: sizes × batch sizes × guidance on/off


class FastUNet:
    """Stands in for ``unet.forward``; install it with :meth:`install`, find it with :meth:`of`."""

    def __init__(self, unet: Any, interval: int, compile_backend: str | Any | None) -> None:
        self.unet = unet
        self.forward = unet.forward  # diffusers' own, bound
        self.cache = DeepCache(unet, interval)
        self.compile_backend = compile_backend
        self.compile_ms: dict[str, float] = {}  # "whole 2x4x64x64" → the first call's ms
        # A batch with LoRAs runs uncompiled: compiled graphs guard on each adapter's weight
        # and on the set of adapters, so every new weight would recompile (PipelineRunner sets
        # it per batch).
        self.eager = False
        self._shallow_eager: Any = functools.partial(shallow_forward, unet)
        self._whole: Any = self.forward
        self._shallow: Any = functools.partial(shallow_forward, unet)
        if compile_backend is not None:
            _raise_recompile_limit()
            self._whole = torch.compile(self.forward, backend=compile_backend, dynamic=False)
            self._shallow = torch.compile(self._shallow, backend=compile_backend, dynamic=False)

    @classmethod
    def install(
        cls, unet: Any, *, interval: int = 0, compile_backend: str | Any | None = None
    ) -> FastUNet:
        """``unet``'s FastUNet, installed the first time (a later call sets its interval)."""
        fast = cls.of(unet)
        if fast is None:
            fast = cls(unet, interval, compile_backend)
            unet.forward = fast  # an instance attribute: nn.Module.__call__ calls it
        fast.cache.interval = interval
        return fast

    @staticmethod
    def of(unet: Any) -> FastUNet | None:
        found = vars(unet).get("forward") if hasattr(unet, "__dict__") else None
        return found if isinstance(found, FastUNet) else None

    @property
    def interval(self) -> int:
        return self.cache.interval

    @interval.setter
    def interval(self, value: int) -> None:
        self.cache.interval = value

    def begin(self) -> None:
        """A new pipeline call: the deep features of the last one are not reused."""
        self.cache.begin()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.cache(self._timed_whole, self._timed_shallow, *args, **kwargs)

    def _timed_whole(self, *args: Any, **kwargs: Any) -> Any:
        if self.eager:
            return self.forward(*args, **kwargs)
        return self._first_timed("whole", self._whole, args, kwargs)

    def _timed_shallow(self, *args: Any, **kwargs: Any) -> Any:
        if self.eager:
            return self._shallow_eager(*args, **kwargs)
        return self._first_timed("shallow", self._shallow, args, kwargs)

    def _first_timed(
        self, path: str, run: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self.compile_backend is None:
            return run(*args, **kwargs)
        sample = args[0] if args else kwargs["sample"]
        key = f"{path} {'x'.join(str(side) for side in sample.shape)}"
        if key in self.compile_ms:
            return run(*args, **kwargs)
        started = time.perf_counter()
        output = run(*args, **kwargs)
        if sample.device.type == "cuda":
            torch.cuda.synchronize(sample.device)
        self.compile_ms[key] = (time.perf_counter() - started) * 1000
        log.info("UNet compiled for %s ◆ %.0f ms", key, self.compile_ms[key])
        return output


def _raise_recompile_limit() -> None:
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
