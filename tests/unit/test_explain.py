"""Explanation wording: a biller never reads an impossible value."""

from __future__ import annotations

from serving.explain import RULES

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
