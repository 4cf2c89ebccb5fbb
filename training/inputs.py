"""What every training job is given, locally or on SageMaker: channels and hyperparameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from training import data as data_module
from training.train import DEFAULT_MIN_SAMPLES_LEAF, DEFAULT_N_ESTIMATORS

# SageMaker channel name -> the notebook's split name in file names and prep keys.
CHANNELS: Mapping[str, str] = {"train": "train", "validation": "val", "test": "test"}


# A job's forests are seeded, so retraining the same data gives the same model; train.py run by hand is not
# (its DEFAULT_RANDOM_STATE). None here sends no --random-state, leaving the script's default.
JOB_RANDOM_STATE = 0


@dataclass(frozen=True)
class Hyperparameters:
    """The script's hyperparameters (its defaults, from ``training/train.py``), as a job passes them."""

    n_estimators: int = DEFAULT_N_ESTIMATORS
    min_samples_leaf: int = DEFAULT_MIN_SAMPLES_LEAF
    random_state: int | None = JOB_RANDOM_STATE

    def for_city(self, city: str) -> dict[str, str | int]:
        """The script's hyperparameters by their CLI names (what SageMaker passes as ``--name value``)."""
        values: dict[str, str | int] = {
            "n-estimators": self.n_estimators,
            "min-samples-leaf": self.min_samples_leaf,
            "model-name": city,
        }
        if self.random_state is not None:
            values["random-state"] = self.random_state
        return values

    def for_shard(self, job: str) -> dict[str, str | int]:
        """``train.py --segments``: each segment's model is named after its city by the script itself."""
        values = self.for_city("shard")
        del values["model-name"]
        return {**values, "segments": "true", "job-name": job}


def channel_dirs(city_dir: Path) -> dict[str, Path]:
    return {channel: city_dir / "input" / "data" / channel for channel in CHANNELS}


def write_inputs(city_data: data_module.CityData, city_dir: Path) -> dict[str, Path]:
    """Write the city's splits into its channel directories; returns split -> CSV path."""
    dirs = channel_dirs(city_dir)
    return data_module.write_city_csvs(city_data, {CHANNELS[channel]: path for channel, path in dirs.items()})
