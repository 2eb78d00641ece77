"""A claim is scored whole or not at all: claims with a rejected child row or no service line
are quarantined with a reason, their lines and diagnoses with them, and nothing else is lost."""

from __future__ import annotations

import pandas as pd
import pytest

from features.schema import quarantine_incomplete_claims


@pytest.mark.parametrize("dtype", ["str", object])
def test_incomplete_claims_are_quarantined_with_their_rows_and_a_reason(dtype: object) -> None:
    def ids(*values: str) -> pd.Series:
        return pd.Series(list(values), dtype=dtype)  # type: ignore[call-overload]

    claims = pd.DataFrame({"claim_id": ids("A", "B", "C", "D", "E"), "payer_id": "P1"})
    lines = pd.DataFrame({"claim_id": ids("A", "A", "B", "E"), "line_number": [1, 2, 1, 1]})
    diagnoses = pd.DataFrame({"claim_id": ids("A", "C", "D", "E"), "position": [1, 1, 1, 1]})
    # D's only line and one of E's diagnoses failed validation (so they are not in the tables).
    rejects = pd.DataFrame(
        {
            "table": ["lines", "diagnoses"],
            "claim_id": ["D", "E"],
            "reason": ["procedure_code: not a CPT/HCPCS code", "code: not ICD-10"],
        }
    )
    kept, kept_lines, kept_dx, all_rejects = quarantine_incomplete_claims(
        claims, lines, diagnoses, rejects
    )
    assert kept["claim_id"].tolist() == ["A", "B"]
    assert kept_lines["claim_id"].tolist() == ["A", "A", "B"]
    assert kept_dx["claim_id"].tolist() == ["A"]
    quarantined = all_rejects[all_rejects["table"] == "claims"]
    reasons = quarantined.groupby("claim_id")["reason"].agg(lambda r: sorted(r)).to_dict()
    assert reasons == {
        "C": ["claim has no valid service line"],
        "D": [
            "a service line or diagnosis of this claim failed validation",
            "claim has no valid service line",
        ],
        "E": ["a service line or diagnosis of this claim failed validation"],
    }
    # Every claim is kept or quarantined, none both.
    assert sorted([*kept["claim_id"], *reasons]) == list("ABCDE")
    assert len(all_rejects) == len(rejects) + len(quarantined)


def test_nothing_is_quarantined_when_every_claim_is_whole() -> None:
    claims = pd.DataFrame({"claim_id": pd.Series(["A", "B"], dtype="str")})
    lines = pd.DataFrame({"claim_id": pd.Series(["B", "A"], dtype="str")})
    diagnoses = pd.DataFrame({"claim_id": pd.Series(["A"], dtype="str")})
    kept, kept_lines, kept_dx, all_rejects = quarantine_incomplete_claims(
        claims, lines, diagnoses, pd.DataFrame(columns=["table", "claim_id", "reason"])
    )
    assert kept["claim_id"].tolist() == ["A", "B"]
    assert len(kept_lines) == 2 and len(kept_dx) == 1 and len(all_rejects) == 0


@pytest.mark.parametrize("dtype", ["str", object])
def test_lines_and_diagnoses_without_a_claim_row_are_quarantined(dtype: object) -> None:
    """Orphan rows would be silently unused: each is quarantined with a reason."""
    from features.claim_tables import validated

    tables, _ = validated(*_small_world())
    claims = tables.claims.astype({"claim_id": dtype})
    lines = tables.lines.astype({"claim_id": dtype})
    diagnoses = tables.diagnoses.astype({"claim_id": dtype})
    orphan_line = lines.iloc[[0]].assign(claim_id="NO-SUCH-CLAIM")
    orphan_dx = diagnoses.iloc[[0]].assign(claim_id="NO-SUCH-CLAIM")
    got, rejects = validated(
        claims,
        pd.concat([lines, orphan_line], ignore_index=True),
        pd.concat([diagnoses, orphan_dx], ignore_index=True),
    )
    assert len(got.lines) == len(lines) and len(got.diagnoses) == len(diagnoses)
    orphans = rejects[rejects["reason"].str.startswith("no claim row")]
    assert sorted(orphans["table"]) == ["diagnoses", "lines"]
    assert set(orphans["claim_id"]) == {"NO-SUCH-CLAIM"}


def _small_world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from tests.unit.test_features import _wider_world

    tables, _ = _wider_world(20)
    return tables.claims, tables.lines, tables.diagnoses
