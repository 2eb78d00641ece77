"""The scoring service: claims in, scores with reasons, CARCs, factors and fixes out.

Batch scoring, the API and the demo call :meth:`ScoringService.score`; it calls the one predict
path of the fitted pipeline (:func:`training.model.predict`), so every surface gives the same
number for the same claim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from features.claim_tables import ClaimTables
from features.codes import code_tables
from serving.explain import Factor, explain_batch
from training.model import Prediction, predict, top_columns


@dataclass(frozen=True)
class RiskBands:
    """Probability thresholds for the bands a billing team works by."""

    medium: float = 0.15
    high: float = 0.35

    def band(self, probability: float) -> str:
        if probability >= self.high:
            return "high"
        if probability >= self.medium:
            return "medium"
        return "low"

    def threshold_text(self, band: str) -> str:
        return {
            "high": f">= {self.high:.2f}",
            "medium": f">= {self.medium:.2f} and < {self.high:.2f}",
            "low": f"< {self.medium:.2f}",
        }[band]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    alias: str | None
    uri: str
    training_period: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ClaimScore:
    claim_id: str
    denial_probability: float
    risk_band: str
    risk_band_threshold: str
    likely_reasons: list[dict[str, object]]
    likely_carcs: list[dict[str, object]]
    factors: list[Factor]
    suggested_fix: str | None
    model_version: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ScoringService:
    """Scores claims with a loaded pipeline. Built once per model; safe to share across threads.

    Code-table wording (CARC descriptions, category labels and fixes) is looked up once here
    into dictionaries: per-claim lookups in the pandas tables cost more than the model itself.
    """

    def __init__(self, pipeline: Pipeline, info: ModelInfo, bands: RiskBands | None = None):
        self.pipeline = pipeline
        self.info = info
        self.bands = bands or RiskBands()
        self._codes = code_tables()
        categories = self._codes.reason_categories
        self._labels: dict[str, str] = {}
        self._category_fixes: dict[str, str] = {
            str(c): str(f) for c, f in categories["suggested_fix"].items()
        }
        self._carc_texts: dict[str, str] = {
            str(c): str(d) for c, d in self._codes.carc["description"].items()
        }
        self._threshold_texts = {b: self.bands.threshold_text(b) for b in ("high", "medium", "low")}
        self._prepare_explanations()

    def _prepare_explanations(self) -> None:
        """Explain an empty batch once, so the model builds its TreeSHAP tables now.

        Building them takes about a second for a production model; done here (at load, in the
        app's lifespan) rather than inside the first explained request.
        """
        model = self.pipeline.named_steps.get("model")
        names = getattr(model, "feature_names_in_", None)
        if model is None or names is None or not hasattr(model, "contributions"):
            return
        model.contributions(pd.DataFrame(np.zeros((0, len(names))), columns=list(names)))

    def score(self, tables: ClaimTables, explain: bool = True, top_k: int = 5) -> list[ClaimScore]:
        """Score every claim in ``tables`` (row order kept)."""
        if len(tables) == 0:
            return []
        prediction = predict(self.pipeline, tables)
        view = self._view(prediction)
        factors = self._factors(prediction, top_k) if explain else None
        reasons, carcs = view.reasons(), view.carcs()
        probabilities, bands = view.probabilities.tolist(), view.bands.tolist()
        scores = []
        for i, claim_id in enumerate(view.claim_ids):
            claim_factors = factors[i] if factors is not None else []
            scores.append(
                ClaimScore(
                    claim_id=claim_id,
                    denial_probability=probabilities[i],
                    risk_band=bands[i],
                    risk_band_threshold=self._threshold_texts[bands[i]],
                    likely_reasons=[
                        {"category": c, "label": self._label(c), "probability": p}
                        for c, p in reasons[i]
                    ],
                    likely_carcs=[
                        {"code": c, "description": self._carc_text(c), "probability": p}
                        for c, p in carcs[i]
                    ],
                    factors=claim_factors,
                    suggested_fix=self._suggested_fix(claim_factors, reasons[i], bands[i]),
                    model_version=self.info.version,
                )
            )
        return scores

    def score_frame(
        self, tables: ClaimTables, explain: bool = False, top_k: int = 5
    ) -> pd.DataFrame:
        """Scores as a flat table (batch output): one row per claim.

        Built column by column from the same prediction :meth:`score` uses (no per-claim
        objects), because batch scoring runs over hundreds of thousands of claims.
        """
        if len(tables) == 0:
            return pd.DataFrame(columns=["claim_id", "denial_probability", "risk_band"])
        prediction = predict(self.pipeline, tables)
        view = self._view(prediction)
        factors = self._factors(prediction, top_k) if explain else None
        frame = pd.DataFrame(
            {
                "claim_id": view.claim_ids,
                "denial_probability": view.probabilities,
                "risk_band": view.bands,
                "likely_reason": view.reason_codes[:, 0] if view.top else None,
            }
        )
        columns: dict[str, object] = {}
        for name, codes, probs in (
            ("reason", view.reason_codes, view.reason_probs),
            ("carc", view.carc_codes, view.carc_probs),
        ):
            for i in range(codes.shape[1]):
                columns[f"{name}_{i + 1}"] = codes[:, i]
                columns[f"{name}_{i + 1}_probability"] = probs[:, i]
        if factors is not None:
            for i in range(max((len(f) for f in factors), default=0)):
                picked = [f[i] if len(f) > i else None for f in factors]
                columns[f"factor_{i + 1}"] = [
                    f"{f.field}: {f.description}" if f else None for f in picked
                ]
                columns[f"factor_{i + 1}_contribution"] = [
                    f.contribution if f else None for f in picked
                ]
                columns[f"factor_{i + 1}_fix"] = [f.fix if f else None for f in picked]
        columns["suggested_fix"] = self._suggested_fixes(view, factors)
        columns["model_version"] = np.full(len(frame), self.info.version, dtype=object)
        return pd.concat([frame, pd.DataFrame(columns)], axis=1)

    # -- helpers -----------------------------------------------------------------------------
    def _view(self, prediction: Prediction) -> _PredictionView:
        """Rounded probabilities, bands and top-3 reasons/CARCs, computed for the whole batch."""
        probabilities = np.round(prediction.denial_probability.astype(np.float64), 4)
        bands = np.where(
            probabilities >= self.bands.high,
            "high",
            np.where(probabilities >= self.bands.medium, "medium", "low"),
        )
        reason_codes, reason_probs = _top(prediction.reason_probs, 3)
        carc_codes, carc_probs = _top(prediction.carc_probs, 3)
        return _PredictionView(
            claim_ids=prediction.claim_ids.astype(str).astype(object),
            probabilities=probabilities,
            bands=bands,
            reason_codes=reason_codes,
            reason_probs=reason_probs,
            carc_codes=carc_codes,
            carc_probs=carc_probs,
        )

    def _factors(self, prediction: Prediction, top_k: int) -> list[list[Factor]]:
        contributions = self.pipeline.named_steps["model"].contributions(prediction.matrix)
        return explain_batch(contributions, prediction.matrix, prediction.context, top_k)

    def _suggested_fixes(
        self, view: _PredictionView, factors: list[list[Factor]] | None
    ) -> np.ndarray:
        """:meth:`_suggested_fix` for a whole batch, by array operations where possible."""
        by_reason = np.full(len(view.claim_ids), None, dtype=object)
        if view.top:
            top = view.reason_codes[:, 0]
            for category in set(top.tolist()):
                by_reason[top == category] = self._category_fixes.get(category) or None
        fixes = by_reason
        fixes[view.bands == "low"] = None
        if factors is not None:
            for i, claim_factors in enumerate(factors):
                fix = next((f.fix for f in claim_factors if f.fix), None)
                if fix is not None:
                    fixes[i] = fix
        return fixes

    def _suggested_fix(
        self, factors: list[Factor], reasons: list[tuple[str, float]], band: str
    ) -> str | None:
        """The first factor's fix; else, for a medium/high risk, the top reason's usual fix."""
        fix = next((f.fix for f in factors if f.fix), None)
        if fix is None and reasons and band != "low":
            fix = self._category_fixes.get(reasons[0][0]) or None
        return fix

    def _label(self, category: str) -> str:
        label = self._labels.get(category)
        if label is None:
            label = self._labels[category] = self._codes.category_label(category)
        return label

    def _carc_text(self, code: str) -> str:
        return self._carc_texts.get(code.strip().upper(), "other / less common CARC")


@dataclass
class _PredictionView:
    """One batch's scores as arrays (top-k codes and probabilities are ``(n, k)``)."""

    claim_ids: np.ndarray
    probabilities: np.ndarray
    bands: np.ndarray
    reason_codes: np.ndarray
    reason_probs: np.ndarray
    carc_codes: np.ndarray
    carc_probs: np.ndarray

    @property
    def top(self) -> int:
        return int(self.reason_codes.shape[1])

    def reasons(self) -> list[list[tuple[str, float]]]:
        return _pairs(self.reason_codes, self.reason_probs)

    def carcs(self) -> list[list[tuple[str, float]]]:
        return _pairs(self.carc_codes, self.carc_probs)


def _top(probs: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most likely classes per row and their probabilities (rounded to 4 places).

    The same ranking as :meth:`training.model.Prediction.top_reasons`, done with array
    operations: building per-claim tuples first cost seconds on large batches.
    """
    values = probs.to_numpy(dtype=np.float64)
    columns = np.asarray([str(c) for c in probs.columns], dtype=object)
    order = top_columns(values, k)
    return columns[order], np.round(np.take_along_axis(values, order, axis=1), 4)


def _pairs(codes: np.ndarray, probs: np.ndarray) -> list[list[tuple[str, float]]]:
    return [
        list(zip(c, p, strict=True)) for c, p in zip(codes.tolist(), probs.tolist(), strict=True)
    ]
