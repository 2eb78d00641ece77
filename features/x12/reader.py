"""Read one X12 file (837P, 837I, 835, 999, 277CA) into contract rows.

pyx12 tokenises and validates (see :mod:`features.x12.pyx12_stream`); this module turns its
segment stream into rows of the data contract (:mod:`features.schema`). Fields are picked by
segment id and qualifier in guide order (2000A billing, 2000B subscriber, 2300 claim, 2310
providers, 2320 other payer, 2400 lines; 835 header, 2100 claim payment, 2110 service payment)
rather than by pyx12's loop path, because pyx12 loses its place in the map after a segment it
cannot match (an SVC with an unknown qualifier, say) while the order of segments still tells
which loop they belong to.

Nothing here logs or returns member IDs, names or birth dates outside the contract rows. A
patient's name is read only to hash the claim's ``patient_key`` (:mod:`features.identity`) and
goes no further: the patient is the 2000C/2010CA person when there is one, else the subscriber.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from features.codes import code_tables
from features.identity import patient_key
from features.x12.normalise import decode_bytes, normalise_text, terminator_problem
from features.x12.placeholders import (
    UNKNOWN_OTHER_PAYER,
    UNNAMED_PATIENT,
    is_placeholder_claim_id,
)
from features.x12.pyx12_stream import (
    Pyx12Findings,
    StreamState,
    Validation,
    Values,
    iter_segments,
    read_errors,
    redact,
)

Row = dict[str, Any]

_CENT = Decimal("0.01")
_ZERO = Decimal(0)
_DX_QUALIFIERS = {"ABK": True, "BK": True, "ABF": False, "BF": False}
_REJECTED_277 = {"A3", "A4", "A6", "A7", "A8"}
_AUTHORIZATION_REFS = {"G1": "prior_auth_number", "9F": "referral_number"}
_CLAIM_DATES = {"439": "accident_date", "431": "onset_date", "454": "initial_treatment_date"}
# 837I occurrence codes (HI*BH) meaning an accident, as the 837P's CLM11 related causes:
# 01 accident/medical coverage, 03 tort liability, 05 no medical or liability coverage (other
# accident); 02 no-fault insurance, auto accident; 04 employment related.
_OCCURRENCE_CAUSES = {"01": "OA", "02": "AA", "03": "OA", "04": "EM", "05": "OA"}
_ONSET_OCCURRENCE = "11"
_NOTE_SEPARATOR = " | "
_REMIT_DATES = {
    "232": "statement_from",
    "233": "statement_to",
    "050": "received_date",
    "036": "coverage_expiration_date",
}
_REMIT_MEMBER_IDS = {
    "QC": "patient_member_id",
    "IL": "insured_member_id",
    "74": "corrected_member_id",
}


@dataclass
class TransactionSet:
    """One complete transaction set (ST to SE) of a file, for finding the same one twice.

    ``digest`` hashes its segments, element by element, from ST01 to the segment before SE:
    the same remittance or claim batch sent again has the same digest whatever its separators,
    line breaks, encoding or envelope (ISA/GS control numbers and dates, ST02/SE02). Its BHT,
    BPR and TRN (batch reference, payment and trace number) are content, so a new batch or
    payment never matches. ``rows`` gives the set's rows as ``[start, end)`` in each table.
    """

    digest: str
    st02: str
    position: int
    claims: int
    remittances: int
    rows: dict[str, tuple[int, int]]


@dataclass
class FileParse:
    """Everything read from one file, as plain rows (cheap to send between processes)."""

    path: str
    kinds: list[str] = field(default_factory=list)
    versions_seen: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_reason: str | None = None
    tables: dict[str, list[Row]] = field(default_factory=dict)
    quarantine: list[Row] = field(default_factory=list)
    claims_read: int = 0
    remittances_read: int = 0
    transaction_sets: list[TransactionSet] = field(default_factory=list)
    placeholder_clp01: int = 0
    pyx12_warnings: int = 0
    pyx12_messages: list[str] = field(default_factory=list)

    def rows(self, table: str) -> list[Row]:
        return self.tables.setdefault(table, [])

    def reject(self, position: int | str, reason: str, claim_id: str | None = None) -> None:
        self.quarantine.append(
            {"file": self.path, "position": str(position), "claim_id": claim_id, "reason": reason}
        )


def v(values: Values, n: int, k: int = 1) -> str:
    """Element ``n`` (1-based), component ``k`` (1-based) of a segment; '' when absent."""
    if n > len(values):
        return ""
    comp = values[n - 1]
    return comp[k - 1].strip() if k <= len(comp) else ""


def money(text: str) -> float | None:
    """Dollars from an X12 amount: parsed exactly with Decimal, rounded half-up to the cent."""
    if not text:
        return None
    try:
        return float(Decimal(text).quantize(_CENT, rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return None


def amount(text: str) -> Decimal | None:
    """An X12 amount as an exact Decimal (for sums rounded once, at the end); None when absent."""
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def number(text: str) -> float | None:
    if not text:
        return None
    try:
        return float(Decimal(text))
    except InvalidOperation:
        return None


def x12_date(text: str) -> str | None:
    """``CCYYMMDD`` (or the start of an ``RD8`` range) checked as a calendar date; else None."""
    return _checked_date(text[:8])


@lru_cache(maxsize=65536)
def _checked_date(text: str) -> str | None:
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return None
    return text


def _isa_date(yymmdd: str) -> str | None:
    return x12_date("20" + yymmdd) if len(yymmdd) == 6 else None


def _person_key(person: Row) -> str | None:
    """The patient key of a subscriber or patient loop, hashed once (the name goes no further);
    none for the writer's stand-in name of a patient without a key."""
    if "key" not in person:
        name = (person.get("last"), person.get("first"))
        person["key"] = (
            None
            if name == UNNAMED_PATIENT
            else patient_key(name[0], name[1], person.get("dob"), person.get("sex"))
        )
    key: str | None = person["key"]
    return key


def _attachments(pwk: list[tuple[str, str]] | None) -> tuple[str | None, str | None]:
    """PWK report types and transmission codes, each joined by commas in segment order (the
    two lists stay aligned: the n-th type went by the n-th transmission code)."""
    if not pwk:
        return None, None
    types = ",".join(kind for kind, _ in pwk)
    sent = ",".join(how for _, how in pwk)
    return types or None, sent if sent.strip(",") else None


def parse_file(path: Path, validation: Validation = "full") -> FileParse:
    """Read one file into contract rows, quarantine entries and a report.

    Never raises for bad input: a file pyx12 cannot read comes back with ``file_reason`` set.
    """
    result = FileParse(path=str(path))
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        result.file_reason = f"File {name}: cannot be read ({exc.strerror})"
        return result
    text = decode_bytes(raw, result.notes)
    # What the file holds is counted in its bytes less any NUL: UTF-16 text then reads as ASCII
    # in either byte order, also where junk shifted it (a decoding reads one order only).
    held = raw.replace(b"\0", b"").decode("latin-1") if b"\0" in raw else text
    del raw  # a large file's bytes need not stay beside its text
    norm = normalise_text(text, name)
    result.kinds, result.versions_seen = norm.kinds, norm.versions_seen
    result.notes.extend(dict.fromkeys(norm.notes))
    if norm.text is None:
        result.file_reason = norm.reason
        _count_unread(result, held, None)
        return result
    findings = Pyx12Findings()
    state = StreamState()
    extractor = _Extractor(result, path.stem, norm.damaged)
    try:
        for position, seg_id, values in iter_segments(norm.text, validation, findings, state):
            extractor.segment(position, seg_id, values)
    except read_errors() as exc:
        result.file_reason = (
            f"File {name}: pyx12 cannot read the file at segment {state.segments + 1} "
            f"({_redact(str(exc))}); ask the sender to re-export it as 5010"
        )
    # A wrong terminator shows as a file cut short or one pyx12 chokes on: name the cause.
    problem = terminator_problem(text) if extractor.st_open or result.file_reason else None
    if problem and result.file_reason:
        result.file_reason = f"File {name}: {problem}"
    extractor.finish(state, problem, extractor.st_open and _garbled(text, norm.text, state))
    _count_unread(result, held, problem)
    result.pyx12_warnings = findings.count
    result.pyx12_messages = findings.messages
    return result


def _garbled(text: str, read: str, state: StreamState) -> bool:
    """Whether junk may be why a file reads as cut short: pyx12 stopped before the last
    segment of the text it ``read`` (it ends quietly where it cannot find the next one), or the
    file's ``text`` holds what no X12 file does: a NUL or another control character that is not
    a separator, or U+FFFD (bytes UTF-16 could not decode). Letters past Latin-1 are no sign:
    a UTF-16 file can name a patient in any script."""
    if len(read) <= 105:
        return False
    if read.count(read[105]) > state.segments:
        return True
    separators = re.escape("".join({read[3], read[82], read[104], read[105]}))
    junk = rf"(?![{separators}])[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]"
    return re.search(junk, text) is not None


def count_segments(text: str, segment_id: str) -> int:
    """Segments named ``segment_id`` in X12 text, whatever its separators, no parse needed: the
    ID followed by an element separator (any character but a letter, a digit or a space: pyx12
    reads a file whose separator is a line break) and not by an empty element, or ending the
    text (a file cut right there), wherever it stands (a segment run into the one before it,
    its terminator lost, still counts), except right after that separator (an element whose
    value is the ID)."""
    # The ID leads the pattern so the regex engine searches for it as a literal (a leading
    # group made the scan of a 50 MB file take seconds); the character before is checked here.
    count = 0
    for match in re.finditer(rf"{segment_id}(?:([^A-Za-z0-9 ])(?!\1)|\Z)", text):
        start = match.start()
        count += start == 0 or text[start - 1] != match.group(1)
    return count


def _count_unread(result: FileParse, text: str, problem: str | None) -> None:
    """Every claim and remittance the file holds counts as read, those not extracted too: a
    file rejected whole (its quarantine row gives the reason) or a CLM/CLP that never reached
    the reader as a segment (run into the one before it), which gets a row of its own (issue
    20: such claims were counted nowhere, and the report did not add up to the files)."""
    units = (("claims", "CLM", "claims_read"), ("remittances", "CLP", "remittances_read"))
    for unit, seg_id, attr in units:
        held, read = count_segments(text, seg_id), getattr(result, attr)
        if held <= read:
            continue
        setattr(result, attr, held)
        if result.file_reason:
            continue
        problem = problem or terminator_problem(text)
        lost = f"File {Path(result.path).name}: {held - read} of its {held} {seg_id} segments"
        result.reject(
            "file",
            f"{lost} could not be read as {unit}: {problem}"
            if problem
            else f"{lost} could not be read as {unit} (a segment run into the one before it, "
            "or outside a transaction set); ask the sender to re-export the file",
        )


def _canonical(seg_id: str, val: Values) -> bytes:
    """A segment's ID and values, separator-free, for a transaction set's digest."""
    elements = "\x1d".join("\x1f".join(comp) for comp in val)
    return f"{seg_id}\x1d{elements}\x1e".encode()


def _redact(message: str) -> str:
    # pyx12 exception texts can quote a whole segment: redacted as its findings are, and cut
    # short (segment id and qualifiers come first).
    return redact(message)[:160]


class _Extractor:
    """Segment-order state machine shared by the 837, 835 and acknowledgement readers."""

    def __init__(self, result: FileParse, stem: str, damaged: dict[int, str] | None = None):
        self.r = result
        self.stem = stem
        self.damaged = damaged or {}
        self.set_damage: str | None = None
        self.tables = code_tables()
        self.payer_types: dict[str | None, str] = {}
        self.isa_date: str | None = None
        self.isa13 = ""
        self.gs_date: str | None = None
        self.st_kind = ""
        self.st02 = ""
        self.st_open = False
        self.st_position = 0
        self.content = hashlib.sha256()
        self.set_start = (0, 0)
        self.pending: dict[str, list[Row]] = {}
        self.pending_claim_ids: list[tuple[str, int]] = []
        self.clp_seq = 0
        self.group_kinds = iter(result.kinds)
        self.group_kind = ""
        self._reset_837_header()
        self._reset_835_header()

    # -- envelope ---------------------------------------------------------------------------
    def segment(self, pos: int, seg_id: str, val: Values) -> None:
        if self.st_open and seg_id != "SE":
            self.content.update(_canonical(seg_id, val))
        self._dispatch(pos, seg_id, val)
        if pos in self.damaged:  # after: a damaged CLM or CLP is its own claim's
            self._damage(pos)

    def _dispatch(self, pos: int, seg_id: str, val: Values) -> None:
        if seg_id == "ISA":
            self.isa_date = _isa_date(v(val, 9))
            self.isa13 = v(val, 13)
        elif seg_id == "GS":
            self.gs_date = x12_date(v(val, 4))
            self.group_kind = next(self.group_kinds, "")
        elif seg_id == "ST":
            if self.st_open:
                self._abandon_set(pos)
            self.st_kind = self.group_kind
            self.st02 = v(val, 2)
            self.st_open = True
            self.st_position = pos
            self.set_damage = None
            self.content = hashlib.sha256(_canonical(seg_id, [*val[:1], *val[2:3]]))  # no ST02
            self.set_start = (self.r.claims_read, self.r.remittances_read)
            self.pending = {}
            self.pending_claim_ids = []
            self._reset_837_header()
            self._reset_835_header()
        elif seg_id == "SE":
            if self.st_open:
                self._close_set()
        elif not self.st_open:
            return  # outside a transaction set: not read (counted as not read)
        elif self.st_kind in ("837P", "837I"):
            self._seg_837(pos, seg_id, val)
        elif self.st_kind == "835":
            self._seg_835(pos, seg_id, val)
        elif self.st_kind == "277CA":
            self._seg_277(pos, seg_id, val)
        elif self.st_kind == "999":
            self._seg_999(pos, seg_id, val)

    def _damage(self, pos: int) -> None:
        """A segment whose over-long elements were cut: the claim or remittance it belongs to
        is quarantined; one outside any (a header or subscriber loop) takes its whole set."""
        reason = (
            f"File {Path(self.r.path).name}, segment {pos}: {self.damaged[pos]}; ask the sender "
            "to re-export the file"
        )
        if self.claim is not None:
            self.claim.setdefault("_damage", reason)
        elif self.remit is not None:
            self.remit.setdefault("_damage", reason)
        elif self.st_open:
            self.set_damage = self.set_damage or reason

    def _quarantine_damaged(self) -> None:
        """Leave the damaged remittances (and the whole set, when it is damaged) out of the
        set's rows, with their reason. Damaged claims are refused as they close."""
        if self.set_damage:
            for claim_id, pos in self.pending_claim_ids:
                self.r.reject(pos, self.set_damage, claim_id)
            self.pending = {}
            return
        damaged = {
            row["remit_id"]: row
            for row in self.pending.get("remittances", [])
            if row.get("_damage")
        }
        if not damaged:
            return
        for row in damaged.values():
            self.r.reject(row["_pos"], row["_damage"], row["claim_id"])
        for table, rows in self.pending.items():
            self.pending[table] = [r for r in rows if r.get("remit_id") not in damaged]

    def _abandon_set(self, pos: int) -> None:
        """An ST before the open set's SE: the open set's claims are quarantined, not mixed up
        with the next set's (their rows were dropped without a reason before)."""
        self._close_claim()
        self._close_remit()
        reason = (
            f"File {Path(self.r.path).name}: transaction set ST02={self.st02} (segment "
            f"{self.st_position}) is not closed by SE before the next ST (segment {pos}); ask "
            "the sender to re-export the file"
        )
        for claim_id, claim_pos in self.pending_claim_ids:
            self.r.reject(claim_pos, reason, claim_id)

    def _close_set(self) -> None:
        """SE: the set's rows join the file's, and the set is noted with its digest."""
        self._close_claim()
        self._close_remit()
        self._quarantine_damaged()
        spans = {}
        for table, rows in self.pending.items():
            start = len(self.r.rows(table))
            self.r.rows(table).extend(rows)
            spans[table] = (start, start + len(rows))
        self.r.transaction_sets.append(
            TransactionSet(
                digest=self.content.hexdigest(),
                st02=self.st02,
                position=self.st_position,
                claims=self.r.claims_read - self.set_start[0],
                remittances=self.r.remittances_read - self.set_start[1],
                rows=spans,
            )
        )
        self.pending = {}
        self.pending_claim_ids = []
        self.st_open = False

    def finish(self, state: StreamState, problem: str | None = None, garbled: bool = False) -> None:
        """End of file: a transaction set still open means the file was cut short, that its SE
        is missing (the GE or IEA came), that its SE was not told apart from the segment before
        it (``problem``: a wrong terminator) or that junk hid it (``garbled``: pyx12 stopped
        before the file's end, or the decoder replaced bytes)."""
        if not self.st_open:
            if state.open_loops and not self.r.file_reason:
                self.r.notes.append(
                    "envelope not closed ("
                    + ", ".join(kind for kind, _ in state.open_loops)
                    + " trailer missing); the transaction sets themselves are complete"
                )
            return
        self._close_claim()
        self._close_remit()
        name, last = Path(self.r.path).name, state.last_segment or "none"
        unclosed = f"File {name}: transaction set ST02={self.st02} (segment {self.st_position})"
        reason = (
            f"{unclosed} is not closed by SE; the file is truncated (last readable segment: "
            f"{last}): ask the sender for the complete file"
        )
        if last.startswith(("GE ", "IEA ")):
            reason = (
                f"{unclosed} is not closed by SE: its SE is missing (the file goes on to "
                f"{last}); ask the sender to re-export the file"
            )
        elif garbled:
            reason = (
                f"{unclosed} is not closed by SE: the file cannot be read past {last}, what "
                "follows is not X12 (binary junk, or an encoding broken there?); ask the sender "
                "to re-export the file"
            )
        if problem:
            reason = (
                f"File {Path(self.r.path).name}: {problem} (transaction set ST02={self.st02} "
                f"at segment {self.st_position} reads as not closed by SE)"
            )
        for claim_id, pos in self.pending_claim_ids:
            self.r.reject(pos, reason, claim_id)
        if not self.pending_claim_ids and not self.r.file_reason:
            self.r.file_reason = reason
        self.pending = {}

    def _emit(self, table: str, row: Row) -> None:
        self.pending.setdefault(table, []).append(row)

    # -- 837 --------------------------------------------------------------------------------
    def _reset_837_header(self) -> None:
        self.bht_date: str | None = None
        self.ctx = "header"
        self.entity = ""
        self.billing: Row = {}
        self.subscriber: Row = {}
        # The 2000C patient when it is not the subscriber (empty otherwise). Its name is held
        # only until the claim's patient key is hashed from it, never emitted.
        self.patient: Row = {}
        self.claim: Row | None = None
        self.claim_seq = 0

    def _seg_837(self, pos: int, seg_id: str, val: Values) -> None:
        ctx = self.ctx
        claim = self.claim
        if seg_id == "HL":
            self._close_claim()
            level = v(val, 3)
            if level == "20":
                self.ctx, self.billing = "2000A", {}
            elif level == "22":
                self.ctx, self.subscriber, self.patient = "2000B", {}, {}
            else:
                self.ctx, self.patient = "2000C", {"in_loop": True}
        elif seg_id == "BHT":
            self.bht_date = x12_date(v(val, 4))
        elif seg_id == "NM1":
            self._name_837(val, ctx, claim)
        elif seg_id == "N4":
            state = v(val, 2) or None
            if ctx == "2010AA":
                self.billing["state"] = state
            elif ctx == "2010BA":
                self.subscriber["state"] = state
            elif ctx == "2010CA":
                self.patient["state"] = state
            elif claim is not None and ctx == "2310" and self.entity == "77":
                claim["service_facility_state"] = state
        elif seg_id == "PRV":
            taxonomy = v(val, 3) or None
            if ctx == "2000A":
                self.billing["taxonomy"] = taxonomy
            elif claim is not None and ctx == "2310":
                if self.entity == "82":
                    claim["rendering_taxonomy"] = taxonomy
                elif self.entity == "71":
                    claim["_attending_taxonomy"] = taxonomy
        elif seg_id == "SBR":
            if claim is not None:
                self._other_subscriber(claim, val)
            else:
                sub = self.subscriber
                sub["sbr01"] = v(val, 1) or None
                sub["sbr02"] = v(val, 2) or None
                sub["sbr03"] = v(val, 3) or None
                sub["sbr09"] = v(val, 9) or None
        elif seg_id == "PAT":
            if ctx == "2000C":
                self.patient["relationship"] = v(val, 1) or None
        elif seg_id == "DMG":
            person = (
                self.subscriber if ctx == "2010BA" else self.patient if ctx == "2010CA" else None
            )
            if person is not None:
                person["dob"] = x12_date(v(val, 2))
                person["sex"] = v(val, 3) or None
        elif seg_id == "CLM":
            self._close_claim()
            self._open_claim(pos, val)
        elif claim is None:
            return
        elif seg_id == "LX":
            self.ctx = "2400"
            claim["_lines"].append({"_date": None, "_pos": pos})
        elif seg_id in ("SV1", "SV2") and ctx == "2400" and claim["_lines"]:
            self._service_line(claim["_lines"][-1], seg_id, val)
        elif seg_id == "SVD":
            self.ctx = "2430"
        elif seg_id == "LIN":
            if ctx in ("2400", "2410") and claim["_lines"]:
                self.ctx = "2410"
                if v(val, 2) == "N4":
                    claim["_lines"][-1]["ndc_code"] = v(val, 3) or None
        elif seg_id == "CTP":
            if ctx == "2410":
                line = claim["_lines"][-1]
                line["ndc_quantity"] = number(v(val, 4))
                line["ndc_unit"] = v(val, 5) or None
        elif seg_id == "DTP":
            self._date_837(claim, ctx, val)
        elif seg_id == "REF":
            self._reference_837(claim, ctx, val)
        elif seg_id == "PWK":
            target = claim if ctx == "2300" else claim["_lines"][-1] if ctx == "2400" else None
            if target is not None:
                target.setdefault("_pwk", []).append((v(val, 1), v(val, 2)))
        elif seg_id == "NTE":
            target = claim if ctx == "2300" else claim["_lines"][-1] if ctx == "2400" else None
            if target is not None and v(val, 2):
                target.setdefault("_notes", []).append(v(val, 2))
        elif seg_id == "AMT":
            if ctx == "2320" and v(val, 1) == "D":
                paid = amount(v(val, 2))
                if paid is not None:
                    claim["_other_paid"] = claim.get("_other_paid", _ZERO) + paid
        elif seg_id == "CRC":
            if ctx == "2300" and v(val, 1) == "ZZ":
                claim["epsdt_indicator"] = v(val, 2) or None
        elif seg_id == "HI" and ctx == "2300":
            self._health_information(claim, val)

    def _name_837(self, val: Values, ctx: str, claim: Row | None) -> None:
        """NM1: which loop starts (by entity code and where we are) and the identifiers kept."""
        entity = v(val, 1)
        npi = v(val, 9) if v(val, 8) == "XX" else None
        self.entity = entity
        if claim is None:
            if entity == "85":
                self.ctx = "2010AA"
                self.billing["npi"] = npi
            elif entity == "IL":
                self.ctx = "2010BA"
                self.subscriber.update(member_id=v(val, 9), last=v(val, 3), first=v(val, 4))
            elif entity == "PR":
                self.ctx = "2010BB"
                self.subscriber["payer_id"] = v(val, 9)
                self.subscriber["payer_name"] = v(val, 3) or None
            elif entity == "QC":
                self.ctx = "2010CA"
                self.patient.update(last=v(val, 3), first=v(val, 4))
            else:
                self.ctx = "2010"
        elif ctx in ("2320", "2330"):
            self.ctx = "2330"
            if entity == "PR" and claim["_other_payers"] == 1 and claim["other_payer_id"] is None:
                payer = v(val, 9)
                claim["other_payer_id"] = None if payer == UNKNOWN_OTHER_PAYER else payer or None
        elif ctx in ("2400", "2410", "2420", "2430"):
            self.ctx = "2420"
            line = claim["_lines"][-1] if claim["_lines"] else None
            if npi and line is not None:
                if entity == "82":
                    line["line_rendering_npi"] = npi
                elif entity in ("DN", "DK"):
                    line.setdefault("_" + entity, npi)
        else:
            self.ctx = "2310"
            if entity == "82":
                claim["rendering_npi"] = npi
            elif entity == "71":
                claim["_attending"] = npi
            elif entity == "DN":
                claim["referring_npi"] = npi
            elif entity == "77":
                claim["service_facility_npi"] = npi

    def _other_subscriber(self, claim: Row, val: Values) -> None:
        """2320 SBR: another payer of this claim; the first one's responsibility and filing
        indicator are kept (its paid amount is summed over all of them)."""
        self.ctx = "2320"
        claim["has_other_coverage"] = True
        claim["_other_payers"] += 1
        if claim["_other_payers"] == 1:
            claim["other_payer_responsibility"] = v(val, 1) or None
            claim["other_payer_filing_indicator"] = v(val, 9) or None

    def _date_837(self, claim: Row, ctx: str, val: Values) -> None:
        qualifier, fmt, period = v(val, 1), v(val, 2), v(val, 3)
        start = x12_date(period)
        if ctx == "2400":
            if qualifier == "472" and claim["_lines"]:
                claim["_lines"][-1]["_date"] = start or "invalid"
        elif ctx == "2300":
            if qualifier in ("472", "434"):
                end = x12_date(period[9:17]) if fmt == "RD8" else start
                claim["_claim_dates"] = (start, end)
            elif qualifier in _CLAIM_DATES:
                claim[_CLAIM_DATES[qualifier]] = start
        elif ctx == "2330" and qualifier == "573" and claim["_other_payers"] == 1:
            claim["other_payer_adjudication_date"] = start

    def _reference_837(self, claim: Row, ctx: str, val: Values) -> None:
        qualifier, value = v(val, 1), v(val, 2) or None
        key = _AUTHORIZATION_REFS.get(qualifier)
        if ctx == "2300":
            if key:
                claim[key] = value
            elif qualifier == "F8":
                claim["original_payer_claim_number"] = value
            elif qualifier == "X4":
                claim["clia_number"] = value
            elif qualifier == "LU" and self.st_kind == "837I":
                # The 837I has no CLM11: its auto accident state is a REF.
                claim["auto_accident_state"] = value
        elif ctx == "2400" and claim["_lines"]:
            if key:
                # A line may list up to five; the first is kept. It stays the line's: a claim
                # whose one line is authorized is not authorized for its other lines.
                claim["_lines"][-1].setdefault("line_" + key, value)
            elif qualifier == "X4":
                claim["_lines"][-1]["line_clia_number"] = value

    def _health_information(self, claim: Row, val: Values) -> None:
        for comp in val:
            qualifier = comp[0] if comp else ""
            if qualifier in _DX_QUALIFIERS and len(comp) > 1 and comp[1]:
                code = comp[1].replace(".", "").strip().upper()
                if _DX_QUALIFIERS[qualifier]:
                    claim["_dx"].insert(0, code)
                else:
                    claim["_dx"].append(code)
            elif qualifier == "BH" and self.st_kind == "837I" and len(comp) > 1:
                # The 837I codes accidents and onset as occurrence codes with their dates.
                code, date = comp[1].strip(), x12_date(comp[3]) if len(comp) > 3 else None
                cause = _OCCURRENCE_CAUSES.get(code)
                if cause:
                    claim.setdefault("_causes", []).append(cause)
                    claim["accident_date"] = claim["accident_date"] or date
                elif code == _ONSET_OCCURRENCE:
                    claim["onset_date"] = claim["onset_date"] or date

    def _open_claim(self, pos: int, val: Values) -> None:
        self.ctx = "2300"
        self.claim_seq += 1
        sub, patient = self.subscriber, self.patient
        # The patient is the 2000C person when there is one, else the subscriber.
        person = patient if patient.get("in_loop") else sub
        relationship = patient.get("relationship") if person is patient else sub.get("sbr02")
        claim_id = v(val, 1)
        causes = [c for c in (v(val, 11, 1), v(val, 11, 2), v(val, 11, 3)) if c]
        self.claim = {
            "claim_id": claim_id,
            "submission_date": self.bht_date or self.gs_date or self.isa_date,
            "claim_type": "institutional" if self.st_kind == "837I" else "professional",
            "frequency_code": v(val, 5, 3) or None,
            "original_payer_claim_number": None,
            "payer_id": sub.get("payer_id") or None,
            "payer_name": sub.get("payer_name"),
            "claim_filing_indicator": sub.get("sbr09"),
            "payer_type": self._payer_type(sub.get("sbr09")),
            "billing_npi": self.billing.get("npi"),
            "rendering_npi": None,
            "referring_npi": None,
            "provider_taxonomy": None,
            "place_of_service": v(val, 5, 1) or None,
            "total_charge": money(v(val, 2)),
            "patient_id": sub.get("member_id") or None,
            "patient_birth_date": patient.get("dob") or sub.get("dob"),
            "patient_sex": patient.get("sex") or sub.get("sex"),
            "prior_auth_number": None,
            "referral_number": None,
            "has_other_coverage": False,
            "payer_responsibility": sub.get("sbr01"),
            "subscriber_group_number": sub.get("sbr03"),
            "patient_relationship": relationship,
            "patient_key": _person_key(person),
            "patient_state": patient.get("state") or sub.get("state"),
            "subscriber_state": sub.get("state"),
            "billing_state": self.billing.get("state"),
            "billing_taxonomy": self.billing.get("taxonomy"),
            "rendering_taxonomy": None,
            "service_facility_npi": None,
            "service_facility_state": None,
            "delay_reason_code": v(val, 20) or None,
            "related_causes": ",".join(causes) or None,
            "auto_accident_state": v(val, 11, 4) or None,
            "epsdt_indicator": None,
            "accident_date": None,
            "onset_date": None,
            "initial_treatment_date": None,
            "attachment_types": None,
            "attachment_transmission": None,
            "claim_note": None,
            "clia_number": None,
            "other_payer_id": None,
            "other_payer_responsibility": None,
            "other_payer_filing_indicator": None,
            "other_payer_paid_amount": None,
            "other_payer_adjudication_date": None,
            "_pos": pos,
            "_lines": [],
            "_dx": [],
            "_claim_dates": (None, None),
            "_other_payers": 0,
        }
        self.pending_claim_ids.append((claim_id, pos))

    def _payer_type(self, indicator: str | None) -> str:
        # One table lookup per filing indicator, not per claim (a pandas .loc costs ~0.5 ms).
        known = self.payer_types.get(indicator)
        if known is None:
            known = self.payer_types[indicator] = self.tables.payer_type_for_indicator(indicator)
        return known

    def _service_line(self, line: Row, seg_id: str, val: Values) -> None:
        if seg_id == "SV1":
            proc = val[0] if val else []
            line.update(
                procedure_code=(proc[1] if len(proc) > 1 else "").strip().upper(),
                modifiers=[m.strip() or None for m in proc[2:6]],
                line_charge=money(v(val, 2)),
                unit_basis=v(val, 3) or None,
                units=number(v(val, 4)),
                line_place_of_service=v(val, 5) or None,
                diagnosis_pointers=",".join(p for p in (val[6] if len(val) > 6 else []) if p)
                or None,
                revenue_code=None,
            )
        else:
            proc = val[1] if len(val) > 1 else []
            line.update(
                procedure_code=(proc[1] if len(proc) > 1 else "").strip().upper(),
                modifiers=[m.strip() or None for m in proc[2:6]],
                line_charge=money(v(val, 3)),
                unit_basis=v(val, 4) or None,
                units=number(v(val, 5)),
                line_place_of_service=None,
                diagnosis_pointers=None,
                revenue_code=v(val, 1) or None,
            )

    def _close_claim(self) -> None:
        claim = self.claim
        if claim is None:
            return
        self.claim = None
        claim_id = claim["claim_id"]
        file_name = Path(self.r.path).name
        self.r.claims_read += 1
        key = f"{self.r.path}#{claim['_pos']}"
        claim_from, claim_to = claim.pop("_claim_dates")
        line_dates = []
        for number_, line in enumerate(claim["_lines"], start=1):
            if "procedure_code" not in line:
                continue
            mods = (line["modifiers"] + [None] * 4)[:4]
            date = line["_date"] if line["_date"] != "invalid" else None
            date = date or claim_from
            if date:
                line_dates.append(date)
            types, transmission = _attachments(line.get("_pwk"))
            notes = line.get("_notes")
            self._emit(
                "lines",
                {
                    "claim_id": claim_id,
                    "line_number": number_,
                    "procedure_code": line["procedure_code"] or None,
                    "modifier_1": mods[0],
                    "modifier_2": mods[1],
                    "modifier_3": mods[2],
                    "modifier_4": mods[3],
                    "units": line["units"],
                    "line_charge": line["line_charge"],
                    "service_date": date,
                    "diagnosis_pointers": line["diagnosis_pointers"],
                    "revenue_code": line["revenue_code"],
                    "line_prior_auth_number": line.get("line_prior_auth_number"),
                    "line_referral_number": line.get("line_referral_number"),
                    "ndc_code": line.get("ndc_code"),
                    "ndc_quantity": line.get("ndc_quantity"),
                    "ndc_unit": line.get("ndc_unit"),
                    "line_note": _NOTE_SEPARATOR.join(notes) if notes else None,
                    "line_attachment_types": types,
                    "line_attachment_transmission": transmission,
                    "line_rendering_npi": line.get("line_rendering_npi"),
                    "line_referring_npi": line.get("_DN") or line.get("_DK"),
                    "line_place_of_service": line["line_place_of_service"],
                    "line_clia_number": line.get("line_clia_number"),
                    "unit_basis": line["unit_basis"],
                    "_key": key,
                    "_file": self.r.path,
                    "_pos": line["_pos"],
                },
            )
        for position, code in enumerate(claim.pop("_dx"), start=1):
            self._emit(
                "diagnoses",
                {
                    "claim_id": claim_id,
                    "position": position,
                    "code": code,
                    "_key": key,
                    "_file": self.r.path,
                    "_pos": claim["_pos"],
                },
            )
        claim["service_date_from"] = min(line_dates) if line_dates else claim_from
        claim["service_date_to"] = max(line_dates) if line_dates else (claim_to or claim_from)
        # Institutional claims name an attending physician (2310A) where professional claims
        # name a rendering provider (2310B); the attending stands in when no rendering is given.
        if claim["rendering_npi"] is None and claim.get("_attending"):
            claim["rendering_npi"] = claim["_attending"]
        claim["provider_taxonomy"] = (
            claim["rendering_taxonomy"]
            or claim.get("_attending_taxonomy")
            or claim["billing_taxonomy"]
        )
        claim["attachment_types"], claim["attachment_transmission"] = _attachments(
            claim.get("_pwk")
        )
        if "_notes" in claim:
            claim["claim_note"] = _NOTE_SEPARATOR.join(claim["_notes"])
        if "_causes" in claim and not claim["related_causes"]:
            claim["related_causes"] = ",".join(dict.fromkeys(claim["_causes"]))
        if "_other_paid" in claim:
            claim["other_payer_paid_amount"] = float(claim["_other_paid"].quantize(_CENT))
        reject = claim.get("_damage")
        if reject:
            pass
        elif claim["payer_id"] is None:
            reject = (
                f"File {file_name}, segment {claim['_pos']}: claim {claim_id!r} has no payer "
                "identifier (2010BB NM1*PR NM109); add it and resubmit"
            )
        elif claim["service_date_from"] is None:
            reject = (
                f"File {file_name}, segment {claim['_pos']}: claim {claim_id!r} has no valid "
                "service date (DTP*472 on the lines or the claim); add the dates and resubmit"
            )
        row = {k: v_ for k, v_ in claim.items() if not k.startswith("_")}
        row.update(_key=key, _file=self.r.path, _pos=claim["_pos"], _reject=reject)
        self._emit("claims", row)

    # -- 835 --------------------------------------------------------------------------------
    def _reset_835_header(self) -> None:
        self.bpr_date: str | None = None
        self.dtm405: str | None = None
        self.payer_name: str | None = None
        self.payer_id: str | None = None
        self.trn_payer: str | None = None
        self.ctx835 = "header"
        self.remit: Row | None = None
        self.remit_line: Row | None = None
        self.remit_buffer: list[Row] = []
        self.svc_count = 0

    def _seg_835(self, pos: int, seg_id: str, val: Values) -> None:
        remit = self.remit
        if seg_id == "BPR":
            self.bpr_date = x12_date(v(val, 16))
        elif seg_id == "TRN":
            self.trn_payer = v(val, 3) or None
        elif seg_id == "DTM" and remit is None and v(val, 1) == "405":
            self.dtm405 = x12_date(v(val, 2))
        elif seg_id == "N1" and remit is None:
            self.ctx835 = "1000A" if v(val, 1) == "PR" else "1000B"
            if self.ctx835 == "1000A":
                self.payer_name = v(val, 2) or None
                self.payer_id = v(val, 4) or self.payer_id
        elif seg_id == "REF" and self.ctx835 == "1000A" and v(val, 1) == "2U":
            self.payer_id = self.payer_id or v(val, 2) or None
        elif seg_id == "CLP":
            self._open_remit(pos, val)
        elif remit is None:
            return
        elif seg_id == "DTM":
            qualifier = v(val, 1)
            if self.ctx835 == "2100":
                column = _REMIT_DATES.get(qualifier)
                if column:
                    remit[column] = x12_date(v(val, 2))
                    if qualifier == "232":
                        remit["_service_date"] = remit[column]
            elif self.ctx835 == "2110" and qualifier in ("472", "150"):
                date = x12_date(v(val, 2))
                remit["_service_date"] = remit["_service_date"] or date
                service = self.remit_line
                if service is not None and service["service_date"] is None:
                    service["service_date"] = date
        elif seg_id == "NM1":
            column = _REMIT_MEMBER_IDS.get(v(val, 1))
            if column and self.ctx835 == "2100":
                remit[column] = v(val, 9) or None
        elif seg_id == "CAS":
            line = self.svc_count if self.ctx835 == "2110" else None
            group = v(val, 1)
            for i in range(6):
                carc = v(val, 2 + 3 * i)
                if not carc:
                    continue
                self._emit(
                    "adjustments",
                    {
                        "remit_id": remit["remit_id"],
                        "claim_id": remit["claim_id"],
                        "line_number": line,
                        "group_code": group,
                        "carc": carc,
                        "amount": money(v(val, 3 + 3 * i)),
                        "quantity": number(v(val, 4 + 3 * i)),
                        "_file": self.r.path,
                        "_pos": pos,
                    },
                )
        elif seg_id in ("MOA", "MIA") and self.ctx835 == "2100":
            fields_ = (3, 4, 5, 6, 7) if seg_id == "MOA" else (5, 20, 21, 22, 23)
            for n in fields_:
                if v(val, n):
                    self._remark(remit, None, v(val, n), pos, seg_id)
        elif seg_id == "SVC":
            self._service_payment(remit, pos, val)
        elif self.remit_line is None:
            return
        elif seg_id == "LQ" and v(val, 1) == "HE" and v(val, 2):
            self._remark(remit, self.svc_count, v(val, 2), pos, "LQ")
        elif seg_id == "AMT" and v(val, 1) == "B6":
            self.remit_line["allowed_amount"] = money(v(val, 2))
        elif seg_id == "REF" and v(val, 1) == "6R":
            self.remit_line["line_control_number"] = v(val, 2) or None

    def _open_remit(self, pos: int, val: Values) -> None:
        self._close_remit()
        self.clp_seq += 1
        self.svc_count = 0
        self.ctx835 = "2100"
        claim_id = v(val, 1)
        if is_placeholder_claim_id(claim_id):
            self.r.placeholder_clp01 += 1
        self.r.remittances_read += 1
        self.remit = {
            "remit_id": f"{self.stem}:{self.isa13}:{self.st02}:{self.clp_seq}",
            "claim_id": claim_id,
            "payer_claim_number": v(val, 7) or None,
            "status_code": v(val, 2),
            "total_charge": money(v(val, 3)),
            "paid_amount": money(v(val, 4)),
            "patient_responsibility": money(v(val, 5)),
            "claim_filing_indicator": v(val, 6) or None,
            "frequency_code": v(val, 9) or None,
            "patient_member_id": None,
            "insured_member_id": None,
            "corrected_member_id": None,
            "statement_from": None,
            "statement_to": None,
            "received_date": None,
            "coverage_expiration_date": None,
            "_pos": pos,
            "_file": self.r.path,
            "_service_date": None,
        }
        self.remit_buffer.append(self.remit)
        self.pending_claim_ids.append((claim_id, pos))

    def _service_payment(self, remit: Row, pos: int, val: Values) -> None:
        """SVC: a 2110 service line payment; SVC06 is the code as submitted when the payer
        adjudicated another one."""
        self.ctx835 = "2110"
        self.svc_count += 1
        qualifier = v(val, 1, 1)
        code = v(val, 1, 2).upper()
        self.remit_line = {
            "remit_id": remit["remit_id"],
            "claim_id": remit["claim_id"],
            "line_number": self.svc_count,
            "procedure_code": None if qualifier == "NU" or not code else code,
            "line_charge": money(v(val, 2)),
            "paid_amount": money(v(val, 3)),
            "units": number(v(val, 5)),
            "modifier_1": v(val, 1, 3) or None,
            "modifier_2": v(val, 1, 4) or None,
            "modifier_3": v(val, 1, 5) or None,
            "modifier_4": v(val, 1, 6) or None,
            "original_procedure_code": v(val, 6, 2).upper() or None,
            "service_date": None,
            "allowed_amount": None,
            "line_control_number": None,
            "_file": self.r.path,
            "_pos": pos,
        }
        self._emit("remit_lines", self.remit_line)

    def _remark(self, remit: Row, line: int | None, code: str, pos: int, source: str) -> None:
        self._emit(
            "remarks",
            {
                "remit_id": remit["remit_id"],
                "claim_id": remit["claim_id"],
                "line_number": line,
                "rarc": code,
                "source": source,
                "_file": self.r.path,
                "_pos": pos,
            },
        )

    def _close_remit(self) -> None:
        self.remit = None
        self.remit_line = None
        if self.st_kind != "835" or not self.remit_buffer:
            return
        date = self.bpr_date or self.dtm405 or self.gs_date or self.isa_date
        for row in self.remit_buffer:
            row.update(
                remit_date=date,
                payer_id=self.payer_id or self.trn_payer,
                payer_name=self.payer_name,
            )
            self._emit("remittances", row)
        self.remit_buffer = []

    # -- acknowledgements -------------------------------------------------------------------
    def _seg_277(self, pos: int, seg_id: str, val: Values) -> None:
        if seg_id == "TRN" and v(val, 1) == "2":
            self.ack_claim: str | None = v(val, 2)
        elif seg_id == "STC" and getattr(self, "ack_claim", None):
            category = v(val, 1, 1)
            if category in _REJECTED_277:
                self._emit(
                    "rejections",
                    {
                        "claim_id": self.ack_claim,
                        "rejection_date": x12_date(v(val, 2)) or self.gs_date,
                        "source": "277CA",
                        "reason": f"STC {category}:{v(val, 1, 2)} {v(val, 12)}".strip(),
                        "_file": self.r.path,
                        "_pos": pos,
                    },
                )
        elif seg_id == "HL":
            self.ack_claim = None

    def _seg_999(self, pos: int, seg_id: str, val: Values) -> None:
        if seg_id == "AK1":
            self.ack_group = v(val, 2)
        elif seg_id == "AK2":
            self.ack_set = v(val, 2)
        elif seg_id == "IK5" and v(val, 1) in ("R", "M", "W", "X"):
            # A 999 names a transaction set, not a claim: the id says which set was refused.
            self._emit(
                "rejections",
                {
                    "claim_id": f"999:{getattr(self, 'ack_group', '')}:"
                    f"{getattr(self, 'ack_set', '')}",
                    "rejection_date": self.gs_date or self.isa_date,
                    "source": "999",
                    "reason": f"transaction set rejected (IK5 {v(val, 1)} {v(val, 2)})".strip(),
                    "_file": self.r.path,
                    "_pos": pos,
                },
            )
