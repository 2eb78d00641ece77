"""Coalesced scoring (:mod:`serving.api.coalesce`): concurrent requests share scoring calls and
each gets exactly the answer it would get alone.

The model is the session's trained one; a stand-in "gate" model holds the worker thread inside
a call so that the requests queued meanwhile are known to form one round.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import serving.api.coalesce as coalesce
import serving.api.scoring as scoring
from features.claim_tables import ClaimTables
from features.history import HistoryFeatures
from features.schema import ClaimsDataset
from serving.api.coalesce import ScoringCoalescer, ScoringTimeout
from serving.api.scoring import (
    NothingScored,
    PreparedRequest,
    SharedCall,
    claims_payload,
    prepare_request,
    score_request,
)
from serving.loading import load_service
from serving.schemas import ScoreRequest
from serving.service import ClaimScore, ModelInfo, ScoringService
from tests.utils.factories import OTHER_VALID_NPI, VALID_NPI, make_claim, tables_from

MAX_CLAIMS = 5_000


@pytest.fixture(scope="module")
def service(trained: Any) -> ScoringService:
    return load_service(trained.model_uri, trained.tracking_uri)


@pytest.fixture(scope="module")
def recent(trained: Any) -> list[dict[str, Any]]:
    """The latest simulated claims as request JSON: real claims, several days, shared payers
    and providers (so some of them may not share a call)."""
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    latest = tables.claims.sort_values("submission_date").tail(30)["claim_id"]
    return claims_payload(tables.subset(latest))


def _request(claims: list[dict[str, Any]], **options: Any) -> ScoreRequest:
    return ScoreRequest.model_validate({"claims": claims, **options})


def _answer(outcome: Any) -> Any:
    """An answer in comparable form: the response JSON, or the refusal and its problems."""
    if isinstance(outcome, NothingScored):
        return ("422", str(outcome), [error.model_dump() for error in outcome.errors])
    if isinstance(outcome, BaseException):
        return (type(outcome).__name__, str(outcome))
    return outcome.response.model_dump(mode="json")


def _alone(service: Any, request: ScoreRequest) -> Any:
    try:
        return _answer(score_request(service, request, MAX_CLAIMS))
    except NothingScored as error:
        return _answer(error)
    except Exception as error:
        return _answer(error)


class _Gate:
    """A stand-in model that holds the worker thread until released."""

    def __init__(self) -> None:
        self.info = ModelInfo("gate", "0", None, "gate")
        self.entered = threading.Event()
        self.release = threading.Event()

    def score(self, tables: ClaimTables, explain: bool = True, top_k: int = 5) -> list[ClaimScore]:
        self.entered.set()
        assert self.release.wait(20), "the test never released the gate"
        return []


class _Spy:
    """Records the requests of every shared call the coalescer makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        real = coalesce.score_together

        def spy(service: Any, requests: list[PreparedRequest]) -> Any:
            if not isinstance(service, _Gate):
                self.calls.append(len(requests))
            return real(service, requests)

        monkeypatch.setattr(coalesce, "score_together", spy)


def _in_one_round(
    coalescer: ScoringCoalescer, waiting: list[tuple[Any, PreparedRequest]], timeout: float = 60
) -> list[Any]:
    """Queue every request while the worker is held by a gate, release it, gather answers."""
    gate = _Gate()
    gate_request = prepare_request(_request([make_claim(claim_id="GATE")]), MAX_CLAIMS)

    async def run() -> list[Any]:
        held = asyncio.ensure_future(coalescer.score(gate, gate_request))  # type: ignore[arg-type]
        while not gate.entered.is_set():
            await asyncio.sleep(0.005)
        tasks = [asyncio.ensure_future(coalescer.score(s, p)) for s, p in waiting]
        await asyncio.sleep(0.05)  # every task has queued its request
        gate.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)
        await asyncio.gather(held, return_exceptions=True)
        return list(answers)

    try:
        return asyncio.run(run())
    finally:
        coalescer.stop(timeout=30)


def _requests(recent: list[dict[str, Any]]) -> list[ScoreRequest]:
    """Single-claim requests, colliding claim_ids, bad claims beside good ones, repeated ids
    within a request, other options, a multi-claim request."""
    bad_code = make_claim(claim_id="BAD-1", lines=[{"procedure_code": "7055", "line_charge": 9.0}])
    return [
        *(_request([claim]) for claim in recent[:20]),
        _request([make_claim(claim_id="C1")]),
        _request([make_claim(claim_id="C1", payer_type="medicare", place_of_service="22")]),
        _request([bad_code, make_claim(claim_id="GOOD-1")]),
        _request([make_claim(claim_id="D"), make_claim(claim_id="D"), make_claim(claim_id="D2")]),
        _request([recent[20]], explain=False),
        _request([recent[21]], top_k=2),
        _request(recent[22:27]),
        _request([make_claim(claim_id="C1", submission_date="2025-03-12")]),
        # Same patient, provider and payer a day apart: each would count in the other's
        # history if they shared a call (all factors shown, so any change is seen).
        _request([make_claim(claim_id="E1", submission_date="2025-03-05")], top_k=20),
        _request([make_claim(claim_id="E2", submission_date="2025-03-06")], top_k=20),
    ]


# -- answers ---------------------------------------------------------------------------------
def test_coalesced_answers_equal_separate_answers(
    service: ScoringService, recent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = _requests(recent)
    alone = [_alone(service, request) for request in requests]
    spy = _Spy(monkeypatch)
    coalescer = ScoringCoalescer(MAX_CLAIMS, timeout_seconds=60)
    prepared = [prepare_request(request, MAX_CLAIMS) for request in requests]
    together = [_answer(a) for a in _in_one_round(coalescer, [(service, p) for p in prepared])]
    for number, (got, want) in enumerate(zip(together, alone, strict=True)):
        assert got == want, f"request {number}"
    # They were scored together: far fewer calls than requests, one of them large.
    assert sum(spy.calls) == len(requests)
    assert len(spy.calls) <= len(requests) // 2 and max(spy.calls) >= 10


def test_contract_rejects_go_back_to_their_own_request(
    service: ScoringService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims the data contract quarantines (not the request schema) keep their field paths,
    and a request left with nothing to score is refused alone (422) while the others score."""
    real_validated = scoring.validated

    def validated_breaking_q(claims: Any, lines: Any, diagnoses: Any) -> Any:
        # As if the schema had let a bad code through for the claims named Q-*.
        lines = lines.copy()
        lines.loc[lines["claim_id"].str.startswith("Q-"), "procedure_code"] = "7055"
        return real_validated(claims, lines, diagnoses)

    monkeypatch.setattr(scoring, "validated", validated_breaking_q)
    requests = [
        _request([make_claim(claim_id="OK-1"), make_claim(claim_id="Q-1")]),
        _request([make_claim(claim_id="Q-2")]),
        _request([make_claim(claim_id="Q-1"), make_claim(claim_id="OK-2")]),
    ]
    alone = [_alone(service, request) for request in requests]
    assert alone[1][0] == "422"
    assert alone[0]["errors"][0]["problems"][0]["field"] == "claims[1].lines[0].procedure_code"
    prepared = [prepare_request(request, MAX_CLAIMS) for request in requests]
    coalescer = ScoringCoalescer(MAX_CLAIMS, timeout_seconds=60)
    together = _in_one_round(coalescer, [(service, p) for p in prepared])
    assert [_answer(a) for a in together] == alone


def test_a_failing_shared_call_is_retried_request_by_request(
    service: ScoringService, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Fragile:
        """The real model, except that a claim named BOOM makes the call fail."""

        info = service.info

        def score(self, tables: ClaimTables, explain: bool = True, top_k: int = 5) -> Any:
            if "BOOM" in set(tables.claims["claim_id"]):
                raise RuntimeError("model failure")
            return service.score(tables, explain=explain, top_k=top_k)

    fragile = Fragile()
    requests = [
        _request([make_claim(claim_id="A")]),
        _request([make_claim(claim_id="BOOM")]),
        _request([make_claim(claim_id="B")]),
    ]
    spy = _Spy(monkeypatch)
    prepared = [prepare_request(request, MAX_CLAIMS) for request in requests]
    coalescer = ScoringCoalescer(MAX_CLAIMS, timeout_seconds=60)
    answers = _in_one_round(coalescer, [(fragile, p) for p in prepared])
    assert isinstance(answers[1], RuntimeError)
    assert _answer(answers[0]) == _alone(service, requests[0])
    assert _answer(answers[2]) == _alone(service, requests[2])
    assert spy.calls == [3, 1, 1, 1]


def test_a_request_that_waits_too_long_times_out_and_the_worker_goes_on(
    service: ScoringService,
) -> None:
    coalescer = ScoringCoalescer(MAX_CLAIMS, timeout_seconds=0.2)
    gate = _Gate()
    gate_request = prepare_request(_request([make_claim(claim_id="GATE")]), MAX_CLAIMS)
    request = prepare_request(_request([make_claim(claim_id="LATER")]), MAX_CLAIMS)

    async def run() -> None:
        with pytest.raises(ScoringTimeout, match="did not finish within 0.2 s"):
            await coalescer.score(gate, gate_request)  # type: ignore[arg-type]
        gate.release.set()
        coalescer.timeout_seconds = 60
        outcome = await coalescer.score(service, request)
        assert outcome.response.scored == 1

    try:
        asyncio.run(run())
    finally:
        coalescer.stop(timeout=30)
    assert not coalescer.running


def test_stop_answers_the_requests_still_waiting(service: ScoringService) -> None:
    coalescer = ScoringCoalescer(MAX_CLAIMS, timeout_seconds=60)
    gate = _Gate()
    gate_request = prepare_request(_request([make_claim(claim_id="GATE")]), MAX_CLAIMS)
    request = prepare_request(_request([make_claim(claim_id="QUEUED")]), MAX_CLAIMS)

    async def run() -> Any:
        held = asyncio.ensure_future(coalescer.score(gate, gate_request))  # type: ignore[arg-type]
        while not gate.entered.is_set():
            await asyncio.sleep(0.005)
        queued = asyncio.ensure_future(coalescer.score(service, request))
        await asyncio.sleep(0.05)
        stopping = threading.Thread(target=coalescer.stop)
        stopping.start()
        gate.release.set()
        outcome = await queued
        await asyncio.gather(held, return_exceptions=True)
        stopping.join(30)
        return outcome

    assert asyncio.run(run()).response.scored == 1
    assert not coalescer.running


# -- which requests may share a call ---------------------------------------------------------
def _prepared(*claims: dict[str, Any], **options: Any) -> PreparedRequest:
    return prepare_request(_request(list(claims), **options), MAX_CLAIMS)


def _admits(first: PreparedRequest, second: PreparedRequest, max_claims: int = 100) -> bool:
    call = SharedCall(max_claims)
    call.add(first)
    return call.admits(second)


@pytest.mark.parametrize(
    ("second", "shares"),
    [
        ({}, True),  # same patient, provider and payer, same submission day
        ({"submission_date": "2025-03-11"}, False),  # same patient, a later day
        ({"submission_date": "2025-03-11", "patient_id": "MBR0002"}, False),  # provider x payer
        ({"submission_date": "2025-03-11", "patient_id": "MBR0002", "payer_id": "87726"}, True),
        (
            # No rendering NPI: the history features take the billing NPI.
            {
                "submission_date": "2025-03-11",
                "patient_id": "MBR0002",
                "rendering_npi": None,
                "billing_npi": OTHER_VALID_NPI,
            },
            False,
        ),
        (
            {
                "submission_date": "2025-03-11",
                "patient_id": "MBR0002",
                "rendering_npi": None,
                "billing_npi": VALID_NPI,
            },
            True,
        ),
    ],
)
def test_requests_share_a_call_unless_one_counts_in_the_others_history(
    second: dict[str, Any], shares: bool
) -> None:
    first = _prepared(make_claim(claim_id="FIRST"))
    assert _admits(first, _prepared(make_claim(claim_id="SECOND", **second))) is shares


def test_calls_keep_claim_ids_options_and_size_apart() -> None:
    first = _prepared(make_claim(claim_id="SAME"))
    assert not _admits(first, _prepared(make_claim(claim_id="SAME")))
    assert not _admits(first, _prepared(make_claim(claim_id="OTHER"), explain=False))
    assert not _admits(first, _prepared(make_claim(claim_id="OTHER"), top_k=3))
    assert not _admits(first, _prepared(make_claim(claim_id="X1"), make_claim(claim_id="X2")), 2)
    # A request whose own claims count in each other's history is scored alone.
    related = _prepared(
        make_claim(claim_id="R1"), make_claim(claim_id="R2", submission_date="2025-03-11")
    )
    assert related.submission_days is None
    assert not _admits(first, related)
    assert not _admits(related, first)


def test_history_groupings_are_the_ones_shared_calls_keep_apart() -> None:
    """Tripwire: :class:`SharedCall` keeps requests apart by patient, by person and by
    (rendering provider, payer), because every batch-submission grouping of the history features
    includes one of them. A new grouping (say, billing NPI x procedure) must be added there too."""
    groupings = [*HistoryFeatures._COUNT_KEYS.values()]
    groupings += [columns for _, columns in HistoryFeatures._LAST_SERVICE_KEYS.values()]
    for columns in groupings:
        assert (
            "patient_id" in columns
            or "patient_key" in columns
            or set(columns) >= {"rendering_npi", "payer_id"}
        ), columns


def test_claims_of_one_patient_on_different_days_count_in_each_others_history(
    service: ScoringService,
) -> None:
    """Why the rule exists: scored in one call, an earlier submission of the patient changes a
    later claim's history features."""
    features = service.pipeline.named_steps["features"]
    earlier = make_claim(claim_id="H-EARLY", submission_date="2025-03-05")
    later = make_claim(claim_id="H-LATE")
    same_day = make_claim(claim_id="H-SAME", payer_id="87726")
    alone = features.transform(tables_from([later]))
    together = features.transform(tables_from([earlier, later]))
    column = "hist_patient_prior_claims"
    assert together[column].iloc[1] == alone[column].iloc[0] + 1
    assert not _admits(_prepared(earlier), _prepared(later))
    # Submitted the same day, neither counts in the other's history: they may share a call.
    with_same_day = features.transform(tables_from([same_day, later]))
    assert with_same_day.iloc[[1]].reset_index(drop=True).equals(alone)
    assert _admits(_prepared(same_day), _prepared(later))


def test_claims_of_one_person_under_two_member_ids_are_kept_apart(
    service: ScoringService,
) -> None:
    """The person (patient key) links claims whose member IDs differ: scored in one call, the
    earlier one counts in the later one's history, so the requests are not shared."""
    features = service.pipeline.named_steps["features"]
    earlier = make_claim(
        claim_id="P-EARLY", submission_date="2025-03-05", patient_id="MBR-OLD", patient_key="K7"
    )
    # Another member ID with another payer: only the person links the two claims.
    later = make_claim(claim_id="P-LATE", patient_id="MBR-NEW", patient_key="K7", payer_id="99998")
    alone = features.transform(tables_from([later]))
    together = features.transform(tables_from([earlier, later]))
    column = "hist_person_prior_claims"
    assert together[column].iloc[1] == alone[column].iloc[0] + 1
    assert not _admits(_prepared(earlier), _prepared(later))
    # Another person (other member ID, other payer): shared.
    other = make_claim(claim_id="P-OTHER", patient_id="MBR-X", patient_key="K8", payer_id="99999")
    assert _admits(_prepared(earlier), _prepared(other))


# -- life cycle through the app ------------------------------------------------------------------
@pytest.fixture
def no_threads_left() -> Iterator[Callable[[], list[str]]]:
    before = set(threading.enumerate())
    yield lambda: [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


def test_no_thread_before_start(no_threads_left: Callable[[], list[str]]) -> None:
    ScoringCoalescer(MAX_CLAIMS, timeout_seconds=1)
    assert "scoring" not in no_threads_left()
