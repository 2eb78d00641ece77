"""Claims simulator: a synthetic practice whose claims are denied by known causal mechanisms.

A stand-in for a practice's real data. It writes the same contract tables as X12 ingest
(:mod:`features.schema`) plus a ground-truth table the models never read: each claim's exact
denial probability and its split by root cause, and each denial's recovery probability.

>>> from simulator import SimulationConfig, simulate, write_simulation
>>> result = simulate(SimulationConfig(n_claims=20_000, seed=1))  # doctest: +SKIP
>>> drawn = simulate(SimulationConfig(n_claims=20_000, seed=1, world_seed=3))  # doctest: +SKIP
"""

from simulator.draw import draw_world_spec
from simulator.engine import SimulationConfig, SimulationResult, simulate
from simulator.output import format_summary, write_simulation
from simulator.spec import DriftEvent, PayerSpec, WorldSpec, default_world_spec

__all__ = [
    "DriftEvent",
    "PayerSpec",
    "SimulationConfig",
    "SimulationResult",
    "WorldSpec",
    "default_world_spec",
    "draw_world_spec",
    "format_summary",
    "simulate",
    "write_simulation",
]
