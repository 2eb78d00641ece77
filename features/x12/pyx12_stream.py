"""Segments out of pyx12, with every pyx12 finding collected as a warning.

Two depths of checking, both by pyx12:

``full``
    :class:`pyx12.x12context.X12ContextReader` walks the implementation-guide map: loop
    placement, mandatory segments, element types, code values, SE/GE/IEA counts. Thorough,
    about 5,000 segments/s per core.
``envelope``
    :class:`pyx12.x12file.X12Reader` only: separators, ISA/GS/ST/SE/GE/IEA control numbers and
    counts, HL parent chain and 2400 LX numbering. About 30x faster; for bulk loads of files from
    a known-good source (our own writer, a clearinghouse that already validated them).

Either way a finding is a warning: the data is kept, and the count goes into the file report.
Messages are redacted of element values (:func:`redact`) so no name, member ID or birth date
reaches a report.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pyx12.error_handler
import pyx12.errors
import pyx12.params
import pyx12.x12context
import pyx12.x12file

Validation = Literal["full", "envelope"]

MAX_MESSAGES = 50
"""Messages kept per file in the report (the count is always complete)."""

# pyx12 quotes a segment it cannot place with its first element ("Segment NM1*QC not found"),
# which for an unknown or misplaced segment can be a name or a member ID.
_QUOTED_SEGMENT = re.compile(r"Segment (\w+)[^\w\s].*? not found\.", re.DOTALL)
# Any other segment text (an exception quoting the segment it choked on): everything after the
# segment id goes, names with spaces included.
_SEGMENT_TEXT = re.compile(r"\b([A-Z][A-Z0-9]{1,2})[*|^~].*", re.DOTALL)
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{1,2}")
# Member IDs, birth dates and account numbers are mostly long runs of digits.
_LONG_NUMBER = re.compile(r"\d{6,}")


def redact(message: str, value: str | None = None) -> str:
    """A pyx12 message without the element values it quotes: the bad value it names, the
    content of a segment it quotes, and any long number."""
    if value:
        message = message.replace(str(value), "...")
    message = _QUOTED_SEGMENT.sub(r"Segment \1 not found.", message)
    message = _SEGMENT_TEXT.sub(r"\1 ...", message)
    return _LONG_NUMBER.sub("...", message)


@dataclass
class Pyx12Findings:
    """pyx12's findings for one file: a full count and the first few redacted messages."""

    count: int = 0
    messages: list[str] = field(default_factory=list)

    def add(self, level: str, code: str, text: str, value: str | None, position: int) -> None:
        self.count += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(f"segment {position}: {level} {code}: {redact(text, value)}")


class CollectingErrorHandler(pyx12.error_handler.errh_null):
    """A pyx12 error handler that records every error instead of keeping only the last one."""

    def __init__(self, findings: Pyx12Findings) -> None:
        super().__init__()
        self.findings = findings
        self.position = 0

    def isa_error(self, err_cde: str, err_str: str) -> None:
        self.findings.add("ISA", err_cde, err_str, None, self.position)

    def gs_error(self, err_cde: str, err_str: str) -> None:
        self.findings.add("GS", err_cde, err_str, None, self.position)

    def st_error(self, err_cde: str, err_str: str) -> None:
        self.findings.add("ST", err_cde, err_str, None, self.position)

    def seg_error(
        self,
        err_cde: str,
        err_str: str,
        err_value: str | None = None,
        src_line: int | None = None,
    ) -> None:
        self.findings.add("segment", err_cde, err_str, err_value, src_line or self.position)

    def ele_error(
        self,
        err_cde: str,
        err_str: str,
        bad_value: str | None,
        refdes: str | None = None,
    ) -> None:
        self.findings.add("element", err_cde, err_str, bad_value, self.position)

    def handle_errors(self, err_list: list[Any]) -> None:
        for kind, code, text, value, line in err_list:
            self.findings.add(kind, code, text, value, line or self.position)


Values = list[list[str]]
"""A segment's elements (1-based element n is ``values[n - 1]``), each a list of components."""


def _values(seg: Any) -> Values:
    return [[e.value for e in comp.elements] for comp in seg.elements]


@dataclass
class StreamState:
    """What the stream knows when it ends: open envelopes (a truncated file) and the last id."""

    open_loops: list[tuple[str, str | None]] = field(default_factory=list)
    last_segment: str = ""
    segments: int = 0

    def note(self, seg_id: str, position: int) -> None:
        self.segments = position
        # Only what looks like a segment ID is named in a reason: with its separators swapped a
        # file's "IDs" are element values, a member ID or a 70 KB run of junk (issue 20's
        # fuzzing, seed 6172).
        if _SEGMENT_ID.fullmatch(seg_id):
            self.last_segment = f"{seg_id} at segment {position}"


def iter_segments(
    text: str, validation: Validation, findings: Pyx12Findings, state: StreamState
) -> Iterator[tuple[int, str, Values]]:
    """Yield ``(position, segment_id, values)`` for every segment, position 1-based.

    Raises
    ------
    pyx12.errors.X12Error, pyx12.errors.EngineError
        When pyx12 cannot read the file at all (no map for the version, broken ISA).
    """
    if validation == "full":
        errh = CollectingErrorHandler(findings)
        params = pyx12.params.params()
        reader = pyx12.x12context.X12ContextReader(params, errh, io.StringIO(text))
        for position, node in enumerate(_guarded(reader.iter_segments()), start=1):
            errh.position = position
            seg = node.seg_data
            seg_id = seg.get_seg_id() or ""
            state.note(seg_id, position)
            yield position, seg_id, _values(seg)
        src = reader.src
    else:
        src = pyx12.x12file.X12Reader(io.StringIO(text))
        for position, seg in enumerate(_guarded(src), start=1):
            for kind, code, msg, value, line in src.pop_errors():
                findings.add(kind, code, msg, value, line or position)
            seg_id = seg.get_seg_id() or ""
            state.note(seg_id, position)
            yield position, seg_id, _values(seg)
    state.open_loops = list(src.loops)
    src.cleanup()
    for kind, code, msg, value, line in src.pop_errors():
        findings.add(kind, code, msg, value, line or state.segments)


class Pyx12Failure(Exception):
    """pyx12 itself failed on this input (an exception of its own code, not one it raises for
    bad X12): the file cannot be read past that segment."""


def _guarded(segments: Iterable[Any]) -> Iterator[Any]:
    """pyx12's segments, its own failures turned into :class:`Pyx12Failure`.

    pyx12 trips over some damaged envelopes instead of reporting them: a GE or an SE with no
    group or set open pops an empty stack (IndexError; issue 20's fuzzing, seed 82). Only the
    exception's type is kept: its text could quote a segment.
    """
    iterator = iter(segments)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except read_errors():
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of pyx12's is the file's
            raise Pyx12Failure(
                f"pyx12 failed ({type(exc).__name__}) on a segment it does not expect there: "
                "an envelope segment (ISA/IEA, GS/GE, ST/SE) repeated, missing or out of order?"
            ) from exc


def read_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "this file cannot be read" rather than a bug."""
    return (
        pyx12.errors.X12Error,
        pyx12.errors.EngineError,
        pyx12.errors.XML_Reader_Error,
        Pyx12Failure,
    )
