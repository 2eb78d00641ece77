"""The batch table says, claim for claim, what the per-claim scores say.

``ScoringService.score_frame`` builds its columns from arrays (text from the few distinct
bands, reasons and CARCs, by pyarrow) while ``score`` builds one object per claim: the two must
never drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset
from serving.service import _text_column

_TEXT = pd.Series(np.array(["text"], dtype=object)).dtype


@pytest.fixture(scope="module")
def scored(trained: Any) -> tuple[Any, ClaimTables]:
    from serving.loading import load_service

    service = load_service(trained.model_uri, trained.tracking_uri)
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    return service, tables.subset(tables.claims["claim_id"].tail(400))


def _missing_as_none(column: pd.Series) -> list[Any]:
    return [None if pd.isna(value) else value for value in column.tolist()]


@pytest.mark.parametrize("explain", [False, True])
def test_score_frame_rows_equal_the_per_claim_scores(
    scored: tuple[Any, ClaimTables], explain: bool
) -> None:
    service, tables = scored
    frame = service.score_frame(tables, explain=explain)
    scores = service.score(tables, explain=explain)
    assert len(frame) == len(scores) == len(tables)
    assert {s.risk_band for s in scores} >= {"low", "medium"}  # both fix rules are exercised
    assert frame["claim_id"].tolist() == [s.claim_id for s in scores]
    assert frame["denial_probability"].tolist() == [s.denial_probability for s in scores]
    assert frame["risk_band"].tolist() == [s.risk_band for s in scores]
    assert frame["likely_reason"].tolist() == [s.likely_reasons[0]["category"] for s in scores]
    for i in range(3):
        assert frame[f"reason_{i + 1}"].tolist() == [
            s.likely_reasons[i]["category"] for s in scores
        ]
        assert frame[f"reason_{i + 1}_probability"].tolist() == [
            s.likely_reasons[i]["probability"] for s in scores
        ]
        assert frame[f"carc_{i + 1}"].tolist() == [s.likely_carcs[i]["code"] for s in scores]
        assert frame[f"carc_{i + 1}_probability"].tolist() == [
            s.likely_carcs[i]["probability"] for s in scores
        ]
    fixes = _missing_as_none(frame["suggested_fix"])
    assert fixes == [s.suggested_fix for s in scores]
    assert any(fixes) and not all(fixes)
    assert set(frame["model_version"]) == {service.info.version}
    for column in ("claim_id", "risk_band", "likely_reason", "reason_1", "carc_1"):
        assert frame[column].dtype == _TEXT, column


def test_text_column_takes_labels_by_position_and_keeps_missing_labels_missing() -> None:
    labels = np.array(["low", None, "high"], dtype=object)
    column = pd.Series(_text_column(labels, np.array([2, 0, 1, 2])))
    assert _missing_as_none(column) == ["high", "low", None, "high"]
    assert column.dtype == _TEXT
    pd.testing.assert_series_equal(
        column, pd.Series(np.array(["high", "low", None, "high"], dtype=object))
    )
    assert len(_text_column(np.array(["only"], dtype=object), np.array([], dtype=np.intp))) == 0


def test_explained_in_blocks_with_progress_equals_explained_at_once(
    scored: tuple[Any, ClaimTables], monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.service as service_module

    service, tables = scored
    at_once = service.score_frame(tables, explain=True)
    monkeypatch.setattr(service_module, "EXPLAIN_BLOCK", 150)
    reports: list[tuple[int, int]] = []
    in_blocks = service.score_frame(
        tables, explain=True, progress=lambda done, total: reports.append((done, total))
    )
    pd.testing.assert_frame_equal(in_blocks, at_once)
    assert reports == [(150, 400), (300, 400), (400, 400)]
