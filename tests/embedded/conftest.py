"""Fixtures for the embedded model: one tiny smoke training shared by the tests that need it."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.embedded.train import TrainConfig, train

# numpy 2.4 warns inside diffusers' DPM++ `set_timesteps` (torch tensor passed to np.array).
DPM_NUMPY_WARNING = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def smoke_config(out: Path, seed: int = 0) -> TrainConfig:
    """A few steps of the real recipe on a handful of scenes, on one thread.

    One thread whatever an earlier test left torch with: the thread count splits CPU
    reductions, so the determinism test compares trainings only at the same count.
    """
    return TrainConfig(
        out=out,
        seed=seed,
        dataset_size=48,
        captions_per_scene=2,
        vae_steps=2,
        vae_batch=4,
        unet_steps=3,
        unet_batch=4,
        warmup_steps=1,
        log_every=1,
        threads=1,
    )


@pytest.fixture(scope="session")
def smoke_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(smoke_config(tmp_path_factory.mktemp("smoke") / "model"))
