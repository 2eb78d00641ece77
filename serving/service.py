"""The scoring service: claims in, scores with reasons, CARCs, factors and fixes out.

Batch scoring, the API and the demo call :meth:`ScoringService.score`; it calls the one predict
path of the fitted pipeline (:func:`training.model.predict`), so every surface gives the same
number for the same claim.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.pipeline import Pipeline

from features.claim_tables import ClaimTables
from features.codes import code_tables
from serving.explain import (
    CONTEXT,
    FACTOR_GROUPS,
    FIX_ON_CLAIM,
    Explanations,
    Factor,
    explain,
    fix_reasons,
)
from serving.what_if import TOP_FIXES, WhatIf, fixes_first, what_ifs
from training.history_store import HistoryAsOf
from training.model import Prediction, predict, top_columns

Progress = Callable[[int, int], None]
"""Called with (claims done, claims in all) as a long batch advances."""

EXPLAIN_BLOCK = 10_000
"""Claims explained at a time: a progress report every few seconds, and TreeSHAP's arrays
for a block (not for a million claims at once) in memory."""


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
    local_copy_saved_at: dt.datetime | None = None
    """When the model was read from the last good local copy the API keeps (the registry could
    not be reached), the time that copy was saved; ``None`` for a model read from its URI."""


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
    suggested_fix_reason: str | None = None
    """The denial category the suggested fix addresses: the claim's likely reason."""
    factor_groups: list[dict[str, object]] = field(default_factory=list)
    """Each factor group (fix on this claim, context) with its label and the log-odds of all
    of the claim's fields in it; empty when not explained."""
    what_if: list[WhatIf] = field(default_factory=list)
    """The claim's fixes made and the claim scored again, most risk removed first."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ScoringService:
    """Scores claims with a loaded pipeline. Built once per model; safe to share across threads.

    Code-table wording (CARC descriptions, category labels and fixes) is looked up once here
    into dictionaries: per-claim lookups in the pandas tables cost more than the model itself.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        info: ModelInfo,
        bands: RiskBands | None = None,
        history: HistoryAsOf | None = None,
    ):
        self.pipeline = pipeline
        self.info = info
        self.history = history
        """How recent the history the claims are scored with is (``None``: not known)."""
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

    def score(
        self,
        tables: ClaimTables,
        explain: bool = True,
        top_k: int = 5,
        what_if: bool = True,
        today: dt.date | None = None,
    ) -> list[ClaimScore]:
        """Score every claim in ``tables`` (row order kept).

        ``explain``: factors (in their groups) and, with ``what_if``, each claim's first
        :data:`~serving.what_if.TOP_FIXES` fixes made on it and the claim scored again
        (:func:`~serving.what_if.what_ifs`; ``today``, by default the date now, is the day a
        "submit today" fix would send it).
        """
        if len(tables) == 0:
            return []
        prediction = predict(self.pipeline, tables, keep_matrix=explain, compiled=True)
        view = self._view(prediction)
        explained = self._factors(prediction, view, top_k) if explain else None
        changes = (
            self._what_ifs(tables, explained, view, today)
            if explained is not None and what_if
            else None
        )
        reasons, carcs = view.reasons(), view.carcs()
        probabilities, bands = view.probabilities.tolist(), view.bands()
        groups = _group_lists(explained) if explained is not None else None
        scores = []
        for i, claim_id in enumerate(view.claim_ids):
            claim_factors = explained.factors[i] if explained is not None else []
            fix, fix_reason = self._suggested_fix(claim_factors, reasons[i], bands[i])
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
                    suggested_fix=fix,
                    model_version=self.info.version,
                    suggested_fix_reason=fix_reason,
                    factor_groups=groups[i] if groups is not None else [],
                    what_if=changes[i] if changes is not None else [],
                )
            )
        return scores

    def score_frame(
        self,
        tables: ClaimTables,
        explain: bool = False,
        top_k: int = 5,
        progress: Progress | None = None,
        what_if: bool = True,
        today: dt.date | None = None,
    ) -> pd.DataFrame:
        """Scores as a flat table (batch output): one row per claim.

        Built column by column from the same prediction :meth:`score` uses (no per-claim
        objects), because batch scoring runs over hundreds of thousands of claims. Text columns
        are built from their few distinct values (:func:`_text_column`). Explaining takes most
        of an explained batch's time: ``progress(claims explained, claims)`` reports it.
        Explained, the table has each factor's group, the two groups' contributions and (with
        ``what_if``) ``what_if_1`` .. ``what_if_3``: a fix made and the probability after it.
        """
        if len(tables) == 0:
            return pd.DataFrame(columns=["claim_id", "denial_probability", "risk_band"])
        prediction = predict(self.pipeline, tables, keep_matrix=explain, compiled=True)
        view = self._view(prediction)
        explained = self._factors(prediction, view, top_k, progress) if explain else None
        changes = (
            self._what_ifs(tables, explained, view, today)
            if explained is not None and what_if
            else None
        )
        columns: dict[str, object] = {
            "claim_id": _id_column(tables.claims["claim_id"]),
            "denial_probability": view.probabilities,
            "risk_band": _text_column(_BAND_NAMES, view.band_codes),
            "likely_reason": (
                _text_column(view.reason_classes, view.reason_order[:, 0]) if view.top else None
            ),
        }
        for name, classes, order, probs in (
            ("reason", view.reason_classes, view.reason_order, view.reason_probs),
            ("carc", view.carc_classes, view.carc_order, view.carc_probs),
        ):
            for i in range(order.shape[1]):
                columns[f"{name}_{i + 1}"] = _text_column(classes, order[:, i])
                columns[f"{name}_{i + 1}_probability"] = probs[:, i]
        fixes, fix_reasons_ = self._suggested_fixes(
            view, explained.factors if explained is not None else None
        )
        if explained is not None:
            factors = explained.factors
            for i in range(max((len(f) for f in factors), default=0)):
                picked = [f[i] if len(f) > i else None for f in factors]
                columns[f"factor_{i + 1}"] = [
                    f"{f.field}: {f.description}" if f else None for f in picked
                ]
                columns[f"factor_{i + 1}_group"] = [f.group if f else None for f in picked]
                columns[f"factor_{i + 1}_contribution"] = [
                    f.contribution if f else None for f in picked
                ]
                columns[f"factor_{i + 1}_fix"] = [f.fix if f else None for f in picked]
            columns[f"{FIX_ON_CLAIM}_contribution"] = np.round(explained.fix_contribution, 4)
            columns[f"{CONTEXT}_contribution"] = np.round(explained.context_contribution, 4)
            if changes is not None:
                for k in range(TOP_FIXES):
                    picked_changes = [c[k] if len(c) > k else None for c in changes]
                    columns[f"what_if_{k + 1}"] = [c.change if c else None for c in picked_changes]
                    columns[f"what_if_{k + 1}_probability"] = [
                        c.probability if c else None for c in picked_changes
                    ]
        columns["suggested_fix"] = fixes
        columns["suggested_fix_reason"] = fix_reasons_
        columns["model_version"] = _text_column(
            np.array([self.info.version], dtype=object), np.zeros(len(tables), dtype=np.intp)
        )
        return pd.DataFrame(columns)

    # -- helpers -----------------------------------------------------------------------------
    def _view(self, prediction: Prediction) -> _PredictionView:
        """Rounded probabilities, bands and top-3 reasons/CARCs, computed for the whole batch."""
        probabilities = np.round(prediction.denial_probability.astype(np.float64), 4)
        band_codes = (probabilities >= self.bands.medium).astype(np.intp)
        band_codes += probabilities >= self.bands.high  # 0 low, 1 medium, 2 high
        reason_classes, reason_order, reason_probs = _top(
            prediction.reason_probs, 3, prediction.reason_order
        )
        carc_classes, carc_order, carc_probs = _top(prediction.carc_probs, 3, prediction.carc_order)
        return _PredictionView(
            raw_claim_ids=prediction.claim_ids,
            probabilities=probabilities,
            band_codes=band_codes,
            reason_classes=reason_classes,
            reason_order=reason_order,
            reason_probs=reason_probs,
            carc_classes=carc_classes,
            carc_order=carc_order,
            carc_probs=carc_probs,
        )

    def _factors(
        self,
        prediction: Prediction,
        view: _PredictionView,
        top_k: int,
        progress: Progress | None = None,
    ) -> Explanations:
        """Each claim's top factors and group contributions, in blocks of
        :data:`EXPLAIN_BLOCK` claims (each claim's are its own, whatever the block), with its
        likely reason (fields whose fix addresses it are fixable, see
        :func:`serving.explain.explain`); ``progress(done, total)`` after each block."""
        model = self.pipeline.named_steps["model"]
        whole = prediction.model_matrix()
        n = len(whole)
        likely = view.likely_reasons()
        factors: list[list[Factor]] = []
        fix_parts, context_parts = [], []
        for start in range(0, n, EXPLAIN_BLOCK):
            stop = min(n, start + EXPLAIN_BLOCK)
            matrix = whole.iloc[start:stop] if stop - start < n else whole
            context = {name: values[start:stop] for name, values in prediction.context.items()}
            contributions = model.contributions(matrix)
            block = explain(
                contributions, matrix, context, top_k, likely_reasons=likely[start:stop]
            )
            factors += block.factors
            fix_parts.append(block.fix_contribution)
            context_parts.append(block.context_contribution)
            if progress is not None:
                progress(stop, n)
        return Explanations(factors, np.concatenate(fix_parts), np.concatenate(context_parts))

    def _what_ifs(
        self,
        tables: ClaimTables,
        explained: Explanations,
        view: _PredictionView,
        today: dt.date | None,
    ) -> list[list[WhatIf]]:
        """Each claim's fixes made on it and the claim scored again by the same predict path
        (see :mod:`serving.what_if`); the claims' factors are put in the order of the risk
        their fixes remove (:func:`~serving.what_if.fixes_first`)."""

        def score(changed: ClaimTables) -> np.ndarray:
            prediction = predict(self.pipeline, changed, keep_matrix=False, compiled=True)
            return np.round(prediction.denial_probability.astype(np.float64), 4)

        changes = what_ifs(
            tables, explained.factors, view.probabilities, score, today or dt.date.today()
        )
        explained.factors = [
            fixes_first(factors, claim_changes, probability)
            for factors, claim_changes, probability in zip(
                explained.factors, changes, view.probabilities.tolist(), strict=True
            )
        ]
        return changes

    def _fixes_by_reason(self, view: _PredictionView) -> tuple[np.ndarray, np.ndarray]:
        """Each claim's fix from its top reason alone (none for a low risk), as the distinct
        fixes and each claim's position among them (the last: no fix)."""
        fixes = np.array(
            [*(self._category_fixes.get(str(c)) or None for c in view.reason_classes), None],
            dtype=object,
        )
        no_fix = len(fixes) - 1
        if not view.top:
            return fixes, np.full(len(view.probabilities), no_fix, dtype=np.intp)
        return fixes, np.where(view.band_codes == 0, no_fix, view.reason_order[:, 0])

    def _suggested_fixes(
        self, view: _PredictionView, factors: list[list[Factor]] | None
    ) -> tuple[object, object]:
        """:meth:`_suggested_fix` for a whole batch, as the two columns (fix, reason)."""
        fix_labels, fix_codes = self._fixes_by_reason(view)
        reason_labels = np.array([*view.reason_classes, None], dtype=object)
        no_reason = len(reason_labels) - 1
        reason_codes = (
            np.where(view.band_codes == 0, no_reason, view.reason_order[:, 0])
            if view.top
            else np.full(len(view.probabilities), no_reason, dtype=np.intp)
        )
        reasons = _text_column(reason_labels, reason_codes)
        if factors is None:
            return _text_column(fix_labels, fix_codes), reasons
        fixes = _values(fix_labels, fix_codes)
        likely = _values(reason_labels, reason_codes)
        for i, claim_factors in enumerate(factors):
            fix = _reason_fix(claim_factors, likely[i]) if likely[i] is not None else None
            if fix is not None:
                fixes[i] = fix
        return fixes, reasons

    def _suggested_fix(
        self, factors: list[Factor], reasons: list[tuple[str, float]], band: str
    ) -> tuple[str | None, str | None]:
        """For a medium or high risk, the fix of the claim's likely reason and that reason: the
        fix of the first factor whose fix addresses it, else that reason's usual fix. A
        low-risk claim gets none: it is sent as it is (its factors still say what raises its
        risk, with their fixes)."""
        if band == "low" or not reasons:
            return None, None
        reason = reasons[0][0]
        fix = _reason_fix(factors, reason) or self._category_fixes.get(reason) or None
        return fix, reason

    def _label(self, category: str) -> str:
        label = self._labels.get(category)
        if label is None:
            label = self._labels[category] = self._codes.category_label(category)
        return label

    def _carc_text(self, code: str) -> str:
        return self._carc_texts.get(code.strip().upper(), "other / less common CARC")


_BAND_NAMES = np.array(["low", "medium", "high"], dtype=object)
"""Risk bands by their code in :attr:`_PredictionView.band_codes`."""


def _reason_fix(factors: list[Factor], reason: str) -> str | None:
    """The fix of the claim's first factor (in the explanation's order) whose fix addresses
    ``reason``: the field that carries the claim's likely reason."""
    return next((f.fix for f in factors if f.fix and reason in fix_reasons(f.field)), None)


def _group_lists(explained: Explanations) -> list[list[dict[str, object]]]:
    """Each claim's factor groups with their labels and contributions (log-odds)."""
    fix = np.round(explained.fix_contribution, 4).tolist()
    context = np.round(explained.context_contribution, 4).tolist()
    return [
        [
            {"group": FIX_ON_CLAIM, "label": FACTOR_GROUPS[FIX_ON_CLAIM], "contribution": f},
            {"group": CONTEXT, "label": FACTOR_GROUPS[CONTEXT], "contribution": c},
        ]
        for f, c in zip(fix, context, strict=True)
    ]


@dataclass
class _PredictionView:
    """One batch's scores as arrays. Text is held as positions in its few distinct values
    (``*_classes``): top-k ``*_order`` and ``*_probs`` are ``(n, k)``."""

    raw_claim_ids: np.ndarray
    probabilities: np.ndarray
    band_codes: np.ndarray
    reason_classes: np.ndarray
    reason_order: np.ndarray
    reason_probs: np.ndarray
    carc_classes: np.ndarray
    carc_order: np.ndarray
    carc_probs: np.ndarray

    @property
    def top(self) -> int:
        return int(self.reason_order.shape[1])

    @property
    def claim_ids(self) -> list[str]:
        return [str(claim_id) for claim_id in self.raw_claim_ids.tolist()]

    def bands(self) -> list[str]:
        return _values(_BAND_NAMES, self.band_codes).tolist()

    def likely_reasons(self) -> np.ndarray:
        """Each claim's most likely denial category (``None`` when there are none)."""
        if not self.top:
            return np.full(len(self.probabilities), None, dtype=object)
        return _values(self.reason_classes, self.reason_order[:, 0])

    def reasons(self) -> list[list[tuple[str, float]]]:
        return _pairs(_values(self.reason_classes, self.reason_order), self.reason_probs)

    def carcs(self) -> list[list[tuple[str, float]]]:
        return _pairs(_values(self.carc_classes, self.carc_order), self.carc_probs)


def _top(
    probs: pd.DataFrame, k: int, ranked: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classes (column labels), each row's k most likely classes' positions among them, and
    their probabilities (rounded to 4 places).

    The same ranking as :meth:`training.model.Prediction.top_reasons`, done with array
    operations: building per-claim tuples first cost seconds on large batches. ``ranked``: the
    rows' top columns already found while predicting (:attr:`Prediction.reason_order`), used
    when they are at least ``k``.
    """
    values = probs.to_numpy(dtype=np.float64)
    classes = np.asarray([str(c) for c in probs.columns], dtype=object)
    k = min(k, values.shape[1])
    order = ranked[:, :k] if ranked is not None and ranked.shape[1] >= k else top_columns(values, k)
    return classes, order, np.round(np.take_along_axis(values, order, axis=1), 4)


def _pairs(codes: np.ndarray, probs: np.ndarray) -> list[list[tuple[str, float]]]:
    return [
        list(zip(c, p, strict=True)) for c, p in zip(codes.tolist(), probs.tolist(), strict=True)
    ]


def _values(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``labels[codes]`` as an object array (``labels`` may be empty only if ``codes`` is)."""
    return labels[codes] if len(labels) else np.full(codes.shape, None, dtype=object)


def _text_column(labels: np.ndarray, codes: np.ndarray) -> object:
    """``labels[codes]`` (``None`` labels missing) as a column of pandas' default text type.

    Built by pyarrow from the few distinct labels: an object column of 200,000 strings, which
    pandas would convert string by string, cost ~10 ms per column, a tenth of a large batch's
    post-processing. Where pandas' default text type is not pyarrow's, the object array.
    """
    dtype = _default_text_dtype()
    if not isinstance(dtype, pd.StringDtype) or dtype.storage != "pyarrow":
        return _values(labels, codes)
    distinct = pa.array(labels.tolist(), type=pa.large_string())
    return pd.array(distinct.take(pa.array(codes)), dtype=dtype)


def _id_column(claim_ids: pd.Series) -> object:
    """The claims' IDs as output text; a column already of the default text type as it is."""
    if claim_ids.dtype == _default_text_dtype():
        return claim_ids.array
    return claim_ids.astype(str).to_numpy(dtype=object)


@lru_cache(maxsize=1)
def _default_text_dtype() -> object:
    """The type pandas gives a column of Python strings (``str``, by pyarrow, in pandas 3)."""
    return pd.Series(np.array(["text"], dtype=object)).dtype
