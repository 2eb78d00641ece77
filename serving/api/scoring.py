"""The API's service functions: a validated request in, a scored response out.

Routes stay thin by calling these. A JSON request becomes the three contract tables and goes
through :func:`features.claim_tables.validated`, the same validation batch scoring applies, so a
claim the batch path would quarantine is refused here too (as a per-claim error). Scores come
from :meth:`serving.service.ScoringService.score`, the one scoring path.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.claim_tables import ClaimTables, validated
from features.schema import CLAIMS, DIAGNOSES, LINES
from serving.api.problems import pydantic_problems, quarantine_problems
from serving.schemas import (
    ClaimErrorOut,
    ClaimIn,
    ClaimScoreOut,
    FieldProblem,
    InvalidClaim,
    ScoreRequest,
    ScoreResponse,
)
from serving.service import ClaimScore, ScoringService


class BatchTooLarge(Exception):
    """More claims in one request than ``max_batch_claims`` allows (answered with 413)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"the request holds {count:,} claims but at most {limit:,} are accepted per request "
            "(setting DENIAL_RISK_MAX_BATCH_CLAIMS); split the batch into smaller requests, or "
            "use `denial-risk score` for files"
        )


class NothingScored(Exception):
    """Every claim of the request failed validation (answered with 422 and the problems)."""

    def __init__(self, errors: list[ClaimErrorOut]) -> None:
        super().__init__(
            "no claim could be scored: "
            + ("the claim has" if len(errors) == 1 else f"all {len(errors)} claims have")
            + " problems listed in `errors`; fix them and send the request again"
        )
        self.errors = errors


@dataclass
class ScoringOutcome:
    """The response, plus the raw probabilities for the score-distribution metric."""

    response: ScoreResponse
    probabilities: list[float] = field(default_factory=list)


def claims_to_frames(claims: list[ClaimIn]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The contract's ``claims``, ``lines`` and ``diagnoses`` tables for validated claims.

    Defaults the contract needs but a caller may leave out are filled here: ``total_charge``
    (sum of line charges), ``service_date_to`` and each line's ``service_date``
    (``service_date_from``), ``line_number`` (position on the claim).
    """
    claim_rows, line_rows, dx_rows = [], [], []
    for claim in claims:
        row = claim.model_dump(exclude={"lines", "diagnoses"}, mode="python")
        row["claim_type"] = claim.claim_type.value
        row["frequency_code"] = claim.frequency_code.value
        row["payer_type"] = str(claim.payer_type.value)
        row["patient_sex"] = claim.patient_sex.value if claim.patient_sex else None
        row["service_date_to"] = claim.service_date_to or claim.service_date_from
        if row["total_charge"] is None:
            row["total_charge"] = round(sum(line.line_charge for line in claim.lines), 2)
        claim_rows.append(row)
        for position, line in enumerate(claim.lines, start=1):
            line_row = line.model_dump(mode="python")
            line_row["claim_id"] = claim.claim_id
            line_row["line_number"] = line.line_number or position
            line_row["service_date"] = line.service_date or claim.service_date_from
            line_rows.append(line_row)
        for position, code in enumerate(claim.diagnoses, start=1):
            dx_rows.append({"claim_id": claim.claim_id, "position": position, "code": code})

    def seconds(dates: list[Any]) -> np.ndarray:
        # What pd.to_datetime makes of datetime.date values (and None): midnight timestamps at
        # second resolution. Counting days from 1970-01-01 (ordinal 719,163) gives exactly that
        # without its fixed cost (most of a one-claim request) or numpy's slow per-date parsing.
        nat = np.iinfo(np.int64).min
        days = [nat if day is None else day.toordinal() - 719_163 for day in dates]
        return np.array(days, dtype=np.int64).view("datetime64[D]").astype("datetime64[s]")

    # A list per column rather than the row dicts: pandas builds a frame from those faster.
    claim_dates = ("submission_date", "service_date_from", "service_date_to", "patient_birth_date")
    tables = []
    for rows, columns, dates in (
        (claim_rows, CLAIMS.columns, claim_dates),
        (line_rows, LINES.columns, ("service_date",)),
        (dx_rows, DIAGNOSES.columns, ()),
    ):
        data: dict[str, Any] = (
            {name: [row[name] for row in rows] for name in columns}
            if rows
            # Nothing to infer a dtype from: pandas makes such columns object.
            else {name: np.array([], dtype=object) for name in columns}
        )
        for name in dates:
            data[name] = seconds(list(data[name]))
        tables.append(pd.DataFrame(data))
    return tables[0], tables[1], tables[2]


def claims_payload(tables: ClaimTables) -> list[dict[str, Any]]:
    """The request JSON (``claims`` list) for contract tables: the inverse of
    :func:`claims_to_frames`, for clients, tests and benchmarks that start from Parquet."""
    lines = {cid: g for cid, g in tables.lines.sort_values("line_number").groupby("claim_id")}
    dx = {cid: g for cid, g in tables.diagnoses.sort_values("position").groupby("claim_id")}
    payload = []
    for claim in tables.claims.to_dict("records"):
        item = {k: _json_value(v) for k, v in claim.items() if k in CLAIMS.columns}
        claim_lines = lines.get(claim["claim_id"])
        item["lines"] = [
            {k: _json_value(v) for k, v in line.items() if k != "claim_id"}
            for line in (claim_lines.to_dict("records") if claim_lines is not None else [])
        ]
        codes = dx.get(claim["claim_id"])
        item["diagnoses"] = [] if codes is None else [str(c) for c in codes["code"]]
        payload.append(item)
    return payload


def _json_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def score_request(
    service: ScoringService, request: ScoreRequest, max_batch_claims: int
) -> ScoringOutcome:
    """Score the valid claims of a request; report the others with what to fix.

    Raises :class:`BatchTooLarge` over the configured batch size and :class:`NothingScored`
    when no claim is valid.
    """
    if len(request.claims) > max_batch_claims:
        raise BatchTooLarge(len(request.claims), max_batch_claims)
    errors: list[ClaimErrorOut] = []
    valid: list[tuple[int, ClaimIn]] = []
    for index, item in enumerate(request.claims):
        if isinstance(item, InvalidClaim):
            problems = pydantic_problems(item.errors, prefix=f"claims[{index}]")
            errors.append(ClaimErrorOut(index=index, claim_id=item.claim_id, problems=problems))
        else:
            valid.append((index, item))

    valid = _without_repeated_ids(valid, errors)
    index_of: dict[str, list[int]] = {}
    line_index: dict[tuple[str, int], int] = {}
    for index, claim in valid:
        index_of.setdefault(claim.claim_id, []).append(index)
        for position, line in enumerate(claim.lines):
            line_index[(claim.claim_id, line.line_number or position + 1)] = position
    if not valid:
        raise NothingScored(errors)
    tables, rejects = validated(*claims_to_frames([claim for _, claim in valid]))
    if len(rejects):
        prefixes = {cid: f"claims[{indices[0]}]" for cid, indices in index_of.items()}
        for claim_id, problems in quarantine_problems(rejects, prefixes, line_index).items():
            indices: list[int | None] = list(index_of.get(claim_id, [])) or [None]
            for where in indices:
                errors.append(ClaimErrorOut(index=where, claim_id=claim_id, problems=problems))

    return _respond(service, tables, index_of, errors, request.explain, request.top_k)


def _without_repeated_ids(
    valid: list[tuple[int, ClaimIn]], errors: list[ClaimErrorOut]
) -> list[tuple[int, ClaimIn]]:
    """Refuse every claim whose claim_id another claim of the request also uses.

    Which of two claims with one ID the caller meant cannot be known, so neither is scored
    (the contract quarantines both too; this says so in one clear sentence).
    """
    seen: dict[str, list[int]] = {}
    for index, claim in valid:
        seen.setdefault(claim.claim_id, []).append(index)
    repeated = {cid: indices for cid, indices in seen.items() if len(indices) > 1}
    if not repeated:
        return valid
    for claim_id, indices in repeated.items():
        for index in indices:
            others = ", ".join(f"claims[{i}]" for i in indices if i != index)
            problem = FieldProblem(
                field=f"claims[{index}].claim_id",
                message=f"claim_id {claim_id!r} is also used by {others}; give each claim its "
                "own claim_id (patient control number)",
            )
            errors.append(ClaimErrorOut(index=index, claim_id=claim_id, problems=[problem]))
    return [(index, claim) for index, claim in valid if claim.claim_id not in repeated]


def score_837(
    service: ScoringService, body: str, explain: bool, top_k: int, max_batch_claims: int
) -> ScoringOutcome:
    """Score the claims of an 837P/837I interchange; quarantined claims become errors.

    The X12 reader works on files, so the body goes to a private temporary file first.
    """
    from features.x12.ingest import read_claims_837

    with tempfile.TemporaryDirectory(prefix="denial-risk-837-") as folder:
        source = Path(folder) / "request.837"
        source.write_text(body, encoding="latin-1")
        dataset, quarantine = read_claims_837([source], workers=1)
    tables = ClaimTables.from_dataset(dataset)
    if len(tables) > max_batch_claims:
        raise BatchTooLarge(len(tables), max_batch_claims)
    errors = []
    for row in quarantine.to_dict("records"):
        claim_id = row.get("claim_id") if isinstance(row.get("claim_id"), str) else None
        where = row.get("position")
        field_path = f"segment {where}" if where not in (None, "", "file") else "body"
        problem = FieldProblem(field=field_path, message=str(row.get("reason", "")))
        errors.append(ClaimErrorOut(index=None, claim_id=claim_id or None, problems=[problem]))
    index_of = {cid: [i] for i, cid in enumerate(tables.claims["claim_id"])}
    if len(tables) == 0 and not errors:
        errors.append(
            ClaimErrorOut(
                index=None,
                claim_id=None,
                problems=[
                    FieldProblem(
                        field="body",
                        message="no claim (CLM segment) found; send one 837P/837I interchange "
                        "starting with ISA",
                    )
                ],
            )
        )
    return _respond(service, tables, index_of, errors, explain, top_k)


def _respond(
    service: ScoringService,
    tables: ClaimTables,
    index_of: dict[str, list[int]],
    errors: list[ClaimErrorOut],
    explain: bool,
    top_k: int,
) -> ScoringOutcome:
    if len(tables) == 0:
        raise NothingScored(errors)
    scores = service.score(tables, explain=explain, top_k=top_k)
    results = [_score_out(index_of[score.claim_id][0], score) for score in scores]
    results.sort(key=lambda r: r.index)
    errors.sort(key=lambda e: (e.index is None, e.index or 0))
    response = ScoreResponse(
        model_name=service.info.name,
        model_version=service.info.version,
        scored=len(results),
        rejected=len(errors),
        results=results,
        errors=errors,
    )
    return ScoringOutcome(response, [s.denial_probability for s in scores])


def _score_out(index: int, score: ClaimScore) -> ClaimScoreOut:
    # model_validate on a plain dict: the service's dataclasses are the source of truth.
    data = score.as_dict()
    data["index"] = index
    return ClaimScoreOut.model_validate(data)


__all__ = [
    "BatchTooLarge",
    "claims_payload",
    "NothingScored",
    "ScoringOutcome",
    "claims_to_frames",
    "score_837",
    "score_request",
]
