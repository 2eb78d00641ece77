"""Session fixtures: one small simulated practice and one model trained on it, shared by the
integration, behavioural and serving tests (simulating and training once keeps the suite fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.utils.registry import SmallRegistry, register_small_champion
from training.estimator import BoosterParams

TEST_CLAIMS = 24_000
TEST_SEED = 11


@dataclass
class TrainedWorld:
    sim_dir: Path
    tracking_uri: str
    outcome: object
    model_uri: str
    local_copies: Path
    """Where an API serving this model keeps its last good copy (not the project's models/)."""


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulator import SimulationConfig, simulate, write_simulation

    out = tmp_path_factory.mktemp("sim") / "data"
    write_simulation(simulate(SimulationConfig(n_claims=TEST_CLAIMS, seed=TEST_SEED)), out)
    return out


@pytest.fixture(scope="session")
def trained(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedWorld:
    from training.train import TrainSettings, run_training

    work = tmp_path_factory.mktemp("train")
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    settings = TrainSettings(
        dataset=sim_dir,
        out_dir=work / "out",
        booster=BoosterParams(max_rounds=400, num_leaves=31),
        shap_sample=1000,
    )
    outcome = run_training(settings, tracking_uri)
    return TrainedWorld(
        sim_dir, tracking_uri, outcome, "models:/denial-risk@champion", work / "last-good"
    )


@pytest.fixture(scope="session")
def small_registry(tmp_path_factory: pytest.TempPathFactory) -> SmallRegistry:
    """A sqlite registry whose champion is the real pipeline fitted on 800 simulated claims
    (seconds, not minutes): for tests of loading and serving. A test that damages its files
    puts them back."""
    return register_small_champion(tmp_path_factory.mktemp("small-registry"))
