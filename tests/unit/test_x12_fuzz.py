"""Seeded X12 fuzzing of ingest (issue 20): every mutated file is read or refused with a reason,
in bounded time and memory, and every claim it holds is counted as ingested, quarantined or a
duplicate.

Each seed draws a base file (our writer's 837P and 835s, and the public samples in
``../shared/x12-samples``) and mutates it: truncation, swapped separators, a dropped or repeated
segment, an oversized element, wrong SE01/GE01/IEA01 counts, a byte order mark, UTF-16 either
way round, junk characters and binary junk (:mod:`tests.utils.x12_fuzz`). A folder of such
files is ingested as a user would (one call, good and broken files mixed). Seeds that found a
defect are kept in ``REGRESSIONS`` with the defect they found. The 50 MB file is in
``tests/unit/test_x12_large_file.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from features.x12 import IngestResult, ingest_paths
from features.x12.pyx12_stream import Validation
from tests.utils.x12_fuzz import (
    SAMPLES,
    Case,
    PeakMemory,
    base_files,
    claims_held,
    draw_case,
)

SECONDS_PER_FILE = 10.0
"""No file of the fuzzing (the largest is ~0.6 MB) takes longer to read, even with the machine
loaded; they take 1-50 ms in ``envelope`` mode and 0.1-0.6 s in ``full`` (pyx12 loads its map
for every file)."""

BASE_MB_PER_FILE, MB_PER_MB = 64, 16
"""No file may make ingest's peak RSS grow by more than 64 MB + 16 x its size (issue 20): the
largest growth seen is 3.5 MB for a 0.7 MB file in ``envelope`` mode and 9 MB for the first file
read in ``full`` (pyx12 loading its map). A 50 MB file's bound is in ``test_x12_large_file.py``."""

MAX_REASON = 600
"""A reason names segments and counts, never what a damaged element holds."""

ENVELOPE_SEEDS = range(0, 400)
FULL_SEEDS = range(5000, 5030)

# seed, base file, validation: the defect it found (fixed).
REGRESSIONS = [
    (22, "samples/835/lfh-managed-care.835", "full"),  # UTF-16 with junk: UnicodeDecodeError
    (51, "samples/837i/lfh-institutional-claim.837i", "full"),  # UTF-16 cut at an odd byte: idem
    (6, "samples/837p/lfh-demo.example2.837", "full"),  # UTF-16 BE without BOM: 0 claims held
    (82, "samples/835/lfh-medicare-part-a.835", "full"),  # a GE repeated: IndexError in pyx12
    (169, "samples/837i/lfh-out-of-network-repriced-claim.837i", "envelope"),  # idem
    (37, "samples/837p/oopfactory-Example2_Encounter.txt", "full"),  # an SE repeated: its set
    (205, "samples/837p/lfh-demo.cob.example3.B.837", "full"),  # counted again as a duplicate
    (2513, "samples/837p/lfh-demo.ambulance.example5.837", "envelope"),  # a sex of 'Ê' in DMG03:
    # UnicodeEncodeError hashing the patient key
    (5705, "samples/835/lfh-medicare-part-a.835", "envelope"),  # UTF-16 LE, junk at its start:
    # read as Latin-1, no remittance counted
    (89, "samples/835/edi835-emedny_sample.txt", "envelope"),  # UTF-16 shifted by junk: the
    # remittances after it counted nowhere
    (6172, "generated/remit_00003.835", "envelope"),  # separators swapped: a 70 KB element
    # value named as the last segment read
    (1300, "samples/837p/lfh-demo.ambulance.example5.837", "envelope"),  # a 70 KB GS01 quoted
    (385, "samples/835/edi835-blue_cross_nc_sample.txt", "envelope"),  # a 1 KB CAS group code
    # quoted by the contract's reason
    (6961, "samples/835/oopfactory-ExampleFromNth.txt", "envelope"),  # a 2 KB CLP01 quoted
]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Our writer's files, and the samples where they are (CI must have them)."""
    if not SAMPLES.is_dir() and os.environ.get("CI") == "true":
        pytest.fail(f"X12 sample folder {SAMPLES} is not present (it must be under CI)")
    return base_files(tmp_path_factory.mktemp("bases"))


def _ingest(cases: list[Case], folder: Path, validation: Validation) -> IngestResult:
    """Ingest the cases' files as one folder, asserting each file's time bound."""
    folder.mkdir()
    paths = {}
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.data)
        paths[str(path)] = case
    if not PeakMemory.available():
        pytest.fail("/proc/self/clear_refs cannot be written: the memory bound needs Linux")
    memory = PeakMemory()
    done = [time.perf_counter()]

    def tick(_: int, __: int) -> None:
        done.append(time.perf_counter())
        memory.lap()

    try:
        result = ingest_paths([folder], workers=1, validation=validation, progress=tick)
    except Exception as exc:  # name the seeds, then fail
        raise AssertionError(f"ingest raised {exc!r} on seeds {[c.seed for c in cases]}") from exc
    files = sorted(paths)  # ingest reads a folder in name order
    for path, start, end in zip(files, done[:-1], done[1:], strict=True):
        took = end - start
        assert took < SECONDS_PER_FILE, f"seed {paths[path].seed}: {took:.1f}s"
    for path, grown in zip(files, memory.laps, strict=True):
        bound = (BASE_MB_PER_FILE + MB_PER_MB * len(paths[path].data) / 1e6) * 1e6
        assert grown <= bound, f"seed {paths[path].seed}: RSS grew {grown / 1e6:.0f} MB"
    _assert_accounted(result, paths)
    return result


def _assert_accounted(result: IngestResult, cases: dict[str, Case]) -> None:
    """Every CLM and CLP a file holds is read, and read = ingested + quarantined + duplicate;
    a file with anything quarantined says why; the data set holds exactly what was ingested."""
    entries = {k: v for k, v in result.report.items() if not k.startswith("_")}
    assert set(entries) == set(cases)
    for path, entry in entries.items():
        case = cases[path]
        where = f"seed {case.seed} ({case.base}: {'+'.join(case.steps)})"
        for unit, segment in (("claims", "CLM"), ("remittances", "CLP")):
            held = claims_held(case.data, segment)
            parts = [entry[f"{unit}_{p}"] for p in ("ingested", "quarantined", "duplicate")]
            assert entry[f"{unit}_read"] == held, f"{where}: {unit} read, held {held}"
            assert sum(parts) == held and min(parts) >= 0, f"{where}: {unit} {parts}"
            if parts[1]:
                assert entry["quarantine_reasons"], f"{where}: {unit} quarantined, no reason"
        longest = max(map(len, entry["quarantine_reasons"]), default=0)
        assert longest < MAX_REASON, f"{where}: a reason of {longest:,} characters"
    assert sum(e["claims_ingested"] for e in entries.values()) == len(result.dataset.claims)
    remits = sum(e["remittances_ingested"] for e in entries.values())
    assert remits == len(result.dataset.remittances)


@pytest.mark.timeout(300)
def test_fuzzed_files_in_envelope_mode(bases: dict[str, str], tmp_path: Path) -> None:
    cases = [draw_case(seed, bases) for seed in ENVELOPE_SEEDS]
    _ingest(cases, tmp_path / "fuzz", "envelope")


@pytest.mark.timeout(300)
def test_fuzzed_files_in_full_mode(bases: dict[str, str], tmp_path: Path) -> None:
    cases = [draw_case(seed, bases) for seed in FULL_SEEDS]
    _ingest(cases, tmp_path / "fuzz", "full")


@pytest.mark.parametrize(("seed", "base", "validation"), REGRESSIONS)
def test_fuzzing_regressions(
    bases: dict[str, str], tmp_path: Path, seed: int, base: str, validation: Validation
) -> None:
    if base not in bases:
        pytest.skip(f"{base} is not present")
    _ingest([draw_case(seed, bases, base)], tmp_path / "fuzz", validation)
