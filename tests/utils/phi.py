"""Planted patient identifiers, and a scan for them in what the product writes or says.

:func:`split_planted` copies a simulated practice's 837 and 835 files with every patient and
subscriber given distinctive markers (:func:`plant`): names, street and city, member IDs
(prefixed, the same way in the 837s and the 835s, so remittances still link to their claims),
group numbers and one birth date; :func:`garble` and :func:`truncate` damage files where those
markers are. :func:`found_markers` and :func:`scan_files` then look for the markers in text, in
files as raw bytes, and in the text inside compressed and columnar files.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

LAST_NAME = "QUILLAVERDE"
FIRST_NAME = "XYLOPHANE"
"""Prefixed to the writer's first name (a hash of the patient's key), so patients stay apart:
the reader keys a patient on name, birth date and sex."""
STREET = "7734 MARZIPAN HOLLOW"
CITY = "VELDMORROWTON"
MEMBER_PREFIX = "QZMEMBER"
GROUP_PREFIX = "QZGROUP"
BIRTH_DATE = "19310417"
"""Every patient's birth date (DMG02), so any birth date that leaks is this one."""
INVALID_BIRTH_DATE = "19311340"
"""The birth date of a damaged file's subscriber (month 13); tests send 1931-04-31 too."""

MARKERS: dict[str, str] = {
    "last name": LAST_NAME,
    "first name": FIRST_NAME,
    "street": "MARZIPAN HOLLOW",
    "city": CITY,
    "member ID": MEMBER_PREFIX,
    "group number": GROUP_PREFIX,
    "birth date (CCYYMMDD)": BIRTH_DATE,
    "birth date (ISO)": "1931-04-17",
    "birth date (US)": "04/17/1931",
    "invalid birth date (CCYYMMDD)": INVALID_BIRTH_DATE,
    "invalid birth date (ISO)": "1931-04-31",
}
"""What is searched for (case-insensitively), by what it stands for."""

BINARY_MARKERS: dict[str, bytes] = {
    f"birth date (int64 {unit} since 1970)": np.datetime64("1931-04-17", unit)
    .astype(np.int64)
    .tobytes()
    for unit in ("ns", "us", "ms", "s")
}
"""The birth date as NumPy and pandas hold dates, for pickles and other binary files (eight
exact bytes: text or chance does not hold them)."""

_PEOPLE = {"IL", "QC", "74"}
"""NM101 entities that are a person insured or treated: subscriber, patient, corrected insured."""


def plant(text: str) -> str:
    """One X12 file's text with every person's identifiers replaced by the markers.

    The writer's own placeholders are where identifiers go: ``NM1*IL``/``NM1*QC`` names and
    ``MI`` IDs, the ``N3``/``N4`` that follow them, ``DMG02`` and the subscriber's ``SBR03``.
    """
    out: list[str] = []
    person = False  # whether an N3/N4 belongs to the person just named
    for segment in text.split("~"):
        elements = segment.split("*")
        tag = elements[0].strip()
        if tag == "NM1":
            person = len(elements) > 1 and elements[1] in _PEOPLE
            if person:
                elements = _planted_person(elements)
        elif tag == "N3" and person and len(elements) > 1:
            elements[1] = STREET
        elif tag == "N4" and person and len(elements) > 1:
            elements[1] = CITY
        elif tag == "DMG" and len(elements) > 2 and elements[2]:
            elements[2] = BIRTH_DATE
        elif tag == "SBR" and len(elements) > 3 and elements[3]:
            elements[3] = GROUP_PREFIX + elements[3]
        elif tag not in {"N3", "N4"}:
            person = False
        out.append("*".join(elements))
    return "~".join(out)


def _planted_person(elements: list[str]) -> list[str]:
    elements = list(elements)
    if len(elements) > 3 and elements[3]:
        elements[3] = LAST_NAME
    if len(elements) > 4 and elements[4]:
        elements[4] = FIRST_NAME + elements[4]
    if len(elements) > 9 and elements[8] in {"MI", "C"} and elements[9]:
        elements[9] = MEMBER_PREFIX + elements[9]
    return elements


def _segment_date(text: str, tag: str, index: int) -> str | None:
    for segment in text.replace("\r", "").replace("\n", "").split("~"):
        elements = segment.strip().split("*")
        if elements[0] == tag and len(elements) > index and len(elements[index]) == 8:
            return elements[index]
    return None


def split_planted(x12_dir: Path, cut: str, history: Path, later: Path) -> dict[str, int]:
    """Plant every file under ``x12_dir`` and split it at ``cut`` (CCYYMMDD) as a practice's
    own files would be: 837s sent before it (BHT04) and 835s paid before it (BPR16, else
    DTM*405) into ``history``; later 837s into ``later`` (the claims to score); later 835s
    are left out (their outcomes are what a score predicts). Returns the counts."""
    history.mkdir(parents=True, exist_ok=True)
    later.mkdir(parents=True, exist_ok=True)
    counts = {"history_837": 0, "later_837": 0, "history_835": 0, "later_835": 0}
    for path in sorted(p for p in x12_dir.rglob("*") if p.is_file()):
        text = plant(path.read_text())
        if "ST*837" in text:
            day = _segment_date(text, "BHT", 4)
            kind = "837"
        elif "ST*835" in text:
            day = _segment_date(text, "BPR", 16) or _segment_date(text, "DTM", 2)
            kind = "835"
        else:
            continue
        assert day is not None, f"{path.name} has no date to split it by"
        period = "history" if day < cut else "later"
        counts[f"{period}_{kind}"] += 1
        if kind == "835" and period == "later":
            continue
        (history if period == "history" else later).joinpath(path.name).write_text(text)
    return counts


def found_markers(data: bytes | str) -> list[str]:
    """The markers (by what they stand for) that ``data`` holds: as text in any case, or the
    birth date as binary dates."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    folded = raw.lower()
    found = [name for name, marker in MARKERS.items() if marker.lower().encode() in folded]
    return found + [name for name, marker in BINARY_MARKERS.items() if marker in raw]


def readable_forms(path: Path) -> Iterator[tuple[str, bytes]]:
    """``path``'s bytes, and the bytes of the text inside it when it is compressed or
    columnar (zstd, gzip, zip, Parquet), each with a label of what was read."""
    raw = path.read_bytes()
    yield "bytes", raw
    name = path.name.lower()
    if name.endswith(".zst"):
        import pyarrow as pa

        with pa.OSFile(str(path), "rb") as file, pa.CompressedInputStream(file, "zstd") as src:
            yield "zstd-decompressed", src.read()
    elif name.endswith(".gz"):
        yield "gunzipped", gzip.decompress(raw)
    elif zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for member in archive.namelist():
                yield f"zip member {member}", archive.read(member)
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield "parquet values", pq.read_table(path).to_pandas().to_csv().encode()


def scan_files(paths: Iterable[Path], root: Path) -> list[tuple[str, str]]:
    """``(file and form, marker)`` for every marker found in each of ``paths``, named by its
    place under ``root``."""
    found: list[tuple[str, str]] = []
    for path in paths:
        for form, data in readable_forms(path):
            where = f"{path.relative_to(root)} ({form})"
            found.extend((where, marker) for marker in found_markers(data))
    return found


def truncate(path: Path) -> None:
    """Cut a planted 837 or 835 short in the middle of its first planted last name."""
    text = path.read_text()
    path.write_text(text[: text.index(LAST_NAME) + len(LAST_NAME) // 2])


def garble(path: Path) -> None:
    """Damage a planted 837's first subscriber where identifiers are, for ingest and score to
    speak of: a birth date no calendar holds, a last name longer than NM103 allows, an unknown
    segment quoting the member ID and address; and take its claim's payer ID away (the claim
    is quarantined)."""
    text = path.read_text()
    member = re.search(rf"MI\*({MEMBER_PREFIX}[^~*]*)~", text)
    assert member is not None, f"{path.name} has no planted member ID"
    text = text.replace(f"DMG*D8*{BIRTH_DATE}", f"DMG*D8*{INVALID_BIRTH_DATE}", 1)
    text = text.replace(f"*{LAST_NAME}*", f"*{LAST_NAME * 6}*", 1)
    text = text.replace(member[0], f"{member[0]}ZZZ*{member[1]}*{LAST_NAME} {STREET}~", 1)
    text, payers = re.subn(r"(NM1\*PR\*2\*[^~]*\*PI\*)[^~*]+~", r"\1~", text, count=1)
    assert payers == 1, f"{path.name} has no payer ID"
    path.write_text(text)
