"""The OpenAPI schema documents the codes a claim accepts (issue 20: the procedure-code and
diagnosis patterns were missing), and what it documents is what the API accepts."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from serving.schemas import (
    ICD10_INPUT,
    PROCEDURE_CODE_INPUT,
    Icd10Code,
    ProcedureCode,
    ScoreRequest,
)


def test_the_schema_documents_the_code_patterns() -> None:
    defs = ScoreRequest.model_json_schema()["$defs"]
    assert defs["ServiceLineIn"]["properties"]["procedure_code"]["pattern"] == PROCEDURE_CODE_INPUT
    assert defs["ClaimIn"]["properties"]["diagnoses"]["items"]["pattern"] == ICD10_INPUT


@pytest.mark.parametrize(
    ("code_type", "pattern", "alphabet", "longest"),
    [
        (ProcedureCode, PROCEDURE_CODE_INPUT, "0123456789JjAz .", 7),
        (Icd10Code, ICD10_INPUT, "0123456789EeUuZxX .", 9),
    ],
)
def test_a_documented_pattern_accepts_exactly_what_the_api_accepts(
    code_type: object, pattern: str, alphabet: str, longest: int
) -> None:
    # Seeded strings over the characters that matter (digits, letters in and out of the
    # ICD-10 first-letter range, either case, dots, spaces): a client that follows the
    # documented pattern is never refused, and one the API accepts always follows it.
    adapter = TypeAdapter(code_type)
    rng = np.random.default_rng(20)
    accepted = 0
    for _ in range(4_000):
        text = "".join(rng.choice(list(alphabet), size=rng.integers(0, longest + 1)))
        try:
            adapter.validate_python(text)
            valid = True
        except ValidationError:
            valid = False
        assert bool(re.fullmatch(pattern, text)) == valid, repr(text)
        accepted += valid
    assert 50 < accepted < 3_950  # both sides were tried
