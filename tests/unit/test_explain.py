"""Explanation wording: a biller never reads an impossible value."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.claim_tables import ClaimTables
from features.codes import DENIAL_CATEGORIES
from features.pipeline import feature_source
from features.schema import ClaimsDataset
from serving.explain import (
    BY_REASON_SHARE,
    RULES,
    Factor,
    column_fixable,
    evidence_floor,
    explain,
    history_column,
    word_factor,
)
from training.estimator import DenialRiskEstimator
from training.treeshap import TreeShapTables

REPEAT = RULES["frequency (days since the same procedure)"]


def test_repeat_service_says_when_the_same_procedure_was_last_done():
    text = REPEAT.describe(
        {"hist_days_since_same_procedure": 12.0, "hist_days_since_same_family": 12.0}, {}
    )
    assert text == "same procedure 12 days ago"


def test_repeat_service_never_shows_negative_days():
    first = REPEAT.describe(
        {"hist_days_since_same_procedure": -1.0, "hist_days_since_same_family": -1.0}, {}
    )
    assert "-1" not in first and "first of its kind" in first
    family = REPEAT.describe(
        {"hist_days_since_same_procedure": -1.0, "hist_days_since_same_family": 30.0}, {}
    )
    assert family == "a service of the same kind 30 days ago"


# -- TreeSHAP tables and batch explanations: same results as the slow paths ------------------


def _booster(rng: np.random.Generator, **params: Any) -> tuple[lgb.Booster, np.ndarray]:
    """A small booster with the split kinds the tables must decide as LightGBM does.

    Numerical columns with NaNs and zeros, two categorical columns, deep trees that split on
    the same feature more than once along a path.
    """
    n = 3_000
    x = rng.normal(size=(n, 6))
    x[rng.random(n) < 0.15, 0] = np.nan
    x[rng.random(n) < 0.3, 1] = 0.0
    x[:, 4] = rng.integers(0, 12, n)  # categorical codes
    x[:, 5] = rng.integers(0, 5, n)
    logit = x[:, 2] * np.sign(x[:, 3]) + np.isnan(x[:, 0]) + (x[:, 4] % 3 == 0) - x[:, 1] ** 2
    y = (logit + rng.normal(size=n) > 0).astype(int)
    settings = {
        "objective": "binary",
        "num_leaves": 31,
        "max_depth": 7,
        "min_data_in_leaf": 5,
        "max_cat_to_onehot": 3,
        "verbose": -1,
        "seed": 3,
        **params,
    }
    data = lgb.Dataset(x, y, categorical_feature=[4, 5])
    return lgb.train(settings, data, num_boost_round=25), x


def _awkward_rows(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Training-like rows plus the values LightGBM reads specially."""
    rows = x[rng.choice(len(x), 200, replace=False)].copy()
    rows[:20, 0] = np.nan
    rows[20:40, 1] = 0.0
    rows[40:50, 1] = 1e-40  # read as 0 by LightGBM
    rows[50:60, 2] = np.nan  # NaN in a column trained without NaNs reads as 0
    rows[60:70, 4] = np.nan  # categorical NaN, negative, fractional and unseen codes
    rows[70:80, 4] = -3.0
    rows[80:90, 4] = -0.5
    rows[90:100, 4] = 2.7
    rows[100:110, 4] = 500.0
    return rows


@pytest.mark.parametrize(
    "params",
    [{}, {"zero_as_missing": True}, {"use_missing": False}],
    ids=["nan-missing", "zero-missing", "no-missing"],
)
def test_tree_shap_tables_equal_lightgbm_pred_contrib(params: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    booster, x = _booster(rng, **params)
    rows = _awkward_rows(rng, x)
    expected = booster.predict(rows, pred_contrib=True)[:, :-1]
    got = TreeShapTables(booster).contributions(rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # The caller's array (F-ordered like the feature step's matrix) is not modified.
    fortran = np.asfortranarray(rows)
    np.testing.assert_allclose(TreeShapTables(booster).contributions(fortran), got, atol=0)
    np.testing.assert_array_equal(fortran, rows)


def test_tree_shap_tables_use_the_trees_predict_uses_after_early_stopping() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2_000, 3))
    y = (x[:, 0] + rng.normal(size=2_000) > 0).astype(int)
    train, valid = lgb.Dataset(x[:1_500], y[:1_500]), lgb.Dataset(x[1_500:], y[1_500:])
    booster = lgb.train(
        {"objective": "binary", "learning_rate": 0.5, "verbose": -1, "seed": 1},
        train,
        num_boost_round=200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        keep_training_booster=True,  # keeps the trees past the best iteration
    )
    assert 0 < booster.best_iteration < booster.num_trees()
    expected = booster.predict(x[:100], pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(TreeShapTables(booster).contributions(x[:100]), expected, atol=1e-12)


def test_tree_shap_contributions_add_up_to_the_raw_score() -> None:
    rng = np.random.default_rng(8)
    booster, x = _booster(rng)
    rows = _awkward_rows(rng, x)
    # A split decided unlike LightGBM would move a row's value to another leaf.
    tables = TreeShapTables(booster)
    contributions = tables.contributions(rows)
    raw = booster.predict(rows, raw_score=True)
    bias = booster.predict(rows[:1], pred_contrib=True)[0, -1]
    np.testing.assert_allclose(contributions.sum(axis=1) + bias, raw, atol=1e-9)


def test_estimator_contributions_are_the_booster_pred_contrib() -> None:
    rng = np.random.default_rng(2)
    booster, x = _booster(rng)
    estimator = DenialRiskEstimator()
    estimator.denial_booster_ = booster
    estimator.feature_names_in_ = [f"f{i}" for i in range(x.shape[1])]
    matrix = pd.DataFrame(_awkward_rows(rng, x), columns=estimator.feature_names_in_)
    got = estimator.contributions(matrix)
    expected = booster.predict(matrix.to_numpy(), pred_contrib=True)[:, :-1]
    assert list(got.columns) == estimator.feature_names_in_
    assert got.index.equals(matrix.index)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=0, atol=1e-12)
    assert estimator.contributions(matrix.iloc[:0]).shape == (0, x.shape[1])


def test_field_explanation_sums_columns_per_claim_field_and_adds_up_to_the_raw_score() -> None:
    from training.plots import field_explanation

    rng = np.random.default_rng(6)
    booster, x = _booster(rng)
    estimator = DenialRiskEstimator()
    estimator.denial_booster_ = booster
    # Two columns of one field (payer), two of another (number of service lines), two alone.
    names = ["payer_id", "n_lines", "payer_type", "n_distinct_procedures", "total_units", "x"]
    estimator.feature_names_in_ = names
    matrix = pd.DataFrame(_awkward_rows(rng, x), columns=names)
    explanation = field_explanation(estimator, matrix)
    fields = list(explanation.feature_names)
    assert sorted(fields) == sorted({feature_source(n) for n in names})
    columns = estimator.contributions(matrix)
    for field in fields:
        members = [n for n in names if feature_source(n) == field]
        np.testing.assert_allclose(
            explanation.values[:, fields.index(field)], columns[members].sum(axis=1), atol=1e-12
        )
    raw = booster.predict(matrix.to_numpy(), raw_score=True)
    np.testing.assert_allclose(
        explanation.base_values + explanation.values.sum(axis=1), raw, atol=1e-9
    )


_GENERATED_COLUMNS = [
    "prior_auth_present",
    "hist_payer_procedure_auth_rate",
    "days_service_to_submission",
    "filing_limit_days",
    "procedure_1",
    "procedure_family_1",
    "procedure_2",
    "procedure_family_2",
    "payer_type",
    "hist_payer_denial_rate",
    "patient_age",
    "referral_present",
    "any_modifier_25",
    "em_with_procedure",
    "hist_days_since_same_procedure",
    "hist_days_since_same_family",
    "total_charge_log",
    "n_lines",
    # History of every kind: counts (context, or a payer's rule's), rates of the reason a
    # field's fix addresses or of another, delays, the highest rate per reason.
    "hist_provider_payer_prior_claims",
    "hist_provider_payer_n",
    "hist_provider_payer_rate_credentialing",
    "hist_provider_payer_recent_rate_coding",
    "hist_payer_procedure_auth_recent_rate_authorization",
    "hist_patient_payer_prior_claims",
    "hist_patient_days_since_prior_claim",
    "hist_same_service_prior_submissions",
    "hist_procedure_dx_rate_medical_necessity",
    "hist_evidence_coding",
    "principal_dx_category",
    "some_new_column",  # no rule: worded by its name
]


def _generated_batch(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    columns = _GENERATED_COLUMNS
    values = rng.normal(0, 0.3, (n, len(columns)))
    values[rng.random(values.shape) < 0.3] = 0.0  # unused columns and fields below min_abs
    contributions = pd.DataFrame(values, columns=columns)
    matrix = pd.DataFrame(rng.integers(0, 3, (n, len(columns))).astype(float), columns=columns)
    matrix["hist_days_since_same_procedure"] = rng.choice([-1.0, 12.0, 40.0], n)
    second = rng.choice(np.array(["97110", None], dtype=object), n)
    context: dict[str, Any] = {
        "procedure_1": rng.choice(np.array(["70553", "99213"], dtype=object), n),
        "procedure_2": second,
        "procedure_3": np.full(n, None, dtype=object),
        "line_of_procedure_1": np.ones(n),
        "line_of_procedure_2": np.where(second == None, np.nan, 2.0),  # noqa: E711
        "line_of_procedure_3": np.full(n, np.nan),
        "days_service_to_submission": rng.integers(1, 200, n).astype(float),
        "filing_limit_days": np.full(n, 90.0),
        "modifiers_1": rng.choice(np.array(["26", None, "59, XU"], dtype=object), n),
        "modifiers_2": np.full(n, None, dtype=object),
        "modifiers_3": np.full(n, None, dtype=object),
        "payer_id": rng.choice(np.array(["P1", "P2"], dtype=object), n),
        "payer_name": rng.choice(np.array(["Acme Health", None], dtype=object), n),
        "payer_type": rng.choice(np.array(["commercial", "medicare"], dtype=object), n),
        "frequency_code": np.full(n, "1", dtype=object),
        "principal_dx": np.full(n, "G43909", dtype=object),
        "principal_dx_category": np.full(n, "G43", dtype=object),
    }
    return contributions, matrix, context


def _reference_factors(
    contributions: pd.DataFrame,
    matrix: pd.DataFrame,
    context: dict[str, Any],
    top_k: int,
    min_abs: float = 0.02,
    likely_reasons: list[str | None] | None = None,
    fix_totals: list[float] | None = None,
) -> list[list[Factor]]:
    """The plain per-claim algorithm explain must reproduce: group, rank, word; the log-odds
    of each claim's fields to fix on the claim appended to ``fix_totals``."""
    columns = [str(c) for c in contributions.columns]
    sources = [feature_source(c) for c in columns]
    rules = [RULES.get(source) for source in sources]
    results = []
    for row in range(len(contributions)):
        m_row = {c: matrix[c].to_numpy()[row] for c in matrix.columns}
        c_row = {c: np.asarray(v)[row] for c, v in context.items()}
        row_values = contributions.to_numpy()[row]
        # Fixable on this claim: history only from the value that shows the problem.
        fixable_column = [
            rule is not None and column_fixable(c, rule, float(matrix[c].to_numpy()[row]))
            for c, rule in zip(columns, rules, strict=True)
        ]
        # Below its evidence floor: a column that would be fixable at a higher value.
        weak_column = [
            rule is not None
            and column_fixable(c, rule)
            and evidence_floor(c, rule) is not None
            and not fixable
            for c, rule, fixable in zip(columns, rules, fixable_column, strict=True)
        ]
        for i, (c, rule) in enumerate(zip(columns, rules, strict=True)):
            # What the fix adds is on the claim: its own columns are no fix by themselves.
            if rule is not None and rule.present and m_row.get(rule.present, 0) > 0:
                fixable_column[i] = fixable_column[i] and history_column(c) is not None
        by_field: dict[str, float] = {}
        fixable_sum: dict[str, float] = {}
        for source, value, fixable in zip(
            sources, contributions.iloc[row].to_numpy(), fixable_column, strict=True
        ):
            by_field[source] = by_field.get(source, 0.0) + float(value)
            if fixable:
                fixable_sum[source] = fixable_sum.get(source, 0.0) + float(value)

        def lead_of(
            field: str,
            value: float,
            part: bool | None,
            row_values: np.ndarray = row_values,
            fixable_column: list[bool] = fixable_column,
        ) -> str:
            # Its column of largest contribution in its direction among those (fixable or not,
            # or all when ``part`` is None) that carry it; the first such column on ties.
            found = [
                (float(row_values[i]) * np.sign(value), -i, c)
                for i, (c, source, fixable) in enumerate(
                    zip(columns, sources, fixable_column, strict=True)
                )
                if source == field and (part is None or fixable == part)
            ]
            return max(found)[2]

        largest = max(by_field.values())
        reason = likely_reasons[row] if likely_reasons is not None else None
        ranked = []
        fixable_field: dict[str, bool] = {}
        by_reason: dict[str, bool] = {}
        for field, value in by_field.items():
            # Fixable when its fixable columns carry at least half of it.
            fixable_field[field] = field in fixable_sum and (
                2.0 * np.sign(value) * fixable_sum[field] >= abs(value)
            )
            rule = RULES.get(field)
            by_reason[field] = (
                not fixable_field[field]
                and rule is not None
                and rule.actionable
                and rule.fix is not None
                and reason in rule.reasons
                and value >= max(min_abs, BY_REASON_SHARE * largest)
            )
            if by_reason[field]:
                lead = lead_of(field, value, None)
                # Not when it leads with history of another reason, a count that is context,
                # or evidence below its floor.
                info = history_column(lead)
                other = info is not None and (
                    (info.reason is not None and info.reason not in rule.reasons)  # type: ignore[union-attr]
                    or (info.kind == "count" and lead not in rule.problem_counts)  # type: ignore[union-attr]
                )
                by_reason[field] = not other and not weak_column[columns.index(lead)]
            fixable_field[field] = fixable_field[field] or by_reason[field]
            if abs(value) < min_abs:
                continue
            group = 0 if value > 0 and fixable_field[field] else (1 if value > 0 else 2)
            ranked.append((group, -abs(value), field, value))
        strongest_line = None
        best = 0.0
        for slot in range(1, 4):
            line = c_row.get(f"line_of_procedure_{slot}")
            strength = sum(
                abs(float(contributions[c].to_numpy()[row]))
                for c in (f"procedure_{slot}", f"procedure_family_{slot}")
                if c in contributions
            )
            if line is not None and not np.isnan(line) and strength > best:
                best, strongest_line = strength, int(line)
        factors = []
        for _, _, field, value in sorted(ranked)[:top_k]:
            line_field = field in {
                "procedure",
                "prior authorization",
                "diagnosis supports procedure",
            }
            lead = lead_of(field, value, None if by_reason[field] else fixable_field[field])
            fixable = fixable_field[field]
            description, fix = word_factor(
                field, lead, fixable, value, m_row, c_row, by_reason=by_reason[field]
            )
            if by_reason[field] and fix is None:  # no fix on this claim: context
                fixable = fixable_field[field] = False
                description, fix = word_factor(field, lead, False, value, m_row, c_row)
            factors.append(
                Factor(
                    field=field,
                    description=description,
                    contribution=round(value, 4),
                    direction="raises risk" if value > 0 else "lowers risk",
                    actionable=fixable,
                    fix=fix,
                    line_number=strongest_line if line_field else None,
                )
            )
        factors.sort(key=lambda f: 0 if f.actionable and f.contribution > 0 else 1)
        results.append(factors)
        if fix_totals is not None:
            fix_totals.append(sum(v for f, v in by_field.items() if fixable_field[f]))
    return results


@pytest.mark.parametrize(("n", "top_k"), [(1, 5), (7, 3), (300, 5)])
@pytest.mark.parametrize("with_reasons", [False, True])
def test_explain_equals_the_per_claim_reference(n: int, top_k: int, with_reasons: bool) -> None:
    contributions, matrix, context = _generated_batch(n, seed=n)
    reasons = (
        np.random.default_rng(n).choice(np.array([*DENIAL_CATEGORIES, None], dtype=object), n)
        if with_reasons
        else None
    )
    explained = explain(contributions, matrix, context, top_k, likely_reasons=reasons)
    fix_totals: list[float] = []
    want = _reference_factors(
        contributions,
        matrix,
        context,
        top_k,
        likely_reasons=None if reasons is None else list(reasons),
        fix_totals=fix_totals,
    )
    assert explained.factors == want
    assert any(f.fix for factors in want for f in factors)  # the batch exercises the fixes
    if with_reasons and n == 300:  # the likely reason makes some fields fixable
        plain = _reference_factors(contributions, matrix, context, top_k)
        assert sum(f.actionable for fs in want for f in fs) > sum(
            f.actionable for fs in plain for f in fs
        )
    # The groups' contributions: every field's (shown or not), adding up to the claim's.
    np.testing.assert_allclose(explained.fix_contribution, fix_totals, atol=1e-9)
    np.testing.assert_allclose(
        explained.fix_contribution + explained.context_contribution,
        contributions.sum(axis=1).to_numpy(),
        atol=1e-9,
    )


def test_explanations_from_the_tables_equal_those_from_pred_contrib(trained: Any) -> None:
    """End to end on the session's model: factors, order, wording, contributions and fixes."""
    from serving.loading import load_service
    from training.model import predict

    service = load_service(trained.model_uri, trained.tracking_uri)
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    tables = tables.subset(tables.claims["claim_id"].iloc[:400].tolist())
    prediction = predict(service.pipeline, tables)
    model = service.pipeline.named_steps["model"]
    slow = pd.DataFrame(
        model.denial_booster_.predict(prediction.matrix.to_numpy(), pred_contrib=True)[:, :-1],
        index=prediction.matrix.index,
        columns=model.feature_names_in_,
    )
    fast = model.contributions(prediction.matrix)
    np.testing.assert_allclose(fast.to_numpy(), slow.to_numpy(), rtol=0, atol=1e-12)
    # As the service explains: with each claim's likely reason (before its what-ifs reorder
    # its fixes by the risk they remove).
    likely = [reasons[0][0] for reasons in prediction.top_reasons(1)]
    want = _reference_factors(slow, prediction.matrix, prediction.context, 5, likely_reasons=likely)
    assert (
        explain(fast, prediction.matrix, prediction.context, 5, likely_reasons=likely).factors
        == want
    )
    scored = service.score(tables, explain=True, top_k=5, what_if=False)
    assert [s.factors for s in scored] == want
