"""The recovery model: probability that a denial is recovered if it is worked.

Learned from the practice's own history: denials (first adjudications, see
:mod:`features.x12.outcomes`) that were worked, and whether the follow-up (corrected claim,
appeal, peer-to-peer, rebill) brought money back. In simulated data the follow-ups are the
``followups`` table; in real data they are derived from later 835s
(:func:`features.x12.outcomes.derive_followups`).

Features (:class:`RecoveryFeatures`), all things a practice holds, computed **as of the day the
denial was worked** for training and as of the worklist date for scoring: CARC, group code,
RARCs, root-cause category and its table recovery rate, payer and payer type, procedure, denied
amount, route, days since denial and since service, days left in the appeal window and in the
filing limit, the payer's windows, prior attempts. Nothing from the simulator's ground truth.

Training (:func:`run_recovery_training`) mirrors the denial model: split by denial date
(earlier denials train, later ones test), LightGBM fit on the earlier part of the training
period and Platt-calibrated on its latest slice, later-period metrics from
:mod:`training.metrics`, logged to MLflow, registered as ``denial-recovery`` and promoted to
``@champion`` only if it beats the champion on the same test denials.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from features.atomic import write_text
from features.codes import code_tables
from features.denials import (
    UNKNOWN_CATEGORY,
    PayerWindows,
    default_denial_rules,
    denials_from_dataset,
    load_payer_windows,
    prepare_denials,
)
from features.schema import ClaimsDataset
from features.x12.outcomes import derive_followups
from training import registry
from training.estimator import BoosterParams
from training.metrics import binary_metrics

Progress = Callable[[str, float], None]

CATEGORICAL: tuple[str, ...] = (
    "carc",
    "group_code",
    "rarc",
    "category",
    "payer_id",
    "payer_type",
    "procedure_code",
    "action",
)
NUMERIC: tuple[str, ...] = (
    "log_amount",
    "category_prior",
    "days_since_denial",
    "days_since_service",
    "days_left_appeal",
    "days_left_filing",
    "appeal_window_days",
    "timely_filing_days",
    "prior_attempts",
    "n_denial_carcs",
)
INPUT_COLUMNS: tuple[str, ...] = (
    "carc",
    "group_code",
    "rarc",
    "denial_carcs",
    "category",
    "payer_id",
    "payer_type",
    "procedure_code",
    "route",
    "denied_amount",
    "days_since_denial",
    "days_since_service",
    "days_left_appeal",
    "days_left_filing",
    "appeal_window_days",
    "timely_filing_days",
    "prior_attempts",
)
"""Columns of a prepared denial frame (:func:`features.denials.prepare_denials`) the model
reads; an optional ``action`` column (the follow-up actually taken) overrides the route."""

FIELD_OF_COLUMN: dict[str, str] = {
    "carc": "CARC",
    "group_code": "CARC",
    "n_denial_carcs": "CARC",
    "rarc": "remark codes",
    "category": "denial category",
    "category_prior": "denial category",
    "payer_id": "payer",
    "payer_type": "payer",
    "procedure_code": "procedure",
    "action": "route",
    "log_amount": "denied amount",
    "days_since_denial": "days since denial",
    "days_left_appeal": "appeal deadline",
    "appeal_window_days": "appeal deadline",
    "days_left_filing": "filing limit",
    "timely_filing_days": "filing limit",
    "days_since_service": "filing limit",
    "prior_attempts": "prior attempts",
}
"""Model column -> the field a billing analyst recognises (contributions are summed per field)."""

OTHER_LEVEL = "__other__"
DEFAULT_ACTION = "appeal"


def model_action(route: pd.Series) -> pd.Series:
    """The follow-up action a route is worked with (write-offs and unknown routes: appeal)."""
    actions = route.map(default_denial_rules().routes["followup_action"]).replace("", np.nan)
    return actions.fillna(DEFAULT_ACTION).astype(str)


class RecoveryFeatures(TransformerMixin, BaseEstimator):
    """Prepared denial frame -> model matrix (categoricals with levels learned in training).

    Parameters
    ----------
    min_level_count
        A categorical level must appear this often in training to be kept; rarer levels (and
        new ones at scoring time) become ``__other__`` so rare codes are not memorised.
    """

    def __init__(self, min_level_count: int = 10) -> None:
        self.min_level_count = min_level_count

    def fit(self, frame: pd.DataFrame, y: Any = None) -> RecoveryFeatures:
        base = self._base(frame)
        self.levels_: dict[str, list[str]] = {}
        for column in CATEGORICAL:
            counts = base[column].value_counts()
            kept = sorted(counts[counts >= self.min_level_count].index.astype(str))
            self.levels_[column] = [*kept, OTHER_LEVEL]
        self.feature_names_out_ = [*CATEGORICAL, *NUMERIC]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        base = self._base(frame)
        out = pd.DataFrame(index=frame.index)
        for column in CATEGORICAL:
            levels = self.levels_[column]
            values = base[column].where(base[column].isin(levels), OTHER_LEVEL)
            out[column] = pd.Categorical(values, categories=levels)
        for column in NUMERIC:
            out[column] = base[column].astype(float)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)

    @staticmethod
    def _base(frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(
                f"the recovery model needs prepared denials with column(s) {', '.join(missing)}"
                " (use features.denials.prepare_denials)"
            )
        out = pd.DataFrame(index=frame.index)
        for column in CATEGORICAL:
            if column == "action":
                continue
            out[column] = frame[column].astype(object).where(frame[column].notna(), "").astype(str)
        routed = model_action(frame["route"])
        if "action" in frame.columns:
            routed = frame["action"].astype(object).where(frame["action"].notna(), routed)
        out["action"] = routed.astype(str)
        priors = code_tables().reason_categories["recovery_when_worked"]
        category = frame["category"].replace({UNKNOWN_CATEGORY: "other"})
        out["category_prior"] = category.map(priors).astype(float)
        out["log_amount"] = np.log1p(frame["denied_amount"].astype(float).clip(lower=0.0))
        carcs = frame["denial_carcs"].astype(object).where(frame["denial_carcs"].notna(), "")
        out["n_denial_carcs"] = [len(str(c).split(";")) if c else 0 for c in carcs]
        for column in NUMERIC:
            if column not in out.columns:
                out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        return out


class RecoveryEstimator(ClassifierMixin, BaseEstimator):
    """LightGBM recovery classifier, Platt-calibrated on the latest slice of its training rows.

    ``fit`` expects rows in time order (oldest first): the last ``calibration_fraction`` is held
    out for early stopping and calibration, so probabilities are checked on later denials than
    the booster learned from, never on a random split.
    """

    def __init__(
        self, booster: BoosterParams | None = None, calibration_fraction: float = 0.25
    ) -> None:
        self.booster = booster
        self.calibration_fraction = calibration_fraction

    def fit(self, matrix: pd.DataFrame, y: np.ndarray) -> RecoveryEstimator:
        params = self.booster or default_booster()
        y = np.asarray(y, dtype=int)
        if y.min() == y.max():
            raise ValueError("recovery training needs both recovered and unrecovered denials")
        n_cal = max(20, int(len(y) * self.calibration_fraction))
        fit_x, cal_x = matrix.iloc[:-n_cal], matrix.iloc[-n_cal:]
        fit_y, cal_y = y[:-n_cal], y[-n_cal:]
        train = lgb.Dataset(fit_x, fit_y, free_raw_data=True)
        valid = lgb.Dataset(cal_x, cal_y, reference=train, free_raw_data=True)
        self.booster_ = lgb.train(
            params.lgb_params("binary"),
            train,
            num_boost_round=params.max_rounds,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
        )
        self.calibrator_ = LogisticRegression(C=1e4)
        self.calibrator_.fit(self._logit(cal_x), cal_y)
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = list(matrix.columns)
        return self

    def _logit(self, matrix: pd.DataFrame) -> np.ndarray:
        raw = np.asarray(self.booster_.predict(matrix, raw_score=True), dtype=float)
        return raw.reshape(-1, 1)

    def predict_proba(self, matrix: pd.DataFrame) -> np.ndarray:
        p = self.calibrator_.predict_proba(self._logit(matrix))[:, 1]
        return np.column_stack([1.0 - p, p])

    def predict(self, matrix: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(matrix)[:, 1] >= 0.5).astype(int)

    def contributions(self, matrix: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions to the raw log-odds per model column (bias column dropped)."""
        contrib = np.asarray(self.booster_.predict(matrix, pred_contrib=True))
        return pd.DataFrame(contrib[:, :-1], index=matrix.index, columns=self.feature_names_in_)


def default_booster() -> BoosterParams:
    """Small trees: a practice has thousands of worked denials, not millions."""
    return BoosterParams(
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=20,
        max_rounds=800,
        early_stopping_rounds=60,
        cat_smooth=10.0,
    )


def build_recovery_pipeline(
    booster: BoosterParams | None = None, min_level_count: int = 10
) -> Pipeline:
    """The artifact: features and calibrated booster in one scikit-learn pipeline."""
    return Pipeline(
        [
            ("features", RecoveryFeatures(min_level_count=min_level_count)),
            ("model", RecoveryEstimator(booster)),
        ]
    )


def predict_recovery(pipeline: Pipeline, prepared: pd.DataFrame) -> np.ndarray:
    """Calibrated recovery probability per prepared denial (the one predict path)."""
    if prepared.empty:
        return np.zeros(0)
    return pipeline.predict_proba(prepared)[:, 1]


@dataclass
class Factor:
    """One field's share of a denial's recovery score."""

    field: str
    description: str
    contribution: float

    @property
    def direction(self) -> str:
        return "raises" if self.contribution > 0 else "lowers"


def explain_recovery(pipeline: Pipeline, prepared: pd.DataFrame, k: int = 3) -> list[list[Factor]]:
    """Top ``k`` fields behind each denial's recovery probability (TreeSHAP, by field)."""
    if prepared.empty:
        return []
    features: RecoveryFeatures = pipeline.named_steps["features"]
    model: RecoveryEstimator = pipeline.named_steps["model"]
    contrib = model.contributions(features.transform(prepared))
    fields = [FIELD_OF_COLUMN.get(c, c) for c in contrib.columns]
    by_field = contrib.T.groupby(fields, sort=False).sum().T
    names = np.asarray(by_field.columns)
    values = by_field.to_numpy()
    order = np.argsort(-np.abs(values), axis=1)[:, :k]
    out: list[list[Factor]] = []
    for i, row in enumerate(prepared.to_dict(orient="records")):
        out.append(
            [
                Factor(str(names[j]), describe_field(str(names[j]), row), float(values[i, j]))
                for j in order[i]
                if abs(values[i, j]) > 1e-6
            ]
        )
    return out


def describe_field(field_name: str, row: Mapping[Any, Any]) -> str:
    """The field with the denial's own value, e.g. ``payer Northstar Health`` or
    ``45 days left to appeal``."""

    def num(column: str) -> float:
        value = row.get(column)
        return float(value) if value is not None and not pd.isna(value) else float("nan")

    carc = f"{row.get('group_code') or ''}-{row.get('carc') or '?'}".lstrip("-")
    texts: dict[str, Callable[[], str]] = {
        "CARC": lambda: f"CARC {carc}",
        "remark codes": lambda: f"remarks {row.get('rarc') or 'none'}",
        "denial category": lambda: f"{row.get('category_label') or row.get('category')} denial",
        "payer": lambda: f"payer {row.get('payer_name') or row.get('payer_id')}",
        "procedure": lambda: f"procedure {row.get('procedure_code') or 'unknown'}",
        "route": lambda: f"route {str(row.get('route') or '').replace('_', ' ')}",
        "denied amount": lambda: f"${num('denied_amount'):,.0f} denied",
        "days since denial": lambda: f"denied {num('days_since_denial'):.0f} days ago",
        "appeal deadline": lambda: f"{num('days_left_appeal'):.0f} days left to appeal",
        "filing limit": lambda: (
            f"{num('days_left_filing'):.0f} days left in the filing limit"
            if not np.isnan(num("days_left_filing"))
            else "service date unknown"
        ),
        "prior attempts": lambda: f"{int(num('prior_attempts'))} prior attempt(s)",
    }
    maker = texts.get(field_name)
    return maker() if maker else field_name


# -- training data -------------------------------------------------------------------------------
class RecoveryDataError(ValueError):
    """The data cannot train a recovery model (too few worked denials...)."""


@dataclass
class RecoveryData:
    """Worked denials as of their action date, split by denial date."""

    test_from: pd.Timestamp
    train: pd.DataFrame
    test: pd.DataFrame
    denials: pd.DataFrame
    """Every denial (worked or not) with its classification; for truth comparisons."""
    counts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"train: denied before {self.test_from:%Y-%m-%d}; test: denied from then on"


def worked_denials(
    dataset: ClaimsDataset, windows: PayerWindows | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(worked, all_denials)``: worked denials prepared as of their first follow-up's action
    date with ``action``, ``action_date``, ``resolved_date`` and ``recovered`` attached."""
    frame = denials_from_dataset(dataset, include_rejections=False)
    followups = dataset.followups if len(dataset.followups) else derive_followups(dataset)
    first = (
        followups.sort_values("action_date")
        .drop_duplicates("claim_id")
        .set_index("claim_id")[["action", "action_date", "resolved_date", "recovered"]]
    )
    worked = frame[frame["claim_id"].isin(first.index)].reset_index(drop=True)
    attached = first.reindex(worked["claim_id"]).reset_index(drop=True)
    prepared = prepare_denials(worked, windows, as_of=pd.to_datetime(attached["action_date"]))
    for column in attached.columns:
        prepared[column] = attached[column].to_numpy()
    prepared = prepared[prepared["resolved_date"].notna()].reset_index(drop=True)
    prepared["recovered"] = prepared["recovered"].astype(bool)
    return prepared, frame


def make_recovery_data(
    dataset: ClaimsDataset,
    windows: PayerWindows | None = None,
    test_from: pd.Timestamp | None = None,
    test_fraction: float = 0.2,
    min_training_denials: int = 200,
    maturity_days: int = 180,
) -> RecoveryData:
    """Training and test rows of worked denials, split by denial date.

    An appeal's answer takes months, and a data extract holds only the answers received by its
    date; the quick answers, which recover more often, arrive first. Judging the newest denials
    on the answers already in would flatter (and miscalibrate) the model, so both sides keep
    only *matured* denials: training rows were denied at least ``maturity_days`` before
    ``test_from`` (and resolved before it); test rows were denied from ``test_from`` until
    ``maturity_days`` before the last denial in the data. Default ``test_from``: the date
    leaving the last ``test_fraction`` of matured denials in the test period.
    """
    worked, denials = worked_denials(dataset, windows)
    if denials.empty:
        raise RecoveryDataError("no denied claims in the data set: nothing to learn recovery from")
    maturity = pd.Timedelta(days=maturity_days)
    matured_until = denials["denial_date"].max() - maturity
    if test_from is None:
        matured = denials.loc[denials["denial_date"] <= matured_until, "denial_date"]
        cut = (matured if len(matured) else denials["denial_date"]).quantile(1.0 - test_fraction)
        test_from = pd.Timestamp(cut).normalize()  # type: ignore[arg-type]
    train = worked[
        (worked["denial_date"] < test_from - maturity) & (worked["resolved_date"] < test_from)
    ].sort_values(["action_date", "claim_id"], ignore_index=True)
    test = worked[
        (worked["denial_date"] >= test_from) & (worked["denial_date"] <= matured_until)
    ].reset_index(drop=True)
    counts = {
        "denials": len(denials),
        "worked_denials": len(worked),
        "train_denials": len(train),
        "train_recovered": int(train["recovered"].sum()),
        "test_denials": len(test),
        "test_recovered": int(test["recovered"].sum()),
    }
    if len(train) < min_training_denials:
        raise RecoveryDataError(
            f"only {len(train)} worked denials with a known outcome before "
            f"{test_from:%Y-%m-%d}; at least {min_training_denials} are needed (add follow-up "
            "history: later 835s or the followups table)"
        )
    if train["recovered"].nunique() < 2:
        raise RecoveryDataError("worked denials were all recovered or all lost: nothing to learn")
    if test.empty:
        raise RecoveryDataError(f"no worked denials from {test_from:%Y-%m-%d}: nothing to test")
    return RecoveryData(test_from, train, test, denials, counts)


# -- the training run ----------------------------------------------------------------------------
class RecoveryTrainSettings(BaseModel):
    """What one recovery training run does."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dataset: Path
    out_dir: Path = Path("work/recovery")
    test_from: date | None = None
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    payer_windows: Path | None = Field(
        default=None, description="Per-payer appeal window / filing limit override CSV."
    )
    gate_metric: str = "roc_auc"
    force_promote: bool = False
    min_training_denials: int = Field(default=200, ge=20)
    maturity_days: int = Field(
        default=180, ge=0, description="Days a denial needs for its appeal answer to be known."
    )
    truth_path: Path | None = None
    experiment: str = "denial-recovery"
    registered_model_name: str = "denial-recovery"
    champion_alias: str = "champion"
    booster: BoosterParams = Field(default_factory=default_booster)
    truth_action_lag_days: int = Field(
        default=30,
        ge=0,
        description="Days after the denial at which the simulator's truth "
        "assumes an unworked denial would be worked (for the truth comparison only).",
    )


@dataclass
class RecoveryOutcome:
    run_id: str
    version: str
    promoted: bool
    gate_reason: str
    metrics: dict[str, float]
    truth_metrics: dict[str, float]
    counts: dict[str, int]
    split: str
    out_dir: Path
    seconds: float


class RecoveryPyfunc(PythonModel):
    """MLflow wrapper: prepared denials in, ``recovery_probability`` out."""

    def load_context(self, context: Any) -> None:
        self.pipeline: Pipeline = joblib.load(context.artifacts["pipeline"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame({"recovery_probability": predict_recovery(self.pipeline, model_input)})


def _example(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(INPUT_COLUMNS)].head(5).copy()
    for column in out.columns:
        if pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype(float)
        else:
            out[column] = out[column].astype(object).where(out[column].notna(), "").astype(str)
    return out


def log_recovery_pipeline(pipeline: Pipeline, example: pd.DataFrame) -> str:
    """Log the pipeline as a pyfunc model, inside an active run; return its model URI (it is
    registered once the run has finished: :func:`registry.register_version`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.joblib"
        joblib.dump(pipeline, path, compress=3)
        example_input = _example(example)
        output = pd.DataFrame({"recovery_probability": predict_recovery(pipeline, example)})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RecoveryPyfunc(),
            artifacts={"pipeline": str(path)},
            signature=infer_signature(example_input, output.head(len(example_input))),
            input_example=example_input,
            pip_requirements=registry.pip_requirements(),
        )
    return info.model_uri


def evaluate_recovery(pipeline: Pipeline, test: pd.DataFrame) -> dict[str, float]:
    """Later-period metrics on worked denials (discrimination and calibration), overall and by
    route actually taken."""
    y = test["recovered"].astype(int).to_numpy()
    p = predict_recovery(pipeline, test)
    metrics = binary_metrics(y, p)
    metrics["recovery_rate"] = metrics.pop("denial_rate")
    for action, rows in test.groupby("action").groups.items():
        index = test.index.get_indexer(rows)
        for name, value in binary_metrics(y[index], p[index]).items():
            key = "recovery_rate" if name == "denial_rate" else name
            metrics[f"action.{action}.{key}"] = value
    return metrics


def truth_metrics(
    pipeline: Pipeline,
    data: RecoveryData,
    truth: pd.DataFrame,
    windows: PayerWindows | None,
    action_lag_days: int,
) -> dict[str, float]:
    """Comparison with the simulator's exact recovery probabilities (evaluation only).

    ``bayes.*``: the same metrics for the true probability on the test denials (the ceiling);
    ``truth.*``: agreement between predicted and true probability on every later-period denial,
    worked or not, scored as of ``action_lag_days`` after its denial like the truth assumes.
    """
    true_p = truth.set_index("claim_id")["true_recovery_probability"]
    test = data.test
    y = test["recovered"].astype(int).to_numpy()
    bayes = binary_metrics(y, test["claim_id"].map(true_p).fillna(0.0).to_numpy())
    out = {f"bayes.{k}": v for k, v in bayes.items() if k in ("roc_auc", "brier", "ece")}
    later = data.denials[data.denials["denial_date"] >= data.test_from].reset_index(drop=True)
    as_of = later["denial_date"] + pd.to_timedelta(action_lag_days, unit="D")
    prepared = prepare_denials(later, windows, as_of=as_of)
    predicted = predict_recovery(pipeline, prepared)
    actual = prepared["claim_id"].map(true_p).to_numpy(dtype=float)
    ok = ~np.isnan(actual)
    if ok.sum() > 2:
        out["truth.spearman"] = float(spearmanr(predicted[ok], actual[ok]).statistic)
        out["truth.mean_abs_error"] = float(np.mean(np.abs(predicted[ok] - actual[ok])))
        out["truth.n"] = float(ok.sum())
    return out


def _card(settings: RecoveryTrainSettings, data: RecoveryData, metrics: dict[str, float],
          truth: dict[str, float], version: str | None = None) -> str:  # fmt: skip
    lines = [
        f"# Model card: {settings.registered_model_name}" + (f" v{version}" if version else ""),
        "",
        "Probability that a denial is recovered (paid after a corrected claim, appeal,",
        "peer-to-peer or rebill) if it is worked, from the CARC/RARC, category, payer, procedure,",
        "amount, route, age and deadlines. Trained on the practice's worked denials.",
        "",
        f"- Split: {data.describe()}",
        *[f"- {k.replace('_', ' ')}: {v:,}" for k, v in data.counts.items()],
        "",
        "| metric | value |",
        "|---|---|",
        *[
            f"| {k} | {v:.4f} |"
            for k, v in {**metrics, **truth}.items()
            if "." not in k or k.startswith(("bayes.", "truth."))
        ],  # fmt: skip
        "",
        "## Known limits",
        "- Learned from worked denials only: a denial type the practice never works has no "
        "examples and is scored from its category's table rate and similar codes.",
        "- Front-end rejections are not scored by this model (they are resubmitted).",
    ]
    return "\n".join(lines) + "\n"


def _noop(stage: str, fraction: float) -> None:
    del stage, fraction


def run_recovery_training(
    settings: RecoveryTrainSettings, tracking_uri: str, progress: Progress = _noop
) -> RecoveryOutcome:
    """Train, evaluate, log, register and gate the recovery model.

    Raises :class:`RecoveryDataError` when the data cannot train a model.
    """
    started = time.perf_counter()
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    progress("reading the data set", 0.05)
    dataset, _ = ClaimsDataset.read(settings.dataset)
    windows = load_payer_windows(settings.payer_windows)
    progress("building worked denials as of their action dates", 0.15)
    data = make_recovery_data(
        dataset,
        windows,
        pd.Timestamp(settings.test_from) if settings.test_from else None,
        settings.test_fraction,
        settings.min_training_denials,
        settings.maturity_days,
    )
    progress("fitting the recovery model", 0.35)
    pipeline = build_recovery_pipeline(settings.booster)
    pipeline.fit(data.train, data.train["recovered"].astype(int).to_numpy())
    progress("evaluating on the later period", 0.6)
    metrics = evaluate_recovery(pipeline, data.test)
    truth_path = settings.truth_path or settings.dataset / "truth.parquet"
    truth: dict[str, float] = {}
    if truth_path.exists():
        truth = truth_metrics(
            pipeline, data, pd.read_parquet(truth_path), windows, settings.truth_action_lag_days
        )
    progress("logging to MLflow and registering", 0.75)
    client = registry.configure(tracking_uri, create=True)
    registry.end_stopped_runs(client)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(
        run_name=f"recovery {data.describe()}", tags=registry.owner_tags()
    ) as run:
        mlflow.log_params(
            {
                "test_from": f"{data.test_from:%Y-%m-%d}",
                "gate_metric": settings.gate_metric,
                "payer_windows": str(settings.payer_windows or "payer type defaults"),
                **{f"booster.{k}": v for k, v in asdict(settings.booster).items()},
            }
        )
        mlflow.set_tags({"dataset": str(settings.dataset), "model": "recovery"})
        finite = {k: float(v) for k, v in {**metrics, **truth}.items() if np.isfinite(v)}
        mlflow.log_metrics(finite)
        mlflow.log_dict(data.counts, "data_counts.json")
        model_uri = log_recovery_pipeline(pipeline, data.test)
        card = _card(settings, data, metrics, truth)
        mlflow.log_text(card, "model_card.md")
        progress("comparing with the champion", 0.9)
        champion = registry.champion_version(
            client, settings.registered_model_name, settings.champion_alias
        )
        champion_metrics = None
        if champion is not None:
            previous = registry.load_pipeline(
                f"models:/{settings.registered_model_name}/{champion}"
            )
            champion_metrics = evaluate_recovery(previous, data.test)
        promoted, reason = registry.promotion_decision(
            settings.gate_metric,
            metrics,
            champion_metrics,
            settings.force_promote,
            compared_on="the same test denials",
        )
        mlflow.set_tags({"gate.promoted": str(promoted), "gate.reason": reason})
        run_id = run.info.run_id
    # Registered, then promoted, only once the run has closed with everything logged.
    version = registry.register_version(client, settings.registered_model_name, model_uri, card)
    write_text(out / "model_card.md", _card(settings, data, metrics, truth, version))
    if promoted:
        registry.promote(client, settings.registered_model_name, version, settings.champion_alias)
    write_text(out / "metrics.json", json.dumps({"model": metrics, "truth": truth}, indent=2))
    progress("done", 1.0)
    return RecoveryOutcome(
        run_id=run_id,
        version=version,
        promoted=promoted,
        gate_reason=reason,
        metrics=metrics,
        truth_metrics=truth,
        counts=data.counts,
        split=data.describe(),
        out_dir=out,
        seconds=time.perf_counter() - started,
    )


def load_recovery_model(model_uri: str, tracking_uri: str) -> Pipeline:
    """The fitted recovery pipeline behind ``model_uri``, e.g.
    ``models:/denial-recovery@champion``."""
    registry.configure(tracking_uri)
    return registry.load_pipeline(model_uri)


# -- worklist evaluation (simulated data only) ---------------------------------------------------
def captured_dollars(order: np.ndarray, value: np.ndarray, share: float = 0.2) -> float:
    """Dollars of ``value`` in the first ``share`` of rows when worked in ``order``.

    ``order`` is a permutation of row positions (first = worked first); ``value`` the dollars
    each row is worth, e.g. true recovery probability x denied amount for the oracle comparison.
    """
    k = int(np.ceil(share * len(order)))
    return float(np.asarray(value, dtype=float)[np.asarray(order)[:k]].sum())


def capture_report(
    worklist_order: np.ndarray,
    amount: np.ndarray,
    true_probability: np.ndarray,
    denial_date: np.ndarray,
    share: float = 0.2,
) -> dict[str, float]:
    """Top-``share`` captured expected recovered dollars of the worklist and of three baselines.

    All rankings are scored with the same yardstick, true probability x amount: ``oracle``
    sorts by it, ``amount`` by denied amount alone, ``age`` works the oldest denial first.
    Ratios are to the oracle's dollars.
    """
    value = np.asarray(true_probability, dtype=float) * np.asarray(amount, dtype=float)
    orders = {
        "worklist": np.asarray(worklist_order),
        "oracle": np.argsort(-value, kind="stable"),
        "amount": np.argsort(-np.asarray(amount, dtype=float), kind="stable"),
        "age": np.argsort(np.asarray(denial_date), kind="stable"),
    }
    dollars = {name: captured_dollars(order, value, share) for name, order in orders.items()}
    out = {f"captured.{name}": v for name, v in dollars.items()}
    for name in ("worklist", "amount", "age"):
        out[f"ratio_to_oracle.{name}"] = (
            dollars[name] / dollars["oracle"] if dollars["oracle"] else 0.0
        )
    out["denials"] = float(len(value))
    out["total_expected_dollars"] = float(value.sum())
    return out
