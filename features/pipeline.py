"""The feature half of the fitted pipeline: claim tables in, model matrix out.

``ClaimFeatureTransformer`` is a scikit-learn transformer over :class:`ClaimTables`. ``fit``
learns only from the training period: which category levels are common enough to keep, and the
history state (see :mod:`features.history`). ``transform`` is pure. Training, batch scoring and
the API all call this one ``transform``.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor
from functools import lru_cache

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from features.claim_arrays import ClaimArrays, map_text
from features.claim_features import (
    CATEGORICAL_FEATURES,
    LINE_SLOTS,
    NUMERIC_CLAIM_FEATURES,
    claim_feature_columns,
)
from features.claim_tables import ClaimTables
from features.history import HISTORY_FEATURES, HistoryBatch, HistoryFeatures

OTHER_LEVEL = "__other__"
MISSING_LEVEL = "__missing__"

CONTEXT_COLUMNS: tuple[str, ...] = (
    "claim_id",
    *[f"procedure_{i}" for i in range(1, LINE_SLOTS + 1)],
    *[f"line_of_procedure_{i}" for i in range(1, LINE_SLOTS + 1)],
    *[f"modifiers_{i}" for i in range(1, LINE_SLOTS + 1)],
    "days_service_to_submission",
    "filing_limit_days",
    "payer_id",
    "payer_name",
    "payer_type",
    "frequency_code",
    "place_of_service",
    "provider_taxonomy",
    "patient_sex",
    "principal_dx",
    "principal_dx_category",
)
"""Claim values kept beside the matrix to word explanations (not model inputs): the matrix holds
categorical columns as level codes, explanations name the claim's own values."""

MATRIX_DTYPE = np.float32
"""The model matrix's type. Half of float64's memory (a million claims' ~400 columns are 1.6 GB,
not 3.2), and what LightGBM bins from either way; training and serving build it alike, and a
booster reads each value widened to float64 exactly, so no score depends on which reads it."""

_TRANSFORM_RANGE = 50_000
"""Claims whose features are built at a time by :meth:`ClaimFeatureTransformer.transform`."""

_FEW_CLAIMS = 64
"""Up to this many claims, level codes are looked up value by value (no factorising first)."""

Context = dict[str, np.ndarray]
"""Context columns by name, row-aligned with the matrix."""

# Which claim field a person would recognise behind each model column. Explanations and the
# SHAP summary add contributions up by these fields, so "payer" is one factor, not five columns.
_SOURCE_BY_PREFIX: tuple[tuple[str, str], ...] = (
    # Longest prefix first: the first that matches names the field.
    ("hist_payer_max_paid_lag", "days from service to submission"),
    ("hist_days_past_known_coverage_end", "patient eligibility"),
    ("hist_days_past_", "days from service to submission"),
    ("hist_payer_lag", "days from service to submission"),
    ("hist_lag_", "days from service to submission"),
    ("hist_diagnoses", "diagnosis supports procedure"),
    ("hist_dx_procedure", "diagnosis supports procedure"),
    ("hist_payer_frequency", "claim frequency (original/replacement)"),
    ("hist_payer_place", "place of service"),
    ("hist_payer_coverage", "other coverage (COB)"),
    ("hist_payer_patient", "patient eligibility"),
    ("hist_payer_specialty", "referral"),
    ("hist_payer_member_shape", "member ID"),
    ("hist_member_id_corrected", "member ID"),
    ("hist_person_", "member ID"),
    ("hist_days_since_paid_with_payer", "patient eligibility"),
    ("hist_facility_payer", "service facility"),
    ("hist_procedure_pair", "procedure combination and modifiers"),
    ("hist_payer_procedure_pair", "procedure combination and modifiers"),
    ("hist_pairs", "procedure combination and modifiers"),
    ("hist_procedure_set", "procedure combination and modifiers"),
    ("hist_payer_procedure_modifiers", "modifiers"),
    ("hist_payer_procedure_units", "units"),
    ("hist_payer_procedure_documents", "attachments, NDC, CLIA and referral"),
    ("hist_payer_procedure_auth", "prior authorization"),
    ("hist_payer_procedure_dx", "diagnosis supports procedure"),
    ("hist_procedure_dx", "diagnosis supports procedure"),
    ("hist_procedure_place", "place of service"),
    ("hist_procedure_patient", "patient age and sex"),
    ("hist_procedure_provider", "provider specialty"),
    ("hist_payer_procedure", "procedure"),
    ("hist_payer_family", "procedure"),
    ("hist_procedure_claims_this_year", "benefit limit (visits this year)"),
    ("hist_procedure", "procedure"),
    ("hist_lines", "procedure"),
    ("hist_patient_family_claims_this_year", "benefit limit (visits this year)"),
    ("hist_family_claims_this_year", "benefit limit (visits this year)"),
    ("hist_days_since_same_procedure", "frequency (days since the same procedure)"),
    ("hist_days_since_same_family", "frequency (days since the same procedure)"),
    ("hist_provider_payer_prior_claims", "rendering provider with this payer"),
    ("hist_provider_payer", "rendering provider with this payer"),
    ("hist_provider", "rendering provider"),
    ("hist_patient_payer", "patient eligibility"),
    ("hist_patient", "patient eligibility"),
    ("hist_same_service", "possible duplicate"),
    ("hist_evidence_", "denial history"),
    ("hist_payer", "payer"),
    ("hist_all", "payer"),
    ("procedure_family_", "procedure"),
    ("procedure_", "procedure"),
)
_SOURCE_BY_NAME: dict[str, str] = {
    "payer_id": "payer",
    "payer_type": "payer",
    "claim_filing_indicator": "payer",
    "place_of_service": "place of service",
    "provider_taxonomy": "provider specialty",
    "taxonomy_present": "provider specialty",
    "rendering_taxonomy_present": "provider specialty",
    "frequency_code": "claim frequency (original/replacement)",
    "is_replacement": "claim frequency (original/replacement)",
    "patient_sex": "patient sex",
    "patient_age": "patient age",
    "principal_dx_category": "diagnosis",
    "principal_dx_chapter": "diagnosis",
    "n_diagnoses": "diagnosis",
    "lines_without_dx_pointer": "diagnosis pointer",
    "n_lines": "number of service lines",
    "n_distinct_procedures": "number of service lines",
    "total_charge_log": "charges",
    "max_line_charge_log": "charges",
    "total_units": "units",
    "max_units": "units",
    "days_service_to_submission": "days from service to submission",
    "filing_limit_days": "days from service to submission",
    "days_past_filing_limit": "days from service to submission",
    "prior_auth_present": "prior authorization",
    "referral_present": "referral",
    "referring_npi_present": "referring provider NPI",
    "rendering_npi_present": "rendering provider NPI",
    "rendering_npi_valid": "rendering provider NPI",
    "billing_npi_valid": "billing provider NPI",
    "has_other_coverage": "other coverage (COB)",
    "medicare_age_not_medicare_plan": "patient eligibility",
    "em_with_procedure": "modifier 25 (E/M with procedure)",
    "em_with_procedure_no_mod25": "modifier 25 (E/M with procedure)",
    "any_modifier_25": "modifier 25 (E/M with procedure)",
    "multi_procedure_no_distinct_modifier": "modifier 59/X (distinct procedures)",
    "any_distinct_service_modifier": "modifier 59/X (distinct procedures)",
    "any_modifier_22": "modifiers",
    "any_laterality_modifier": "modifiers",
    "any_professional_technical_modifier": "modifiers",
    "has_unlisted_procedure": "unlisted procedure code",
    "payer_responsibility": "coordination of benefits (primary/secondary)",
    "patient_relationship": "patient's relationship to the subscriber",
    "delay_reason_code": "delay reason code (CLM20)",
    "related_causes": "accident or employment related (CLM11)",
    "other_payer_known": "other coverage (COB)",
    "other_payer_paid_present": "other payer's payment (2320 AMT*D)",
    "other_payer_paid_share": "other payer's payment (2320 AMT*D)",
    "patient_out_of_state": "patient's state",
    "service_facility_present": "service facility",
    "accident_date_present": "accident date",
    "days_onset_to_service": "onset date",
    "attachment_present": "attachments (PWK)",
    "attachment_sent": "attachments (PWK)",
    "note_present": "claim notes",
    "clia_present": "CLIA number",
    "line_auth_lines": "prior authorization",
    "lines_without_auth": "prior authorization",
    "ndc_lines": "NDC (drug identification)",
    "epsdt_referral": "EPSDT referral",
    "drug_line_without_ndc": "NDC (drug identification)",
    "lab_without_clia": "CLIA number",
    "ordered_service_without_orderer": "referring provider NPI",
    "unlisted_without_documentation": "unlisted procedure code",
    "modifier_22_without_documentation": "modifiers",
    "accident_without_date": "accident date",
    "onset_after_service": "onset date",
    "secondary_without_primary_payment": "other payer's payment (2320 AMT*D)",
    "telehealth_without_modifier": "modifiers",
    "routine_physical_to_medicare": "procedure",
}


def feature_source(feature: str) -> str:
    """The claim field behind a model column, in words a biller recognises."""
    if feature in _SOURCE_BY_NAME:
        return _SOURCE_BY_NAME[feature]
    for prefix, source in _SOURCE_BY_PREFIX:
        if feature.startswith(prefix):
            return source
    return feature


class ClaimFeatureTransformer(TransformerMixin, BaseEstimator):
    """Claim features + point-in-time history + categorical encoding.

    The matrix is all float32 (:data:`MATRIX_DTYPE`): a categorical column holds the position
    of the claim's value among the levels kept at fit (``levels_``), which LightGBM is told to
    treat as categories
    (``categorical_features_``). One float block is what LightGBM reads without conversion, and
    building it costs microseconds for one claim.

    Parameters
    ----------
    max_levels:
        At most this many levels per categorical column are kept (the most frequent in the
        training period); the rest become ``__other__``. Keeps rare codes from being memorised.
    min_level_count:
        A level must appear this many times in training to be kept.
    smoothing, prior_rate:
        Passed to :class:`~features.history.HistoryFeatures`.
    """

    def __init__(
        self,
        max_levels: int = 300,
        min_level_count: int = 30,
        smoothing: float = 5.0,
        prior_rate: float = 0.1,
    ) -> None:
        self.max_levels = max_levels
        self.min_level_count = min_level_count
        self.smoothing = smoothing
        self.prior_rate = prior_rate

    def fit(
        self,
        tables: ClaimTables,
        y: pd.DataFrame,
        history: tuple[ClaimTables, pd.DataFrame] | None = None,
    ) -> ClaimFeatureTransformer:
        """Learn category levels and history state from the training period.

        ``y`` is the outcomes frame (``claim_id``, ``remit_date``, ``denied``, ``category``),
        one row per training claim. ``history`` (claims and outcomes), if given, is what the
        history state holds instead of ``tables``/``y``: every claim sent before the training
        cutoff, rejected and still unanswered ones included, as the state of a served model
        holds every claim sent, so that counts of earlier submissions mean the same in training
        and in serving.
        """
        arrays = ClaimArrays.from_tables(tables)
        claim_features = claim_feature_columns(arrays)
        self.levels_: dict[str, list[str]] = {}
        for column in CATEGORICAL_FEATURES:
            values = pd.Series(claim_features[column], dtype=object).fillna(MISSING_LEVEL)
            counts = values.astype(str).value_counts()
            kept = counts[counts >= self.min_level_count].index[: self.max_levels]
            self.levels_[column] = sorted({*kept, OTHER_LEVEL, MISSING_LEVEL})
        self.level_codes_ = {
            column: {level: float(i) for i, level in enumerate(levels)}
            for column, levels in self.levels_.items()
        }
        if history is not None:
            arrays = ClaimArrays.from_tables(history[0])
            claim_features = claim_feature_columns(arrays)
            y = history[1]
        self.history_ = HistoryFeatures(self.smoothing, self.prior_rate).fit(
            arrays, claim_features, y
        )
        self.categorical_features_ = list(CATEGORICAL_FEATURES)
        self.feature_names_out_ = [
            *CATEGORICAL_FEATURES,
            *NUMERIC_CLAIM_FEATURES,
            *HISTORY_FEATURES,
        ]
        return self

    def refresh_history(self, tables: ClaimTables, outcomes: pd.DataFrame) -> None:
        """Bring the history state up to date with newer claims and outcomes; no refit."""
        arrays = ClaimArrays.from_tables(tables)
        self.history_.refresh(arrays, claim_feature_columns(arrays), outcomes)

    def release_history(self) -> None:
        """Drop the history state until :meth:`refresh_history` (see
        :meth:`HistoryFeatures.release`)."""
        self.history_.release()

    def transform(self, tables: ClaimTables) -> pd.DataFrame:
        return self.transform_with_context(tables)[0]

    def transform_with_context(self, tables: ClaimTables) -> tuple[pd.DataFrame, Context]:
        """Model matrix (one row per claim, in ``tables.claims`` order) and its context.

        A large batch (training's) is built range by range into one matrix: the history
        look-ups of a range hold a few hundred values per line and pair, which for a million
        claims at once would take gigabytes. Ranges give the same rows bit for bit.
        """
        batch = self.batch(tables)
        n = batch.n_claims
        if n <= _TRANSFORM_RANGE:
            return self.frame(batch.columns(0, n)), batch.context()
        columns = np.empty((len(self.feature_names_out_), n), dtype=MATRIX_DTYPE)
        for start in range(0, n, _TRANSFORM_RANGE):
            stop = min(n, start + _TRANSFORM_RANGE)
            columns[:, start:stop] = batch.columns(start, stop)
        return self.frame(columns), batch.context()

    def batch(self, tables: ClaimTables, executor: Executor | None = None) -> FeatureBatch:
        """The claims ready to become matrix rows, any range of claims at a time.

        What depends on the whole batch is done here, once: reading the tables, the claim
        features, and history's keys and the batch's own submissions (see
        :meth:`~features.history.HistoryFeatures.batch`, which builds the latter in a thread of
        ``executor``, if given).
        """
        arrays = ClaimArrays.from_tables(tables)
        claim_features = claim_feature_columns(arrays)
        history = self.history_.batch(arrays, claim_features, executor)
        return FeatureBatch(self, claim_features, history)

    def frame(self, columns: np.ndarray) -> pd.DataFrame:
        """The model matrix of :meth:`FeatureBatch.columns` (one range's, or several ranges' side
        by side), sharing their array."""
        # One model column per row of a C-order array: transposed, the matrix is column-major,
        # so pandas keeps it as one block without a copy.
        matrix = pd.DataFrame(columns.T, columns=column_index(self.feature_names_out_), copy=False)
        matrix.attrs["categorical_features"] = list(self.categorical_features_)
        return matrix

    def _level_code_columns(self, claim_features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each categorical column as level codes (``__other__`` for values not kept at fit)."""
        columns = [column for column in self.feature_names_out_ if column in self.level_codes_]
        if len(claim_features["claim_id"]) > _FEW_CLAIMS:
            return {
                column: map_text(
                    claim_features[column],
                    _LevelCode(self.level_codes_[column]),
                    self.level_codes_[column][MISSING_LEVEL],
                    float,
                )
                for column in columns
            }
        # A few claims: one pass over all columns' values, without a call per value or column.
        rows = []
        for column in columns:
            codes = self.level_codes_[column]
            other, missing = codes[OTHER_LEVEL], codes[MISSING_LEVEL]
            rows.append(
                [missing if v is None else codes.get(v, other) for v in claim_features[column]]
            )
        return dict(
            zip(columns, np.array(rows, dtype=np.float64).reshape(len(columns), -1), strict=True)
        )

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)


class FeatureBatch:
    """A batch of claims ready to become matrix rows (see :meth:`ClaimFeatureTransformer.batch`).

    The rows of claims ``start:stop`` are those rows of the whole batch's matrix, bit for bit,
    so ranges can be built in threads side by side (nothing shared is written meanwhile).
    """

    def __init__(
        self,
        transformer: ClaimFeatureTransformer,
        claim_features: dict[str, np.ndarray],
        history: HistoryBatch,
    ) -> None:
        self.transformer = transformer
        self.claim_features = claim_features
        self.history = history
        self.n_claims = len(claim_features["claim_id"])

    def columns(
        self, start: int, stop: int, side_by_side: bool = True, compiled: bool = False
    ) -> np.ndarray:
        """The model columns of claims ``start:stop``, one per row of a C-order array (the
        matrix rows transposed: see :meth:`ClaimFeatureTransformer.frame`).

        ``side_by_side`` and ``compiled`` are passed to
        :meth:`~features.history.HistoryBatch.features`.
        """
        claim_features = self.claim_features
        if start != 0 or stop != self.n_claims:
            claim_features = {name: values[start:stop] for name, values in claim_features.items()}
        history = self.history.features(start, stop, side_by_side, compiled)
        transformer = self.transformer
        names = transformer.feature_names_out_
        levels = transformer._level_code_columns(claim_features)
        columns = [
            levels[column]
            if column in levels
            else history[column]
            if column in history
            else claim_features[column]
            for column in names
        ]
        # One concatenation of the flat columns costs far less than a write per column (or
        # vstack's reshape of each).
        n = stop - start
        if not columns:
            return np.empty((0, n), dtype=MATRIX_DTYPE)
        return np.concatenate(columns, dtype=MATRIX_DTYPE).reshape(len(columns), n)

    def context(self) -> Context:
        """Claim values beside the matrix to word explanations (``CONTEXT_COLUMNS``)."""
        return {column: self.claim_features[column] for column in CONTEXT_COLUMNS}


def column_index(names: Iterable[str]) -> pd.Index:
    """Column labels as a ``pd.Index``: building a frame from one costs a tenth of a list's.

    The index for each set of names is built once; callers get a shallow copy, so renaming
    one frame's columns cannot reach another's.
    """
    return _column_index(tuple(names)).copy()


@lru_cache(maxsize=32)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names))


class _LevelCode:
    """A text value's level code; values not kept at fit are ``__other__``."""

    def __init__(self, codes: dict[str, float]) -> None:
        self.codes = codes
        self.other = codes[OTHER_LEVEL]

    def __call__(self, value: str) -> float:
        return self.codes.get(value, self.other)
