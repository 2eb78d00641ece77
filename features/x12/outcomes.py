"""Each claim's first-adjudication outcome, and follow-ups derived from later remittances.

Works on any :class:`~features.schema.ClaimsDataset` (ingested from 835s or simulated).

Rule, in order (documented here once; the tests pin each step):

1. **Reversals cancel.** A remittance with CLP02 = 22 cancels the latest earlier remittance for
   the same claim (preferring one with the same payer claim number, CLP07); both are ignored.
   A reversal with nothing to cancel is ignored too.
2. **First adjudication.** Of the remaining remittances of a claim, the earliest (remit date,
   then file order) is the first adjudication. Front-end rejections (999/277CA) are never
   adjudications and never denials.
3. **Denied?**
   - CLP02 = 4 (denied): denied.
   - CLP02 = 19/20/21 (processed and forwarded), 23 (not our claim, forwarded), 25
     (predetermination only): not denied.
   - paid 0 with at least one denial CARC (``CodeTables.is_denial_carc``): denied.
   - otherwise denied when denial-CARC adjustments add up to more than half of the billed
     charge (the denial explains most of the claim). Patient share (PR-1/2/3) and contractual
     (CO-45 and friends) are not denial CARCs, so a claim with only those is not denied.
4. **Primary CARC** is the denial adjustment with the largest amount (claim and line level
   together); when there is none, the largest adjustment of any kind. The denial category
   comes from the CARC table and is filled for denied claims only.

Remittances whose claim_id is a template placeholder (``PATIENT ACCOUNT NUMBER``, all 9s)
cannot be told apart and are left out of outcomes and follow-ups.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.codes import code_tables
from features.schema import ClaimsDataset
from features.x12.placeholders import is_placeholder_claim_id

NOT_DENIED_STATUSES = frozenset({"19", "20", "21", "23", "25"})
REVERSAL_STATUS = "22"
DENIED_STATUS = "4"
MOST_OF_CHARGE = 0.5

OUTCOME_COLUMNS = [
    "claim_id",
    "remit_id",
    "denied",
    "remit_date",
    "primary_carc",
    "primary_group",
    "denial_category",
    "paid_amount",
    "status",
]


def effective_remittances(remittances: pd.DataFrame) -> pd.DataFrame:
    """Remittances in adjudication order with reversal pairs (and lone reversals) removed."""
    if remittances.empty:
        return remittances.copy()
    frame = remittances.reset_index(drop=True)
    frame = frame.assign(_order=range(len(frame)))
    frame = frame.sort_values(["claim_id", "remit_date", "_order"], kind="stable")
    is_rev = frame["status_code"].astype(str) == REVERSAL_STATUS
    cancelled: set[int] = set(frame.index[is_rev])
    for cid, group in frame[frame["claim_id"].isin(frame.loc[is_rev, "claim_id"])].groupby(
        "claim_id", sort=False
    ):
        live: list[Any] = []
        for idx, row in group.iterrows():
            if str(row["status_code"]) != REVERSAL_STATUS:
                live.append(idx)
                continue
            same_pcn = [
                i for i in live if frame.at[i, "payer_claim_number"] == row["payer_claim_number"]
            ]
            candidates = same_pcn or live
            if candidates:
                target = candidates[-1]
                live.remove(target)
                cancelled.add(target)
        del cid
    return frame.drop(index=sorted(cancelled)).drop(columns="_order")


def first_adjudication_outcomes(dataset: ClaimsDataset) -> pd.DataFrame:
    """One row per claim that has an adjudication: its final first-adjudication outcome.

    Columns: ``claim_id, remit_id, denied, remit_date, primary_carc, primary_group,
    denial_category, paid_amount, status``. Claims without a remittance are absent; every
    remittance claim_id is included, whether or not the claim itself is in ``dataset.claims``.
    See the module docstring for the rule.
    """
    remits = effective_remittances(dataset.remittances)
    if len(remits):
        remits = remits[~remits["claim_id"].map(is_placeholder_claim_id)]
    if remits.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in OUTCOME_COLUMNS})
    first = remits.drop_duplicates("claim_id", keep="first").copy()
    tables = code_tables()
    first_ids = pd.Index(first["remit_id"])
    adj = dataset.adjustments[first_ids.get_indexer(dataset.adjustments["remit_id"]) >= 0].copy()
    adj["is_denial"] = tables.denial_mask(adj["carc"], adj["group_code"])
    adj["abs_amount"] = adj["amount"].abs()
    denial_amount = adj[adj["is_denial"]].groupby("remit_id")["amount"].sum()
    has_denial = adj[adj["is_denial"]].groupby("remit_id").size() > 0
    # primary CARC: largest denial adjustment, else largest adjustment of any kind
    ranked = adj.sort_values(
        ["remit_id", "is_denial", "abs_amount"], ascending=[True, False, False]
    )
    primary = ranked.drop_duplicates("remit_id").set_index("remit_id")

    status = first["status_code"].astype(str)
    paid = first["paid_amount"].astype(float)
    charge = first["total_charge"].astype(float)
    rid = first["remit_id"]
    den_amt = rid.map(denial_amount).fillna(0.0).astype(float)
    any_denial = rid.map(has_denial).fillna(False).astype(bool)
    denied = (
        (status == DENIED_STATUS)
        | ((paid.round(2) == 0) & any_denial)
        | ((charge > 0) & (den_amt > MOST_OF_CHARGE * charge))
    ) & ~status.isin(NOT_DENIED_STATUSES)

    out = pd.DataFrame(
        {
            "claim_id": first["claim_id"].to_numpy(),
            "remit_id": rid.to_numpy(),
            "denied": denied.to_numpy(dtype=bool),
            "remit_date": first["remit_date"].to_numpy(),
            "primary_carc": rid.map(primary["carc"]).to_numpy() if len(primary) else None,
            "primary_group": rid.map(primary["group_code"]).to_numpy() if len(primary) else None,
            "paid_amount": paid.to_numpy(),
            "status": status.to_numpy(),
        }
    )
    categories = {c: tables.carc_category(c) for c in out["primary_carc"].dropna().unique()}
    category = out["primary_carc"].map(categories).fillna("other")
    out["denial_category"] = np.where(out["denied"], category.to_numpy(dtype=object), None)
    return out[OUTCOME_COLUMNS].reset_index(drop=True)


def derive_followups(dataset: ClaimsDataset) -> pd.DataFrame:
    """Follow-ups seen in real remittance data, after a denied first adjudication.

    - **appeal**: a later remittance for the same claim_id (not cancelled by a reversal).
      Action date = that remittance's date (the appeal's own date is not in an 835).
    - **corrected_claim**: a replacement claim (frequency 7) whose REF*F8 names the payer claim
      number of the denied remittance. Action date = the replacement's submission date.

    ``recovered`` is True when the later adjudication paid more than zero;
    ``recovered_amount`` is what it paid. Only the first follow-up per denied claim is kept.
    """
    columns = ["claim_id", "action", "action_date", "resolved_date", "recovered",
               "recovered_amount"]  # fmt: skip
    outcomes = first_adjudication_outcomes(dataset)
    denied = outcomes[outcomes["denied"]]
    if denied.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    remits = effective_remittances(dataset.remittances)
    rows: list[dict[str, object]] = []
    done: set[str] = set()
    later = remits[~remits["remit_id"].isin(outcomes["remit_id"])]
    later = later[later["claim_id"].isin(denied["claim_id"])]
    for cid, group in later.groupby("claim_id", sort=False):
        nxt = group.iloc[0]
        paid = float(nxt["paid_amount"])
        rows.append(
            {
                "claim_id": cid,
                "action": "appeal",
                "action_date": nxt["remit_date"],
                "resolved_date": nxt["remit_date"],
                "recovered": paid > 0,
                "recovered_amount": max(paid, 0.0),
            }
        )
        done.add(str(cid))
    claims = dataset.claims
    if len(claims):
        pcn = remits.set_index("remit_id")["payer_claim_number"]
        denied_pcn = {
            pcn.get(r): c for r, c in zip(denied["remit_id"], denied["claim_id"], strict=True)
        }
        denied_pcn.pop(None, None)
        replacements = claims[
            (claims["frequency_code"] == "7")
            & claims["original_payer_claim_number"].isin(list(denied_pcn))
        ]
        first_paid = remits.drop_duplicates("claim_id").set_index("claim_id")
        for _, rep in replacements.iterrows():
            original = denied_pcn[rep["original_payer_claim_number"]]
            if original in done:
                continue
            result = (
                first_paid.loc[rep["claim_id"]] if rep["claim_id"] in first_paid.index else None
            )
            paid = float(result["paid_amount"]) if result is not None else 0.0
            rows.append(
                {
                    "claim_id": original,
                    "action": "corrected_claim",
                    "action_date": rep["submission_date"],
                    "resolved_date": result["remit_date"] if result is not None else pd.NaT,
                    "recovered": paid > 0,
                    "recovered_amount": max(paid, 0.0),
                }
            )
            done.add(str(original))
    return pd.DataFrame(rows, columns=columns)
