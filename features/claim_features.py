"""Features a billing expert reads straight off one claim (no history).

Everything here is a pure function of the claim, its lines and diagnoses, and the published
code tables, so the same claim always gets the same features. Lines are put in a canonical order
(charge, then code) so that the order a billing system happens to write them in changes nothing;
the original ``line_number`` is kept beside each slot for line-level explanations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.claim_tables import ClaimTables
from features.codes import code_tables

LINE_SLOTS = 3
"""How many service lines get their own procedure columns (the rest count in aggregates)."""

E_M_RANGE = (99202, 99499)
"""Evaluation and management CPT codes (with a procedure the same day they need modifier 25)."""

DISTINCT_SERVICE_MODIFIERS = frozenset({"59", "XE", "XS", "XP", "XU"})

CATEGORICAL_FEATURES: tuple[str, ...] = (
    "payer_id",
    "payer_type",
    "claim_filing_indicator",
    "place_of_service",
    "provider_taxonomy",
    "frequency_code",
    "patient_sex",
    "principal_dx_category",
    "principal_dx_chapter",
    *[f"procedure_{i}" for i in range(1, LINE_SLOTS + 1)],
    *[f"procedure_family_{i}" for i in range(1, LINE_SLOTS + 1)],
)

NUMERIC_CLAIM_FEATURES: tuple[str, ...] = (
    "n_lines",
    "n_diagnoses",
    "total_charge_log",
    "max_line_charge_log",
    "total_units",
    "max_units",
    "patient_age",
    "days_service_to_submission",
    "filing_limit_days",
    "days_past_filing_limit",
    "prior_auth_present",
    "referral_present",
    "referring_npi_present",
    "rendering_npi_present",
    "rendering_npi_valid",
    "billing_npi_valid",
    "taxonomy_present",
    "has_other_coverage",
    "medicare_age_not_medicare_plan",
    "is_replacement",
    "em_with_procedure",
    "em_with_procedure_no_mod25",
    "multi_procedure_no_distinct_modifier",
    "any_modifier_25",
    "any_distinct_service_modifier",
    "any_modifier_22",
    "any_laterality_modifier",
    "any_professional_technical_modifier",
    "lines_without_dx_pointer",
    "has_unlisted_procedure",
    "n_distinct_procedures",
)


def npi_is_valid(npi: pd.Series) -> pd.Series:
    """Luhn check of a 10-digit NPI with the 80840 health-industry prefix (CMS NPI standard)."""
    text = npi.fillna("").astype(str)
    ok = text.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
    result = np.zeros(len(text), dtype=bool)
    if not ok.any():
        return pd.Series(result, index=npi.index)
    digits = np.array([list(s) for s in text[ok]], dtype=np.int64)
    body = digits[:, :9]
    # Double every second digit from the right of the 9-digit body; the prefix 80840 adds 24.
    doubled = body.copy()
    doubled[:, ::2] *= 2
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    total = doubled.sum(axis=1) + 24
    check = (10 - total % 10) % 10
    result[ok] = check == digits[:, 9]
    return pd.Series(result, index=npi.index)


def procedure_family(codes: pd.Series) -> pd.Series:
    """A coarse procedure family: the first three characters of the CPT/HCPCS code.

    CPT keeps related services in adjacent numbers (705xx brain MRI, 974xx therapy), and HCPCS
    level II codes share their letter and first digits, so the prefix groups codes a payer's
    rules usually treat alike without any payer-specific table.
    """
    return codes.astype("str").str.slice(0, 3)


def _is_em(codes: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(codes, errors="coerce")
    return numeric.between(*E_M_RANGE)


def canonical_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """Lines sorted within each claim by charge (descending), then code and modifiers.

    Adds ``slot`` (1-based position in that order); ``line_number`` stays as written. A line
    with only a revenue code (institutional) is identified by ``REV<code>``.
    """
    lines = lines.assign(
        procedure_code=lines["procedure_code"].fillna("REV" + lines["revenue_code"].astype("str"))
    )
    ordered = lines.sort_values(
        ["claim_id", "line_charge", "procedure_code", "modifier_1", "units"],
        ascending=[True, False, True, True, True],
        na_position="last",
        kind="mergesort",
    ).reset_index(drop=True)
    ordered["slot"] = ordered.groupby("claim_id", sort=False).cumcount() + 1
    return ordered


def _modifier_flags(lines: pd.DataFrame) -> pd.DataFrame:
    mods = lines[["modifier_1", "modifier_2", "modifier_3", "modifier_4"]].astype("str")
    mods = mods.apply(lambda col: col.str.strip().str.upper())

    def any_in(values: set[str] | frozenset[str]) -> pd.Series:
        return mods.isin(list(values)).any(axis=1)

    return pd.DataFrame(
        {
            "claim_id": lines["claim_id"].to_numpy(),
            "mod25": any_in({"25"}).to_numpy(),
            "distinct": any_in(DISTINCT_SERVICE_MODIFIERS).to_numpy(),
            "mod22": any_in({"22"}).to_numpy(),
            "laterality": any_in({"LT", "RT", "50"}).to_numpy(),
            "prof_tech": any_in({"26", "TC"}).to_numpy(),
        }
    )


def build_claim_features(tables: ClaimTables) -> pd.DataFrame:
    """One row per claim (in ``tables.claims`` order) with the features named above.

    Also returns helper columns ``line_of_procedure_<i>`` (the written line number behind each
    slot) used to name lines in explanations; they are not model inputs.
    """
    tables_codes = code_tables()
    claims = tables.claims.reset_index(drop=True)
    lines = canonical_lines(tables.lines)
    out = pd.DataFrame({"claim_id": claims["claim_id"].to_numpy()})

    for column in ("payer_id", "claim_filing_indicator", "place_of_service", "frequency_code"):
        out[column] = claims[column].to_numpy()
    out["payer_type"] = claims["payer_type"].to_numpy()
    out["provider_taxonomy"] = claims["provider_taxonomy"].to_numpy()
    out["patient_sex"] = claims["patient_sex"].to_numpy()

    service_from = claims["service_date_from"]
    submitted = claims["submission_date"]
    lag = (submitted - service_from).dt.days
    limits = claims["payer_type"].map(tables_codes.payer_type_defaults["timely_filing_days"])
    out["days_service_to_submission"] = lag.to_numpy(dtype=float)
    out["filing_limit_days"] = limits.to_numpy(dtype=float)
    out["days_past_filing_limit"] = (lag - limits).to_numpy(dtype=float)
    age_days = (service_from - claims["patient_birth_date"]).dt.days
    out["patient_age"] = (age_days / 365.25).to_numpy(dtype=float)

    def present(column: str) -> np.ndarray:
        text = claims[column].astype("str").str.strip()
        return (claims[column].notna() & (text != "")).to_numpy(dtype=float)

    out["prior_auth_present"] = present("prior_auth_number")
    out["referral_present"] = present("referral_number")
    out["referring_npi_present"] = present("referring_npi")
    out["rendering_npi_present"] = present("rendering_npi")
    out["taxonomy_present"] = present("provider_taxonomy")
    out["rendering_npi_valid"] = npi_is_valid(claims["rendering_npi"]).to_numpy(dtype=float)
    out["billing_npi_valid"] = npi_is_valid(claims["billing_npi"]).to_numpy(dtype=float)
    out["has_other_coverage"] = claims["has_other_coverage"].to_numpy(dtype=float)
    # Medicare Secondary Payer: a patient of 65+ billed to a non-Medicare plan may have Medicare
    # as primary (or the plan may coordinate benefits with it).
    out["medicare_age_not_medicare_plan"] = (
        (out["patient_age"] >= 65) & ~claims["payer_type"].isin(["medicare"]).to_numpy()
    ).astype(float)
    out["is_replacement"] = claims["frequency_code"].isin(["7", "8"]).to_numpy(dtype=float)
    out["total_charge_log"] = np.log1p(claims["total_charge"].clip(lower=0).to_numpy(dtype=float))

    # Line aggregates.
    flags = _modifier_flags(lines)
    lines = lines.assign(
        is_em=_is_em(lines["procedure_code"]).to_numpy(),
        no_pointer=(
            lines["diagnosis_pointers"].isna()
            | (lines["diagnosis_pointers"].astype("str").str.strip() == "")
        ).to_numpy(),
        unlisted=(
            lines["procedure_code"].str.fullmatch(r"[0-9]{3}99") & ~_is_em(lines["procedure_code"])
        ).to_numpy(),
        **{f"flag_{k}": flags[k].to_numpy() for k in flags.columns if k != "claim_id"},
    )
    grouped = lines.groupby("claim_id", sort=False)
    agg = grouped.agg(
        n_lines=("procedure_code", "size"),
        n_distinct_procedures=("procedure_code", "nunique"),
        max_line_charge=("line_charge", "max"),
        total_units=("units", "sum"),
        max_units=("units", "max"),
        n_em=("is_em", "sum"),
        lines_without_dx_pointer=("no_pointer", "sum"),
        has_unlisted_procedure=("unlisted", "max"),
        any_modifier_25=("flag_mod25", "max"),
        any_distinct_service_modifier=("flag_distinct", "max"),
        any_modifier_22=("flag_mod22", "max"),
        any_laterality_modifier=("flag_laterality", "max"),
        any_professional_technical_modifier=("flag_prof_tech", "max"),
    )
    agg["max_line_charge_log"] = np.log1p(agg.pop("max_line_charge").clip(lower=0))
    n_non_em = agg["n_lines"] - agg["n_em"]
    agg["em_with_procedure"] = (agg["n_em"] > 0) & (n_non_em > 0)
    agg["em_with_procedure_no_mod25"] = agg["em_with_procedure"] & ~agg["any_modifier_25"].astype(
        bool
    )
    agg["multi_procedure_no_distinct_modifier"] = (n_non_em > 1) & ~agg[
        "any_distinct_service_modifier"
    ].astype(bool)
    agg = agg.drop(columns=["n_em"]).astype(float)
    out = out.merge(agg, left_on="claim_id", right_index=True, how="left")

    slots = lines[lines["slot"] <= LINE_SLOTS]
    for slot in range(1, LINE_SLOTS + 1):
        in_slot = slots[slots["slot"] == slot].set_index("claim_id")
        out[f"procedure_{slot}"] = out["claim_id"].map(in_slot["procedure_code"]).to_numpy()
        out[f"procedure_family_{slot}"] = procedure_family(
            out[f"procedure_{slot}"].fillna("")
        ).replace("", np.nan)
        out[f"line_of_procedure_{slot}"] = out["claim_id"].map(in_slot["line_number"]).to_numpy()

    dx = tables.diagnoses
    principal = dx[dx["position"] == dx.groupby("claim_id")["position"].transform("min")]
    principal = principal.drop_duplicates("claim_id").set_index("claim_id")["code"]
    principal_code = out["claim_id"].map(principal)
    out["principal_dx_category"] = principal_code.str.slice(0, 3).to_numpy()
    out["principal_dx_chapter"] = principal_code.str.slice(0, 1).to_numpy()
    out["n_diagnoses"] = (
        out["claim_id"].map(dx.groupby("claim_id").size()).fillna(0).to_numpy(dtype=float)
    )
    return out
