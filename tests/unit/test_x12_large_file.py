"""A 50 MB 837 whose one segment repeats 2.5 million times (issue 20): read in a process of its
own within a time and memory bound, the claim holding the run quarantined saying so, the others
ingested. The other 50 MB files (an 835's CAS repeated, one 50 MB element) and both validation
modes are in ``benchmarks/bench_x12_large.py`` (BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.x12 import ingest_paths, write_837p
from tests.unit.test_x12_roundtrip import make_dataset
from tests.utils.x12_fuzz import ingest_in_child, repeated_segment

SECONDS = 30.0
"""4-5 s on the 2-core machine while others load it (a load average of 7); pyx12 took minutes
before runs of a segment were read as one."""
PEAK_MB = 1024
"""450 MB measured; the file is 50 MB."""


@pytest.mark.timeout(120)
def test_a_50_mb_repeated_segment_is_bounded_and_accounted(tmp_path: Path) -> None:
    text = write_837p(make_dataset(), tmp_path / "base")[0].read_text()
    path = tmp_path / "repeated.837"
    path.write_text(repeated_segment(text, "DTP*472*", 50_000_000))
    assert path.stat().st_size > 49_000_000
    seconds, got = ingest_in_child(path, "full", timeout=SECONDS * 3)
    assert seconds < SECONDS, f"{seconds:.1f}s"
    assert got["peak_mb"] < PEAK_MB, f"{got['peak_mb']:.0f} MB"
    assert (got["read"], got["ingested"], got["quarantined"]) == (3, 2, 1)
    [reason] = got["reasons"]
    assert "the same DTP segment 2,500,000 times in a row (segments 28 to 2,500,027" in reason


def test_a_run_of_identical_segments_quarantines_its_claim(tmp_path: Path) -> None:
    # The same, small and in this process: without runs read as one, the claim was ingested
    # with its 5,000 service dates (and a 50 MB file took pyx12 minutes).
    text = write_837p(make_dataset(), tmp_path / "base")[0].read_text()
    path = tmp_path / "repeated.837"
    path.write_text(repeated_segment(text, "DTP*472*", 5_000 * len("DTP*472*D8*20250304~")))
    result = ingest_paths([path], workers=1, validation="envelope")
    entry = result.report[str(path)]
    assert (entry["claims_ingested"], entry["claims_quarantined"]) == (2, 1)
    assert "DTP segment 5,000 times in a row" in result.quarantine["reason"].iloc[0]
    assert any("runs of more than 1,000 identical segments" in n for n in entry["notes"])
