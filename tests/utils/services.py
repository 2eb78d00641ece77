"""Stand-ins for the services the API loads: no model to train, and a request can be held."""

from __future__ import annotations

import threading

from features.claim_tables import ClaimTables
from serving.explain import Factor
from serving.service import ClaimScore, ModelInfo, RiskBands


class FakeService:
    """A stand-in with the ScoringService surface the API uses; can hold a request."""

    def __init__(self, version: str, gate: threading.Event | None = None) -> None:
        self.info = ModelInfo("denial-risk", version, "champion", "models:/denial-risk@champion")
        self.bands = RiskBands()
        self.history = None  # no history data set behind it
        self.gate = gate
        self.entered = threading.Event()

    def score(self, tables: ClaimTables, explain: bool = True, top_k: int = 5) -> list[ClaimScore]:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test never released the request"
        factor = Factor("payer", "payer 60054", 0.1, "raises risk", False, None, None)
        return [
            ClaimScore(cid, 0.5, "high", ">= 0.35", [], [], [factor], None, self.info.version)
            for cid in tables.claims["claim_id"]
        ]
