"""Published figures the simulator is calibrated to (see shared/reference/denial-facts.md)."""

from __future__ import annotations

from features.codes import DENIAL_CATEGORIES

DENIAL_RATE_RANGE = (0.10, 0.13)
"""Initial denial rate of adjudicated first submissions we aim for (> 10% signals problems)."""

_PUBLISHED_CAUSE_SHARES = {
    "eligibility": 26.6,
    "missing_information": 17.2,
    "authorization": 11.6,
    "non_covered": 10.6,
    "documentation": 9.2,
    "medical_necessity": 7.3,  # 6.6% medical necessity + 0.7% avoidable care
    "other": 6.4,
    "timely_filing": 5.4,
    "coding": 4.8,
    "credentialing": 0.9,
    "duplicate": 3.0,  # not broken out in the index; ~3% is the reference's estimate
}
"""Change Healthcare Denials Index 2020 (share of denials, %); they sum to 103 with duplicates."""

_TOTAL = sum(_PUBLISHED_CAUSE_SHARES.values())
CAUSE_MIX: dict[str, float] = {
    c: round(_PUBLISHED_CAUSE_SHARES[c] / _TOTAL, 4) for c in DENIAL_CATEGORIES
}
"""Target share of denials per category, renormalised to sum to 1."""

DENIAL_RATE_BY_PAYER_TYPE: dict[str, float] = {
    "medicaid": 0.16,
    "medicare_advantage": 0.15,
    "commercial": 0.12,
    "medicare": 0.08,
}
"""Suggested priors for professional claims; the simulator keeps their order."""

PAYER_MIX: dict[str, float] = {
    "commercial": 0.45,
    "medicare_advantage": 0.17,
    "medicare": 0.15,
    "medicaid": 0.18,
    "other": 0.05,
}
"""Share of claims by payer type."""

REJECTION_RATE = 0.0175
NEVER_REWORKED_RANGE = (0.35, 0.65)
