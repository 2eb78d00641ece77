"""The API's service functions: a validated request in, a scored response out.

Routes stay thin by calling these. A JSON request becomes the three contract tables and goes
through :func:`features.claim_tables.validated`, the same validation batch scoring applies, so a
claim the batch path would quarantine is refused here too (as a per-claim error). Scores come
from :meth:`serving.service.ScoringService.score`, the one scoring path.

A request is scored in two steps so that concurrent requests can share one scoring call
(:mod:`serving.api.coalesce`): :func:`prepare_request` applies the per-request checks (the route
calls it through :func:`prepare_body`, which counts the claims of the parsed JSON before any is
validated), and :func:`score_together` scores any number of prepared requests that
:class:`SharedCall` admits together, giving each exactly the answer it would get alone.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.claim_tables import ClaimTables, validated
from features.schema import CLAIMS, DIAGNOSES, LINES, OPTIONAL_COLUMNS, contract_frame
from serving.api.bodies import validated_body
from serving.api.problems import pydantic_problems, quarantine_problems
from serving.schemas import (
    ClaimErrorOut,
    ClaimIn,
    FieldProblem,
    InvalidClaim,
    ScoreRequest,
    ScoreResponse,
    ServiceLineIn,
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

    Every other column is the request field of the same name: the request models carry every
    contract column (enums as their codes, the rest as the contract's plain values), so each
    is read off the models' attributes (not ``model_dump``: a dict per claim and line costs more
    than the rest) and built once in the contract's dtypes
    (:func:`features.schema.contract_frame`), so validation has nothing left to convert.
    """
    lines = [
        (claim, position, line)
        for claim in claims
        for position, line in enumerate(claim.lines, start=1)
    ]
    codes = [
        (claim.claim_id, position, code)
        for claim in claims
        for position, code in enumerate(claim.diagnoses, start=1)
    ]
    claim_values: dict[str, list[Any]] = {
        "claim_type": [claim.claim_type.value for claim in claims],
        "frequency_code": [claim.frequency_code.value for claim in claims],
        "payer_type": [str(claim.payer_type.value) for claim in claims],
        "patient_sex": [claim.patient_sex.value if claim.patient_sex else None for claim in claims],
        "service_date_to": [claim.service_date_to or claim.service_date_from for claim in claims],
        "total_charge": [_total_charge(claim) for claim in claims],
    }
    line_values: dict[str, list[Any]] = {
        "claim_id": [claim.claim_id for claim, _, _ in lines],
        "line_number": [line.line_number or position for _, position, line in lines],
        "service_date": [line.service_date or claim.service_date_from for claim, _, line in lines],
    }
    diagnosis_values: dict[str, list[Any]] = {
        "claim_id": [claim_id for claim_id, _, _ in codes],
        "position": [position for _, position, _ in codes],
        "code": [code for _, _, code in codes],
    }
    claim_values.update(_fields(claims, _CLAIM_FIELDS_AS_GIVEN))
    line_values.update(_fields([line for _, _, line in lines], _LINE_FIELDS_AS_GIVEN))
    return (
        contract_frame("claims", {name: claim_values[name] for name in CLAIMS.columns}),
        contract_frame("lines", {name: line_values[name] for name in LINES.columns}),
        contract_frame("diagnoses", {name: diagnosis_values[name] for name in DIAGNOSES.columns}),
    )


_CLAIM_FIELDS_DERIVED = frozenset(
    {"claim_type", "frequency_code", "payer_type", "patient_sex", "service_date_to", "total_charge"}
)
_LINE_FIELDS_DERIVED = frozenset({"claim_id", "line_number", "service_date"})
_CLAIM_FIELDS_AS_GIVEN = tuple(c for c in CLAIMS.columns if c not in _CLAIM_FIELDS_DERIVED)
"""Contract columns that hold the request field of the same name as it was validated: each is a
field of :class:`ClaimIn` (``test_api_whole_claim`` holds them to it)."""
_LINE_FIELDS_AS_GIVEN = tuple(c for c in LINES.columns if c not in _LINE_FIELDS_DERIVED)
"""Likewise for :class:`ServiceLineIn` and the ``lines`` table."""


def _fields(models: Sequence[ClaimIn | ServiceLineIn], names: tuple[str, ...]) -> dict[str, list]:
    """Each named field's values across ``models``: one ``attrgetter`` call per model reads
    them all, a third of the cost of a list per field on a one-claim request."""
    if not models:
        return {name: [] for name in names}
    read = attrgetter(*names)  # a tuple of values for two names or more, else the value
    rows = map(read, models) if len(names) > 1 else ((read(model),) for model in models)
    return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))


def _total_charge(claim: ClaimIn) -> float:
    if claim.total_charge is not None:
        return claim.total_charge
    return round(sum(line.line_charge for line in claim.lines), 2)


def claims_payload(tables: ClaimTables) -> list[dict[str, Any]]:
    """The request JSON (``claims`` list) for contract tables: the inverse of
    :func:`claims_to_frames`, for clients, tests and benchmarks that start from Parquet."""
    lines = {cid: g for cid, g in tables.lines.sort_values("line_number").groupby("claim_id")}
    dx = {cid: g for cid, g in tables.diagnoses.sort_values("position").groupby("claim_id")}
    payload = []
    for claim in tables.claims.to_dict("records"):
        item = _present_fields(claim, "claims", CLAIMS.columns)
        claim_lines = lines.get(claim["claim_id"])
        item["lines"] = [
            _present_fields(line, "lines", [c for c in LINES.columns if c != "claim_id"])
            for line in (claim_lines.to_dict("records") if claim_lines is not None else [])
        ]
        codes = dx.get(claim["claim_id"])
        item["diagnoses"] = [] if codes is None else [str(c) for c in codes["code"]]
        payload.append(item)
    return payload


def _present_fields(row: dict[str, Any], table: str, columns: Any) -> dict[str, Any]:
    """A row's contract fields as JSON values; an empty optional field is left out (a request
    need not name what it does not have)."""
    optional = OPTIONAL_COLUMNS.get(table, ())
    out = {}
    for name in columns:
        if name not in row:
            continue
        value = _json_value(row[name])
        if value is None and name in optional:
            continue
        out[name] = value
    return out


def _json_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class PreparedRequest:
    """A request past the schema checks, waiting to be scored alone or with others.

    ``claims`` are the claims left to score, each with its position in the request (claim_ids
    unique); ``errors`` the claims already refused. ``submission_days`` holds, for each history
    grouping the request's claims touch (see :class:`SharedCall`), their submission day; it is
    ``None`` when two claims of the request share a grouping on different days, and the
    request is then always scored alone.
    """

    claims: list[tuple[int, ClaimIn]]
    errors: list[ClaimErrorOut]
    explain: bool
    top_k: int
    claim_ids: frozenset[str] = frozenset()
    submission_days: dict[Hashable, dt.date] | None = None

    def __len__(self) -> int:
        return len(self.claims)


def prepare_request(request: ScoreRequest, max_batch_claims: int) -> PreparedRequest:
    """Refuse what the schema refused (per claim) and claim_ids used twice; keep the rest.

    Raises :class:`BatchTooLarge` over the configured batch size and :class:`NothingScored`
    when no claim is left.
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
    if not valid:
        raise NothingScored(errors)
    return PreparedRequest(
        claims=valid,
        errors=errors,
        explain=request.explain,
        top_k=request.top_k,
        claim_ids=frozenset(claim.claim_id for _, claim in valid),
        submission_days=_submission_days(claim for _, claim in valid),
    )


def prepare_body(body: Any, max_batch_claims: int) -> PreparedRequest:
    """:func:`prepare_request` for a JSON body as parsed, not validated yet.

    Its claims are counted first: over ``max_batch_claims`` it is refused with
    :class:`BatchTooLarge` before a single claim is validated (validating each claim of a
    100,001-claim body took ten seconds). A body that is not a score request raises
    :class:`fastapi.exceptions.RequestValidationError`.
    """
    request = validated_body(
        ScoreRequest,
        body,
        "claims",
        max_batch_claims,
        too_many=lambda count: BatchTooLarge(count, max_batch_claims),
    )
    return prepare_request(request, max_batch_claims)


def score_request(
    service: ScoringService, request: ScoreRequest, max_batch_claims: int
) -> ScoringOutcome:
    """Score the valid claims of a request; report the others with what to fix.

    Raises :class:`BatchTooLarge` over the configured batch size and :class:`NothingScored`
    when no claim is valid.
    """
    (answer,) = score_together(service, [prepare_request(request, max_batch_claims)])
    if isinstance(answer, NothingScored):
        raise answer
    return answer


def score_together(
    service: ScoringService, requests: Sequence[PreparedRequest]
) -> list[ScoringOutcome | NothingScored]:
    """Score several prepared requests with one validation and one ``service.score`` call.

    Each request gets the answer it would get alone (its own indices, field paths and error
    order) as long as they may share a call (:class:`SharedCall`); the fixed cost of a call
    (~14 ms) is then paid once. All must have the same ``explain`` and ``top_k`` and no
    claim_id in common. A request none of whose claims passed the contract gets its
    :class:`NothingScored` back, not raised.
    """
    explain, top_k = requests[0].explain, requests[0].top_k
    owner: dict[str, tuple[int, int]] = {}  # claim_id -> (request, position in the request)
    line_index: dict[tuple[str, int], int] = {}
    for number, prepared in enumerate(requests):
        if (prepared.explain, prepared.top_k) != (explain, top_k):
            raise ValueError("requests scored together must ask for the same explain and top_k")
        for index, claim in prepared.claims:
            if claim.claim_id in owner:
                raise ValueError(f"claim_id {claim.claim_id!r} is in two requests of one call")
            owner[claim.claim_id] = (number, index)
            for position, line in enumerate(claim.lines):
                line_index[(claim.claim_id, line.line_number or position + 1)] = position
    claims = [claim for prepared in requests for _, claim in prepared.claims]
    tables, rejects = validated(*claims_to_frames(claims))
    errors = [list(prepared.errors) for prepared in requests]
    if len(rejects):
        prefixes = {claim_id: f"claims[{index}]" for claim_id, (_, index) in owner.items()}
        for claim_id, problems in quarantine_problems(rejects, prefixes, line_index).items():
            number, where = _owner_of(claim_id, owner, len(requests))
            errors[number].append(ClaimErrorOut(index=where, claim_id=claim_id, problems=problems))
    scored: list[list[tuple[int, ClaimScore]]] = [[] for _ in requests]
    for score in service.score(tables, explain=explain, top_k=top_k) if len(tables) else []:
        number, index = owner[score.claim_id]
        scored[number].append((index, score))
    return [
        _outcome(service, mine, refused) if mine else NothingScored(refused)
        for mine, refused in zip(scored, errors, strict=True)
    ]


def _owner_of(
    claim_id: str, owner: dict[str, tuple[int, int]], requests: int
) -> tuple[int, int | None]:
    """The request and position of a quarantined claim_id."""
    if claim_id in owner:
        return owner[claim_id]
    if requests == 1:
        return 0, None  # as the single-request path always answered
    # Cannot happen (every quarantined row comes from a claim sent); never guess the owner.
    raise LookupError("a quarantined claim_id belongs to no request of the call")


class SharedCall:
    """Prepared requests one ``service.score`` call can serve, each as if it were alone.

    Claims scored together are independent but for one thing: history features count the
    *earlier submissions in the batch* as well as the stored ones
    (:meth:`features.history.HistoryFeatures.transform`: a patient's prior claims, a rendering
    provider's prior claims with the payer, ...). Every such grouping includes the patient
    (member ID) or the person (patient key), except rendering provider x payer, and only
    submissions on an *earlier* day count. So two requests may share a call unless they use the
    same claim_id, or the same patient, person or (rendering provider, payer) on different
    submission days. (``test_coalesce`` fails if the
    history groupings change.) A request whose own claims are related that way is always
    scored alone: whether the batch's submissions count at all depends on how many claims are
    new to the model's stored history, which only the pipeline knows.
    """

    def __init__(self, max_claims: int) -> None:
        self.max_claims = max_claims
        self.requests: list[PreparedRequest] = []
        self.claims = 0
        self._claim_ids: set[str] = set()
        self._days: dict[Hashable, dt.date] = {}

    def admits(self, request: PreparedRequest) -> bool:
        if not self.requests:
            return True
        if request.submission_days is None or self.requests[0].submission_days is None:
            return False
        if (request.explain, request.top_k) != (self.requests[0].explain, self.requests[0].top_k):
            return False
        if self.claims + len(request) > self.max_claims:
            return False
        if not self._claim_ids.isdisjoint(request.claim_ids):
            return False
        days = self._days
        return all(days.get(key, day) == day for key, day in request.submission_days.items())

    def add(self, request: PreparedRequest) -> None:
        self.requests.append(request)
        self.claims += len(request)
        self._claim_ids |= request.claim_ids
        self._days.update(request.submission_days or {})


def _submission_days(claims: Iterable[ClaimIn]) -> dict[Hashable, dt.date] | None:
    """Each history grouping the claims touch -> its submission day (None: two days)."""
    days: dict[Hashable, dt.date] = {}
    for claim in claims:
        # The history features' provider: the rendering NPI, else the billing NPI.
        provider = claim.rendering_npi if claim.rendering_npi is not None else claim.billing_npi
        keys: list[Hashable] = [
            ("patient", claim.patient_id),
            ("provider-payer", provider, claim.payer_id),
        ]
        if claim.patient_key is not None:  # the person under any member ID
            keys.append(("person", claim.patient_key))
        for key in keys:
            if days.setdefault(key, claim.submission_date) != claim.submission_date:
                return None
    return days


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
    from features.x12.reader import count_segments

    # Counted before parsing: an interchange over the limit is refused in milliseconds, not
    # after the seconds a parse of thousands of claims takes.
    if (count := count_segments(body, "CLM")) > max_batch_claims:
        raise BatchTooLarge(count, max_batch_claims)
    with tempfile.TemporaryDirectory(prefix="denial-risk-837-") as folder:
        source = Path(folder) / "request.837"
        source.write_text(body, encoding="latin-1")
        dataset, quarantine = read_claims_837([source], workers=1)
    tables = ClaimTables.from_dataset(dataset)
    if len(tables) > max_batch_claims:
        raise BatchTooLarge(len(tables), max_batch_claims)
    errors: list[ClaimErrorOut] = []
    by_claim: dict[str, ClaimErrorOut] = {}  # one error per claim, however many rows it lost
    for row in quarantine.to_dict("records"):
        claim_id = row.get("claim_id") if isinstance(row.get("claim_id"), str) else None
        where = row.get("position")
        field_path = f"segment {where}" if where not in (None, "", "file") else "body"
        problem = FieldProblem(field=field_path, message=str(row.get("reason", "")))
        if claim_id and claim_id in by_claim:
            if problem not in by_claim[claim_id].problems:
                by_claim[claim_id].problems.append(problem)
            continue
        error = ClaimErrorOut(index=None, claim_id=claim_id or None, problems=[problem])
        errors.append(error)
        if claim_id:
            by_claim[claim_id] = error
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
    if len(tables) == 0:
        raise NothingScored(errors)
    scores = service.score(tables, explain=explain, top_k=top_k)
    return _outcome(service, list(enumerate(scores)), errors)


def _outcome(
    service: ScoringService, scored: list[tuple[int, ClaimScore]], errors: list[ClaimErrorOut]
) -> ScoringOutcome:
    """The response for scores (with their positions in the request) and refused claims."""
    scored = sorted(scored, key=lambda pair: pair[0])
    errors = sorted(errors, key=lambda e: (e.index is None, e.index or 0))
    # One validation of the whole response from the dataclasses' own attribute dicts: a model
    # per claim from ``asdict`` (which deep-copies) cost four times as much. Same JSON.
    results = [
        {
            **vars(score),
            "index": index,
            "factors": [{**vars(factor), "group": factor.group} for factor in score.factors],
            "what_if": [vars(change) for change in score.what_if],
        }
        for index, score in scored
    ]
    response = ScoreResponse.model_validate(
        {
            "model_name": service.info.name,
            "model_version": service.info.version,
            "scored": len(results),
            "rejected": len(errors),
            "results": results,
            "errors": errors,
        }
    )
    return ScoringOutcome(response, [score.denial_probability for _, score in scored])


__all__ = [
    "BatchTooLarge",
    "claims_payload",
    "NothingScored",
    "PreparedRequest",
    "ScoringOutcome",
    "SharedCall",
    "claims_to_frames",
    "prepare_body",
    "prepare_request",
    "score_837",
    "score_request",
    "score_together",
]
