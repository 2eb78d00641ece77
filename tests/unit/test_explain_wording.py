"""Explanations name the claim's own values, and history as what it is (issue 18).

Each test builds claims with the factories and runs the real feature step, so the matrix holds
categorical columns as level codes, as it does in production. One model column at a time is
given a contribution, and the factor it makes is read against the claim's own fields: its
principal ICD-10 code, payer name, procedure codes and modifiers, and the number of earlier
claims it was built with. No expectation is read from the explainer's own rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.codes import DENIAL_CATEGORIES
from features.history import COUNT_FEATURES, HISTORY_FEATURES
from features.pipeline import ClaimFeatureTransformer, Context
from serving.explain import Factor, explain
from tests.utils.factories import make_claim, tables_from

PAYER_ID, PAYER_NAME = "60054", "Example Health Plan"
EARLIER = 6
"""Earlier claims of the same patient, rendering provider and payer, answered before the claim."""

NEW_CLAIM = make_claim(
    claim_id="NEW1",
    payer_id=PAYER_ID,
    payer_name=PAYER_NAME,
    diagnoses=["G43909", "I10"],
    lines=[
        {
            "procedure_code": "70553",
            "modifier_1": "26",
            "line_charge": 900.0,
            "units": 1,
            "diagnosis_pointers": "1",
        },
        {"procedure_code": "99213", "line_charge": 180.0, "units": 1, "diagnosis_pointers": "2"},
    ],
)


@pytest.fixture(scope="module")
def explained() -> tuple[pd.DataFrame, Context]:
    """The new claim's model matrix and context, after ``EARLIER`` answered claims."""
    earlier = [
        make_claim(
            claim_id=f"OLD{i}",
            payer_id=PAYER_ID,
            payer_name=PAYER_NAME,
            submission_date=f"2025-01-{6 + i:02d}",
            service_date_from=f"2025-01-{2 + i:02d}",
            service_date_to=f"2025-01-{2 + i:02d}",
            diagnoses=["G43909" if i % 2 else "I10"],
        )
        for i in range(EARLIER)
    ]
    outcomes = pd.DataFrame(
        {
            "claim_id": [claim["claim_id"] for claim in earlier],
            "remit_date": pd.to_datetime([f"2025-02-{1 + i:02d}" for i in range(EARLIER)]),
            "denied": [0, 1, 1, 1, 0, 0],
            "category": [None, "credentialing", "medical_necessity", "authorization", None, None],
        }
    )
    features = ClaimFeatureTransformer(min_level_count=1).fit(tables_from(earlier), outcomes)
    matrix, context = features.transform_with_context(tables_from([NEW_CLAIM]))
    assert matrix.loc[0, "hist_provider_payer_prior_claims"] == EARLIER  # as built
    return matrix, context


def _factor(
    explained: tuple[pd.DataFrame, Context],
    column: str,
    value: float = 1.0,
    likely_reason: str | None = None,
) -> Factor:
    """The factor a contribution of ``value`` on ``column`` alone makes (for a claim whose
    most likely denial reason is ``likely_reason``)."""
    matrix, context = explained
    contributions = pd.DataFrame(np.zeros(matrix.shape), columns=matrix.columns)
    contributions[column] = value
    reasons = None if likely_reason is None else np.array([likely_reason] * len(matrix))
    (factor,) = explain(contributions, matrix, context, top_k=5, likely_reasons=reasons).factors[0]
    return factor


def _level_code_text(matrix: pd.DataFrame, column: str) -> str:
    return f"{matrix.loc[0, column]:.1f}"  # a level code as the matrix holds it: "32.0"


@pytest.mark.parametrize(
    "column",
    [
        "principal_dx_category",  # the diagnosis field
        "principal_dx_chapter",
        "hist_procedure_dx_rate_medical_necessity",  # diagnosis supports procedure
        "hist_payer_procedure_dx_rate_medical_necessity",
    ],
)
def test_a_diagnosis_is_named_by_the_claims_own_icd10_code(
    explained: tuple[pd.DataFrame, Context], column: str
) -> None:
    factor = _factor(explained, column)
    principal = NEW_CLAIM["diagnoses"][0]
    assert f"principal diagnosis {principal}" in factor.description, factor
    level = _level_code_text(explained[0], "principal_dx_category")
    assert f"diagnosis {level}" not in factor.description
    assert "…" not in factor.description


def test_a_diagnosis_description_comes_from_the_icd10_cm_code_set(
    explained: tuple[pd.DataFrame, Context],
) -> None:
    icd10cm = pytest.importorskip("simple_icd_10_cm")
    principal = NEW_CLAIM["diagnoses"][0]
    factor = _factor(explained, "principal_dx_category")
    assert icd10cm.get_description(principal) in factor.description


@pytest.mark.parametrize(
    ("column", "own_values"),
    [
        ("payer_id", [PAYER_NAME, PAYER_ID]),
        ("payer_type", [PAYER_NAME]),
        ("procedure_1", ["70553 (line 1)", "99213 (line 2)"]),
        ("procedure_family_2", ["70553 (line 1)", "99213 (line 2)"]),
        # The claim's modifiers as written on its line, in CPT-modifier notation.
        ("any_professional_technical_modifier", ["70553-26 (line 1)"]),
        ("place_of_service", [NEW_CLAIM["place_of_service"]]),
        ("provider_taxonomy", [NEW_CLAIM["provider_taxonomy"]]),
    ],
)
def test_categorical_values_are_the_claims_own(
    explained: tuple[pd.DataFrame, Context], column: str, own_values: list[str]
) -> None:
    factor = _factor(explained, column)
    for value in own_values:
        assert value in factor.description, factor
    assert f" {_level_code_text(explained[0], column)}" not in factor.description


def _counts() -> list[str]:
    """History columns that count claims or outcomes (from the feature definitions), except
    the two a payer's own rules count: earlier submissions of the same service (duplicates)
    and this year's visits (benefit limits)."""
    payers_rules = {
        "hist_same_service_prior_submissions",
        "hist_patient_family_claims_this_year",
        "hist_procedure_claims_this_year",
        "hist_family_claims_this_year",
    }
    outcome_counts = [c for c in HISTORY_FEATURES if c.endswith("_n")]
    claim_counts = [c for c in COUNT_FEATURES if "days" not in c and "lag" not in c]
    return [c for c in [*outcome_counts, *claim_counts] if c not in payers_rules]


PROBLEM_WORDS = (
    "credential",
    "enrol",
    "eligib",
    "verify",
    "confirm",
    "obtain",
    "check",
    "missing",
    "invalid",
    "fails",
    "add ",
)


@pytest.mark.parametrize("column", _counts())
def test_a_count_is_context_never_a_problem_with_a_fix(
    explained: tuple[pd.DataFrame, Context], column: str
) -> None:
    # Whatever reason the claim is likely denied for: a count is no evidence of it.
    for likely_reason in (None, *DENIAL_CATEGORIES):
        factor = _factor(explained, column, likely_reason=likely_reason)
        assert factor.fix is None, (likely_reason, factor)
        assert not factor.actionable, (likely_reason, factor)
        text = factor.description.lower()
        assert not any(word in text for word in PROBLEM_WORDS), (likely_reason, factor)


@pytest.mark.parametrize(
    "column", ["hist_provider_payer_prior_claims", "hist_patient_payer_prior_claims"]
)
def test_a_count_says_how_many_earlier_claims_with_which_payer(
    explained: tuple[pd.DataFrame, Context], column: str
) -> None:
    factor = _factor(explained, column)
    assert f"{EARLIER} earlier claims" in factor.description, factor
    assert PAYER_NAME in factor.description


def test_a_history_rate_says_it_is_history_and_of_which_reason(
    explained: tuple[pd.DataFrame, Context],
) -> None:
    # The provider's authorization denials with the payer: history, not a credentialing fix.
    matrix, _ = explained
    factor = _factor(explained, "hist_provider_payer_rate_authorization")
    rate = matrix.loc[0, "hist_provider_payer_rate_authorization"]
    assert f"{rate:.0%} of earlier claims" in factor.description, factor
    assert "denied" in factor.description and "Authorization" in factor.description
    assert PAYER_NAME in factor.description
    assert f"{EARLIER} with a known outcome" in factor.description
    assert factor.fix is None and not factor.actionable
    assert "credential" not in factor.description.lower()


def test_history_of_the_reason_a_fix_addresses_keeps_the_fix(
    explained: tuple[pd.DataFrame, Context],
) -> None:
    factor = _factor(explained, "hist_provider_payer_rate_credentialing")
    assert "credentialing" in factor.description
    assert factor.actionable and factor.fix is not None and "credentialed" in factor.fix
    # It lowers the risk: no fix to make.
    assert _factor(explained, "hist_provider_payer_rate_credentialing", -1.0).fix is None


def test_history_that_does_not_show_the_reason_keeps_no_fix(
    explained: tuple[pd.DataFrame, Context],
) -> None:
    # No earlier claim was denied for coding: a coding rate of this grouping is the smoothing
    # prior, no reason to check code edits.
    matrix, _ = explained
    assert matrix.loc[0, "hist_procedure_set_rate_coding"] < 0.05
    factor = _factor(explained, "hist_procedure_set_rate_coding")
    assert "(reason: Medical coding)" in factor.description, factor
    assert factor.fix is None and not factor.actionable


def test_a_duplicate_count_is_worded_as_the_number_of_earlier_submissions(
    explained: tuple[pd.DataFrame, Context],
) -> None:
    # The claim was never sent before: nothing to tell the biller about resubmitting.
    factor = _factor(explained, "hist_same_service_prior_submissions")
    assert explained[0].loc[0, "hist_same_service_prior_submissions"] == 0
    assert "no earlier submission" in factor.description
    assert factor.fix is None


def test_a_rate_of_the_likely_reason_makes_its_field_a_fix(
    explained: tuple[pd.DataFrame, Context],
) -> None:
    # Every earlier line was denied for any reason: history of no reason in particular is
    # context, unless the claim's likely reason is one the field's fix addresses.
    column = "hist_payer_procedure_auth_rate"
    assert not _factor(explained, column).actionable
    factor = _factor(explained, column, likely_reason="authorization")
    assert factor.actionable and factor.fix is not None and "authorization" in factor.fix
    assert factor.description.startswith("no prior authorization number"), factor
    assert factor.group == "fix_on_claim"
    # Another reason: still context.
    other = _factor(explained, column, likely_reason="coding")
    assert not other.actionable and other.fix is None and other.group == "context"


@pytest.fixture(scope="module")
def authorized() -> tuple[pd.DataFrame, Context]:
    """The new claim with an authorization number, after one earlier claim paid."""
    earlier = make_claim(claim_id="OLD", payer_id=PAYER_ID, submission_date="2025-01-06")
    outcomes = pd.DataFrame(
        {
            "claim_id": ["OLD"],
            "remit_date": pd.to_datetime(["2025-02-01"]),
            "denied": [0],
            "category": [None],
        }
    )
    features = ClaimFeatureTransformer(min_level_count=1).fit(tables_from([earlier]), outcomes)
    claim = {**NEW_CLAIM, "prior_auth_number": "AUTH1"}
    return features.transform_with_context(tables_from([claim]))


def test_an_authorization_present_asks_for_its_coverage_only_where_the_data_shows_it(
    authorized: tuple[pd.DataFrame, Context],
) -> None:
    assert authorized[0].loc[0, "prior_auth_present"] == 1
    # Nothing says the authorization falls short: the number there is no fix to make.
    factor = _factor(authorized, "prior_auth_present")
    assert "authorization number present" in factor.description
    assert factor.fix is None and not factor.actionable
    # The claim's likely reason is authorization: check what the authorization covers.
    factor = _factor(authorized, "prior_auth_present", likely_reason="authorization")
    assert factor.actionable and factor.fix is not None, factor
    assert "covers 70553 and 99213" in factor.fix and "dates of service" in factor.fix
