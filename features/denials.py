"""Denials as a work list: one row per denial, classified, routed and given a deadline.

Pure functions over the contract tables (:mod:`features.schema`); the rules live in CSV files
under ``features/data/`` so a billing lead changes a rule without touching code:

``reason_categories.csv``
    Per root-cause category: preventable (our own workflow), clinical (needs a physician),
    hard by default (not recoverable), default route, recovery rate when worked.
``carc.csv``
    Per CARC: description, category, whether it can be appealed at all (CO-29 cannot).
``denial_rules.csv``
    Exceptions by CARC, group code and/or RARC (blank = any): hard or not, route, a note. The
    most specific matching rule wins (more filled match columns first, then file order).
``denial_routes.csv``
    Per route: label, the follow-up action it is recorded as, what its deadline counts from,
    the effort cost of working it and the instructions, with ``{placeholders}`` filled per row.
``payer_type_defaults.csv`` (+ an optional per-payer override CSV)
    Appeal window and filing limit per payer type; per payer when the practice knows better.

Classification
    * **hard** (not recoverable, written off but tracked for root cause): the category is hard
      by default (timely filing, non-covered, duplicate), or the CARC is not appealable, or a
      rule says so.
    * **soft**: everything else. **preventable** and **clinical** come from the category.
    * A CARC missing from ``carc.csv`` is kept, classified ``unknown`` and routed to an appeal
      after a call to the payer, with a note saying the code is not in the table.
    * A front-end rejection (999/277CA) never reached adjudication: it is routed to correction
      and resubmission, never to an appeal.

Deadline
    ``appeal_deadline`` = denial date + the payer's appeal window. ``deadline`` is the one the
    route must meet: the appeal deadline for appeals, peer-to-peer and write-offs (tracking), the
    filing limit counted from the date of service for corrected claims, rebills and
    resubmissions (falls back to the appeal deadline when the service date is unknown).
    ``days_left`` counts from the as-of date; a negative value sets ``past_deadline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd

from features.codes import PAYER_TYPES, code_tables
from features.schema import ClaimsDataset, ids_in
from features.x12.outcomes import derive_followups, first_adjudication_outcomes

UNKNOWN_CATEGORY = "unknown"
REJECTION_CATEGORY = "front_end_rejection"
DENIAL = "denial"
REJECTION = "rejection"

DENIAL_FRAME_COLUMNS: tuple[str, ...] = (
    "claim_id",
    "kind",
    "payer_id",
    "payer_name",
    "payer_type",
    "payer_claim_number",
    "carc",
    "group_code",
    "rarc",
    "denial_carcs",
    "denial_date",
    "service_date",
    "denied_amount",
    "procedure_code",
    "prior_attempts",
    "worked_on",
    "rejection_reason",
)
"""The denial frame: one row per denial (or open rejection), from any source.

``carc``/``group_code`` are the primary denial adjustment; ``rarc`` holds the remittance's
remark codes joined by ``;``; ``denial_carcs`` every denial CARC on it; ``worked_on`` the date
of the first follow-up (NaT when none); ``prior_attempts`` how many earlier submissions of the
same service were denied before this one (a denied corrected claim has at least 1).
"""


# -- rules as data -------------------------------------------------------------------------------
def _read_csv(path: str | Path | None, default_name: str) -> pd.DataFrame:
    if path is None:
        source = resources.files("features") / "data" / default_name
        with source.open("r", encoding="utf-8") as handle:
            return pd.read_csv(handle, dtype=str, keep_default_na=False)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@dataclass(frozen=True)
class DenialRules:
    """The routes and the CARC/RARC exceptions (see the module docstring)."""

    routes: pd.DataFrame
    """Indexed by route: label, followup_action, deadline_basis, effort_cost, default_recovery,
    instructions."""
    exceptions: pd.DataFrame
    """carc, group_code, rarc (blank = any), hard (True/False/None = category default), route,
    note; sorted most specific first."""


def load_denial_rules(
    routes_path: str | Path | None = None, rules_path: str | Path | None = None
) -> DenialRules:
    """Read the route and exception tables (package defaults when no path is given).

    Raises ``ValueError`` naming the offending value when a rule points at an unknown route or
    a deadline basis is not ``appeal_window``/``filing_limit``.
    """
    routes = _read_csv(routes_path, "denial_routes.csv")
    routes["effort_cost"] = routes["effort_cost"].astype(float)
    routes["default_recovery"] = pd.to_numeric(routes["default_recovery"], errors="coerce")
    if routes["route"].duplicated().any():
        raise ValueError("denial_routes.csv defines a route twice")
    routes = routes.set_index("route")
    bad_basis = set(routes["deadline_basis"]) - {"appeal_window", "filing_limit"}
    if bad_basis:
        raise ValueError(
            f"denial_routes.csv: deadline_basis must be appeal_window or filing_limit, got "
            f"{sorted(bad_basis)}"
        )
    rules = _read_csv(rules_path, "denial_rules.csv")
    for column in ("carc", "group_code", "rarc"):
        rules[column] = rules[column].str.strip().str.upper()
    rules["hard"] = rules["hard"].str.strip().str.lower().map({"true": True, "false": False})
    rules["hard"] = rules["hard"].astype(object).where(rules["hard"].notna(), None)
    unknown_routes = set(rules["route"]) - set(routes.index) - {""}
    categories = code_tables().reason_categories
    unknown_routes |= set(categories["default_route"]) - set(routes.index)
    if unknown_routes:
        raise ValueError(
            f"routes {sorted(unknown_routes)} are used by denial_rules.csv or "
            "reason_categories.csv but not defined in denial_routes.csv"
        )
    specificity = (rules[["carc", "group_code", "rarc"]] != "").sum(axis=1)
    rules = rules.assign(_specificity=specificity, _order=range(len(rules)))
    rules = rules.sort_values(["_specificity", "_order"], ascending=[False, True])
    return DenialRules(routes=routes, exceptions=rules.drop(columns=["_specificity", "_order"]))


@lru_cache(maxsize=1)
def default_denial_rules() -> DenialRules:
    """The package's rule tables, loaded once."""
    return load_denial_rules()


@dataclass(frozen=True)
class PayerWindows:
    """Appeal windows and filing limits: payer-type defaults, optionally overridden per payer.

    ``overrides`` is indexed by payer_id with ``appeal_window_days``, ``timely_filing_days``
    (either may be missing: the payer type's default applies) and optionally ``payer_type``
    (used when the input has no payer type, e.g. 835 files without their 837s).
    """

    defaults: pd.DataFrame
    overrides: pd.DataFrame

    def payer_type_for(self, payer_id: pd.Series, payer_type: pd.Series) -> pd.Series:
        """The row's payer type, else the override table's, else ``other``."""
        known = payer_type.where(payer_type.isin(PAYER_TYPES))
        if "payer_type" in self.overrides.columns:
            known = known.fillna(payer_id.map(self.overrides["payer_type"].replace("", np.nan)))
        return known.fillna("other").astype(str)

    def windows(self, payer_id: pd.Series, payer_type: pd.Series) -> pd.DataFrame:
        """``appeal_window_days``, ``timely_filing_days`` and ``window_source`` per row."""
        types = self.payer_type_for(payer_id, payer_type)
        out = pd.DataFrame(index=payer_id.index)
        source = pd.Series("payer type default", index=payer_id.index, dtype=object)
        for column in ("appeal_window_days", "timely_filing_days"):
            default = types.map(self.defaults[column]).astype(float)
            override = payer_id.map(self.overrides[column]) if len(self.overrides) else None
            if override is not None:
                override = pd.to_numeric(override, errors="coerce")
                source = source.where(override.isna(), "payer override")
                default = override.fillna(default)
            out[column] = default.astype(int)
        out["window_source"] = source
        return out


def load_payer_windows(override_path: str | Path | None = None) -> PayerWindows:
    """Payer-type defaults from ``payer_type_defaults.csv`` plus an optional per-payer CSV.

    The override CSV has a ``payer_id`` column and any of ``appeal_window_days``,
    ``timely_filing_days``, ``payer_type``, ``payer_name`` (blank cells use the default).
    Raises ``ValueError`` when the file lacks ``payer_id`` or a window is not a positive number.
    """
    defaults = code_tables().payer_type_defaults
    if override_path is None:
        overrides = pd.DataFrame(columns=["appeal_window_days", "timely_filing_days"])
        return PayerWindows(defaults=defaults, overrides=overrides)
    raw = pd.read_csv(override_path, dtype=str, keep_default_na=False)
    if "payer_id" not in raw.columns:
        raise ValueError(f"payer override file {override_path} needs a payer_id column")
    raw["payer_id"] = raw["payer_id"].str.strip()
    for column in ("appeal_window_days", "timely_filing_days"):
        if column not in raw.columns:
            raw[column] = ""
        numbers = pd.to_numeric(raw[column].replace("", np.nan), errors="coerce")
        bad = raw.loc[(raw[column] != "") & ~(numbers > 0), "payer_id"]
        if len(bad):
            raise ValueError(
                f"payer override file {override_path}: {column} must be a positive number of "
                f"days (payer_id {', '.join(bad.head(3))})"
            )
        raw[column] = numbers
    if "payer_type" in raw.columns:
        bad = raw.loc[(raw["payer_type"] != "") & ~raw["payer_type"].isin(PAYER_TYPES), "payer_id"]
        if len(bad):
            raise ValueError(
                f"payer override file {override_path}: payer_type must be one of "
                f"{', '.join(PAYER_TYPES)} (payer_id {', '.join(bad.head(3))})"
            )
    return PayerWindows(defaults=defaults, overrides=raw.set_index("payer_id"))


# -- the denial frame from a data set ------------------------------------------------------------
def _joined(values: pd.Series) -> str:
    return ";".join(sorted({str(v) for v in values if isinstance(v, str) and v}))


def denials_from_dataset(
    dataset: ClaimsDataset,
    include_rejections: bool = True,
    outcomes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per denied first adjudication (and per open front-end rejection).

    Works with a full data set or with 835 remittances alone (claims may be empty: the payer
    and amounts then come from the remittance, the service date stays unknown). Follow-ups come
    from ``dataset.followups``, or are derived from later remittances when that table is empty.
    Columns: :data:`DENIAL_FRAME_COLUMNS`. ``outcomes``: the data set's
    :func:`~features.x12.outcomes.first_adjudication_outcomes`, when the caller has them already.
    """
    if outcomes is None:
        outcomes = first_adjudication_outcomes(dataset)
    denied = outcomes[outcomes["denied"].astype(bool)]
    remits = dataset.remittances.set_index("remit_id")
    frame = pd.DataFrame(
        {
            "claim_id": denied["claim_id"].astype(str).to_numpy(),
            "kind": DENIAL,
            "remit_id": denied["remit_id"].to_numpy(),
            "carc": denied["primary_carc"].to_numpy(),
            "group_code": denied["primary_group"].to_numpy(),
            "denial_date": pd.to_datetime(denied["remit_date"]).to_numpy(),
        }
    )
    rid = frame["remit_id"]
    frame["payer_claim_number"] = rid.map(remits["payer_claim_number"])
    remit_charge = rid.map(remits["total_charge"]).astype(float)
    remit_paid = rid.map(remits["paid_amount"]).astype(float).fillna(0.0)
    claims = dataset.claims.set_index("claim_id")
    cid = frame["claim_id"]

    def claim_field(column: str) -> pd.Series:
        return pd.Series(claims[column].reindex(cid).to_numpy(), index=frame.index)

    frame["payer_id"] = claim_field("payer_id").fillna(rid.map(remits["payer_id"]))
    frame["payer_name"] = claim_field("payer_name").fillna(rid.map(remits["payer_name"]))
    frame["payer_type"] = claim_field("payer_type")
    frame["service_date"] = claim_field("service_date_from")
    charge = remit_charge.fillna(claim_field("total_charge").astype(float))
    frame["denied_amount"] = (charge - remit_paid).clip(lower=0.0).round(2)
    procedures = main_procedures(dataset)
    frame["procedure_code"] = procedures.reindex(cid).to_numpy()

    adj = dataset.adjustments[dataset.adjustments["remit_id"].isin(rid)]
    tables = code_tables()
    is_denial = tables.denial_mask(adj["carc"], adj["group_code"])
    frame["denial_carcs"] = rid.map(adj[is_denial].groupby("remit_id")["carc"].agg(_joined))
    remarks = dataset.remarks[dataset.remarks["remit_id"].isin(rid)]
    frame["rarc"] = rid.map(remarks.groupby("remit_id")["rarc"].agg(_joined))
    frame["prior_attempts"] = _prior_attempts(dataset, frame)
    followups = dataset.followups if len(dataset.followups) else derive_followups(dataset)
    first_action = pd.to_datetime(followups["action_date"]).groupby(followups["claim_id"]).min()
    frame["worked_on"] = pd.to_datetime(first_action.reindex(cid).to_numpy())
    frame["rejection_reason"] = None
    frame = frame.drop(columns="remit_id")
    if include_rejections and len(dataset.rejections):
        frame = pd.concat([frame, _open_rejections(dataset, outcomes["claim_id"], procedures)])
    return normalise_denial_frame(frame)


def main_procedures(dataset: ClaimsDataset) -> pd.Series:
    """The highest-charge procedure of each claim, indexed by claim_id (from the 837 lines,
    else the 835 lines; the first such line on a tie)."""
    lines = dataset.lines if len(dataset.lines) else dataset.remit_lines
    if lines.empty:
        return pd.Series(dtype=object)
    lines = lines.reset_index(drop=True)
    # idxmax per claim: a million claims' lines sorted by their text IDs took seconds.
    first = lines.groupby("claim_id", sort=False)["line_charge"].idxmax()
    codes = lines["procedure_code"].take(first.to_numpy())
    return pd.Series(codes.to_numpy(), index=first.index, name="procedure_code")


def _prior_attempts(dataset: ClaimsDataset, frame: pd.DataFrame) -> pd.Series:
    """Depth of the replacement chain: a corrected claim (frequency 7) naming a denied payer
    claim number is one attempt after the claim it replaces (two levels followed)."""
    claims = dataset.claims
    if claims.empty:
        return pd.Series(0, index=frame.index)
    owner = dataset.remittances.drop_duplicates("payer_claim_number").set_index(
        "payer_claim_number"
    )["claim_id"]
    replaces = claims.set_index("claim_id")["original_payer_claim_number"].map(owner)
    replaces = replaces[claims.set_index("claim_id")["frequency_code"] == "7"].dropna()
    depth = pd.Series(0, index=claims["claim_id"].to_numpy())
    for _ in range(2):
        parent_depth = replaces.map(depth).fillna(0)
        depth.loc[replaces.index] = (parent_depth + 1).astype(int).to_numpy()
    return frame["claim_id"].map(depth).fillna(0).astype(int)


def _open_rejections(
    dataset: ClaimsDataset, adjudicated: pd.Series, procedures: pd.Series
) -> pd.DataFrame:
    """Rejections of claims that never reached adjudication (latest rejection per claim)."""
    rej = dataset.rejections[~ids_in(dataset.rejections["claim_id"], adjudicated)]
    rej = rej.sort_values("rejection_date").drop_duplicates("claim_id", keep="last")
    claims = dataset.claims.set_index("claim_id")
    cid = rej["claim_id"].astype(str)

    def claim_field(column: str) -> np.ndarray:
        return claims[column].reindex(cid).to_numpy()

    return pd.DataFrame(
        {
            "claim_id": cid.to_numpy(),
            "kind": REJECTION,
            "payer_id": claim_field("payer_id"),
            "payer_name": claim_field("payer_name"),
            "payer_type": claim_field("payer_type"),
            "payer_claim_number": None,
            "carc": None,
            "group_code": None,
            "rarc": None,
            "denial_carcs": None,
            "denial_date": pd.to_datetime(rej["rejection_date"]).to_numpy(),
            "service_date": claim_field("service_date_from"),
            "denied_amount": claim_field("total_charge").astype(float),
            "procedure_code": procedures.reindex(cid).to_numpy(),
            "prior_attempts": 0,
            "worked_on": pd.NaT,
            "rejection_reason": rej["reason"].to_numpy(),
        }
    )


def normalise_denial_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce any denial frame (from a data set or an API request) to the standard columns.

    Missing optional columns are added empty; a frame without ``claim_id``, ``denial_date`` or
    ``denied_amount`` raises ``ValueError`` naming them.
    """
    missing = [c for c in ("claim_id", "denial_date", "denied_amount") if c not in frame.columns]
    if missing:
        raise ValueError(f"the denials table needs column(s) {', '.join(missing)}")
    out = frame.reset_index(drop=True).copy()
    for column in DENIAL_FRAME_COLUMNS:
        if column not in out.columns:
            out[column] = None
    out["kind"] = out["kind"].fillna(DENIAL)
    for column in ("denial_date", "service_date", "worked_on"):
        out[column] = pd.to_datetime(out[column]).astype("datetime64[ns]").dt.normalize()
    out["denied_amount"] = pd.to_numeric(out["denied_amount"]).astype(float).fillna(0.0)
    out["prior_attempts"] = pd.to_numeric(out["prior_attempts"]).fillna(0).astype(int)
    for column in ("carc", "group_code", "rarc", "denial_carcs"):
        text = out[column].astype(object).where(out[column].notna(), None)
        out[column] = [v.strip().upper() if isinstance(v, str) and v.strip() else None
                       for v in text]  # fmt: skip
    out["claim_id"] = out["claim_id"].astype(str)
    return out[list(DENIAL_FRAME_COLUMNS)]


# -- classification ------------------------------------------------------------------------------
def _exception_for(
    carc: str | None, group: str | None, rarcs: set[str], exceptions: pd.DataFrame
) -> pd.Series | None:
    for _, rule in exceptions.iterrows():
        if rule["carc"] and rule["carc"] != (carc or ""):
            continue
        if rule["group_code"] and rule["group_code"] != (group or ""):
            continue
        if rule["rarc"] and rule["rarc"] not in rarcs:
            continue
        return rule
    return None


CLASSIFIED_COLUMNS = (
    "category",
    "category_label",
    "known_carc",
    "reason",
    "hard",
    "preventable",
    "clinical",
    "route",
    "route_label",
    "followup_action",
    "note",
)
"""What :func:`classify` adds to a denial frame."""


def classify(frame: pd.DataFrame, rules: DenialRules | None = None) -> pd.DataFrame:
    """Add category, plain-language reason, hard/preventable/clinical, route and a note.

    Added columns: ``category, category_label, known_carc, reason, hard, preventable, clinical,
    route, route_label, followup_action, note``. Rows are never dropped.
    """
    rules = rules or default_denial_rules()
    tables = code_tables()
    categories = tables.reason_categories
    out = frame.copy()
    records: list[dict[str, object]] = []
    # Classify each distinct (kind, carc, group, rarc) once: denials repeat a few dozen codes.
    keys = out[["kind", "carc", "group_code", "rarc"]].astype(object).where(out.notna(), None)
    cache: dict[tuple[object, ...], dict[str, object]] = {}
    for key in keys.itertuples(index=False, name=None):
        if key not in cache:
            cache[key] = _classify_one(*key, rules=rules, categories=categories)
        records.append(cache[key])
    # The columns are named, not inferred from the records: an empty frame (every denial after
    # the request's as_of) must still come out with them.
    added = pd.DataFrame.from_records(records, columns=list(CLASSIFIED_COLUMNS), index=out.index)
    for column in added.columns:
        out[column] = added[column]
    for column in ("hard", "preventable", "clinical", "known_carc"):
        out[column] = out[column].astype(bool)
    return out


def _classify_one(
    kind: str,
    carc: str | None,
    group: str | None,
    rarc: str | None,
    *,
    rules: DenialRules,
    categories: pd.DataFrame,
) -> dict[str, object]:
    tables = code_tables()
    if kind == REJECTION:
        route = "resubmission"
        return {
            "category": REJECTION_CATEGORY,
            "category_label": "Front-end rejection",
            "known_carc": False,
            "reason": "Rejected before adjudication (999/277CA): the payer never processed it",
            "hard": False,
            "preventable": True,
            "clinical": False,
            "route": route,
            "route_label": rules.routes.loc[route, "label"],
            "followup_action": "",
            "note": "A rejection is not a denial: correct and resubmit, never appeal",
        }
    info = tables.carc_info(carc) if carc else None
    code = f"{group}-{carc}" if group else str(carc or "?")
    notes: list[str] = []
    if info is None:
        category = UNKNOWN_CATEGORY
        label = "Unknown / payer-specific"
        reason = f"{code}: code not in our CARC table"
        hard, preventable, clinical = False, False, False
        route = str(categories.loc["other", "default_route"])
        notes.append(
            f"CARC {carc or '(none)'} is not in features/data/carc.csv: call the payer for the "
            "reason, then add the code to the table"
        )
    else:
        category = info.category
        row = categories.loc[category] if category in categories.index else categories.loc["other"]
        label = str(row["label"])
        reason = f"{code}: {info.description}"
        hard = bool(row["hard_by_default"]) or not info.appealable
        preventable, clinical = bool(row["preventable"]), bool(row["clinical"])
        route = str(row["default_route"])
        if not info.appealable:
            notes.append(f"{code} is not appealable")
    rarcs = set(rarc.split(";")) if rarc else set()
    if rarcs:
        reason += f" (remarks {', '.join(sorted(rarcs))})"
    rule = _exception_for(carc, group, rarcs, rules.exceptions)
    if rule is not None:
        if isinstance(rule["hard"], bool):
            hard = rule["hard"]
        if rule["route"]:
            route = str(rule["route"])
        if rule["note"]:
            notes.append(str(rule["note"]))
    if hard:
        route = "write_off"
    elif route == "write_off":
        route = "appeal"  # a soft denial is worked; rules marking it soft get an appeal
    return {
        "category": category,
        "category_label": label,
        "known_carc": info is not None,
        "reason": reason,
        "hard": hard,
        "preventable": preventable,
        "clinical": clinical,
        "route": route,
        "route_label": rules.routes.loc[route, "label"],
        "followup_action": rules.routes.loc[route, "followup_action"],
        "note": "; ".join(notes),
    }


# -- deadlines -----------------------------------------------------------------------------------
AsOf: TypeAlias = pd.Timestamp | pd.Series | None


def resolve_as_of(frame: pd.DataFrame, as_of: AsOf) -> pd.Series:
    """The as-of date per row: a fixed date, a per-row series, or (``None``) the row's own
    denial date, i.e. the moment the denial was identified."""
    if as_of is None:
        return frame["denial_date"]
    if isinstance(as_of, pd.Series):
        return pd.to_datetime(as_of).reindex(frame.index).astype("datetime64[ns]").dt.normalize()
    return pd.Series(pd.Timestamp(as_of).normalize(), index=frame.index).astype("datetime64[ns]")


def add_deadlines(
    frame: pd.DataFrame,
    windows: PayerWindows | None = None,
    as_of: AsOf = None,
    rules: DenialRules | None = None,
) -> pd.DataFrame:
    """Add windows, deadlines, days left and the timing features, as of ``as_of``.

    Needs a classified frame (``route``). Added: ``payer_type`` (filled), ``appeal_window_days,
    timely_filing_days, window_source, appeal_deadline, filing_deadline, deadline,
    deadline_basis, as_of, days_left, past_deadline, days_since_denial, days_since_service,
    days_left_appeal, days_left_filing``.
    """
    windows = windows or load_payer_windows()
    rules = rules or default_denial_rules()
    out = frame.copy()
    out["payer_type"] = windows.payer_type_for(out["payer_id"], out["payer_type"])
    win = windows.windows(out["payer_id"], out["payer_type"])
    for column in win.columns:
        out[column] = win[column]
    day = pd.to_timedelta(1, unit="D")
    out["appeal_deadline"] = out["denial_date"] + out["appeal_window_days"] * day
    out["filing_deadline"] = out["service_date"] + out["timely_filing_days"] * day
    basis = out["route"].map(rules.routes["deadline_basis"]).fillna("appeal_window")
    by_filing = (basis == "filing_limit") & out["filing_deadline"].notna()
    out["deadline"] = out["appeal_deadline"].where(~by_filing, out["filing_deadline"])
    out["deadline_basis"] = np.where(by_filing, "filing limit", "appeal window")
    as_of_day = resolve_as_of(out, as_of)
    out["as_of"] = as_of_day
    out["days_left"] = (out["deadline"] - as_of_day).dt.days.astype(int)
    out["past_deadline"] = out["days_left"] < 0
    out["days_since_denial"] = (as_of_day - out["denial_date"]).dt.days.astype(int)
    out["days_since_service"] = (as_of_day - out["service_date"]).dt.days.astype(float)
    out["days_left_appeal"] = (out["appeal_deadline"] - as_of_day).dt.days.astype(int)
    out["days_left_filing"] = (out["filing_deadline"] - as_of_day).dt.days.astype(float)
    return out


def prepare_denials(
    frame: pd.DataFrame,
    windows: PayerWindows | None = None,
    as_of: AsOf = None,
    rules: DenialRules | None = None,
) -> pd.DataFrame:
    """Normalise, classify and add deadlines: the frame the recovery model and worklist use."""
    rules = rules or default_denial_rules()
    classified = classify(normalise_denial_frame(frame), rules)
    return add_deadlines(classified, windows, as_of, rules)


def fill_instructions(frame: pd.DataFrame, rules: DenialRules | None = None) -> pd.Series:
    """The route's instructions with the row's values (payer claim number, CARC, dates)."""
    rules = rules or default_denial_rules()
    templates = frame["route"].map(rules.routes["instructions"]).fillna("")
    out = []
    for template, row in zip(templates, frame.itertuples(index=False), strict=True):
        values = _FormatValues(
            payer_claim_number=row.payer_claim_number or "(ask the payer)",
            group_code=row.group_code or "",
            carc=row.carc or "",
            denial_date=(
                row.denial_date.strftime("%Y-%m-%d")
                if isinstance(row.denial_date, pd.Timestamp) and pd.notna(row.denial_date)
                else ""
            ),
            payer_name=row.payer_name or "the payer",
            category_label=row.category_label,
        )
        out.append(template.format_map(values))
    return pd.Series(out, index=frame.index, dtype=object)


class _FormatValues(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
