"""Make a raw X12 file readable by pyx12, or say why it cannot be.

Real 837/835 files differ from the implementation guides in ways that are harmless for the data
but fatal for pyx12: a UTF-8 byte-order mark, indentation and newlines after segment terminators,
newline segment terminators, a missing ISA/GS envelope, or a GS08 version string pyx12 has no map
for (``005010X222A2``, ``005010X223A3``, ``5010``, ``005010X222``). :func:`normalise_text` fixes
what is safely equivalent and writes down every change as a note; anything else becomes a
file-level quarantine reason that tells a billing analyst what to ask the sender for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import groupby

# The implementation guide versions pyx12 ships maps for, by transaction kind.
PYX12_VERSION = {
    "837P": "005010X222A1",
    "837I": "005010X223A2",
    "835": "005010X221A1",
}

# GS08 / ST03 strings that name the same 5010 guide (an errata or a truncated id). The errata
# A2/A3 of 837P/837I changed code lists and situational notes, not segment layout, so pyx12's
# A1/A2 map reads them correctly.
_EQUIVALENT_VERSIONS = {
    "005010X222A1": "837P",
    "005010X222A2": "837P",
    "005010X222": "837P",
    "005010X223A2": "837I",
    "005010X223A1": "837I",
    "005010X223A3": "837I",
    "005010X223": "837I",
    "005010X221A1": "835",
    "005010X221": "835",
}

_ACK_VERSIONS = {"005010X231A1": "999", "005010X231": "999", "005010X214": "277CA"}

_ISA_WIDTHS = (3, 2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)

_CANDIDATE_TERMINATORS = "~'!\x1c\x1d"
_CANDIDATE_REPETITION = "^{}\\"


@dataclass
class NormalisedFile:
    """The outcome of :func:`normalise_text` for one file.

    Attributes
    ----------
    text
        X12 text pyx12 can read (``None`` when the file is quarantined).
    kinds
        Transaction kinds found, in order (``837P``, ``837I``, ``835``, ``999``, ``277CA``).
    versions_seen
        The GS08 (or ST03) strings as found in the file, before any rewrite.
    notes
        Every normalisation applied, in words.
    reason
        Why the whole file cannot be read; ``None`` when it can.
    damaged
        Segments whose over-long elements were emptied (so that pyx12 reads on), by position:
        what was wrong, in words. The claim or remittance holding one is quarantined.
    """

    text: str | None
    kinds: list[str] = field(default_factory=list)
    versions_seen: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reason: str | None = None
    damaged: dict[int, str] = field(default_factory=dict)


def decode_bytes(raw: bytes, notes: list[str]) -> str:
    """Decode a file's bytes: UTF-16 (with or without BOM, either byte order), UTF-8 with BOM,
    UTF-8, Latin-1. Never raises: what UTF-16 cannot decode (a file cut at an odd byte, junk
    in it) becomes U+FFFD, and a note says how much."""
    # Without a BOM: X12 text is ASCII, so UTF-16 has a NUL in every other byte (most of them
    # where junk damaged the start: issue 20's fuzzing, seed 5705); no other file has so many.
    head = raw[:400]
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif len(head) > 8 and head[1::2].count(0) > 0.75 * len(head[1::2]) > head[0::2].count(0):
        encoding = "utf-16-le"
    elif len(head) > 8 and head[0::2].count(0) > 0.75 * len(head[0::2]) > head[1::2].count(0):
        encoding = "utf-16-be"
    else:
        encoding = ""
    if encoding:
        notes.append("file is UTF-16 encoded; decoded to text")
        text = raw.decode(encoding, "replace")
        if bad := text.count("\ufffd"):
            notes.append(f"{bad} UTF-16 characters could not be decoded (replaced)")
        return text
    if raw.startswith(b"\xef\xbb\xbf"):
        notes.append("UTF-8 byte-order mark removed")
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        notes.append("file is not UTF-8; decoded as Latin-1")
        return raw.decode("latin-1")


def normalise_text(text: str, name: str) -> NormalisedFile:
    """Normalise decoded X12 text for pyx12; see the module docstring for what is fixed.

    A file refused because its segment terminator is wrong (the consequence shows first: a GS
    segment swallowing the ST after it, a GS08 version ``'005010X222A1~ST'``) is refused with
    that cause instead (:func:`terminator_problem`).

    Parameters
    ----------
    text
        The decoded file content.
    name
        The file name, used in quarantine reasons.
    """
    norm = _normalise(text, name)
    if norm.text is None and (problem := terminator_problem(text)):
        return NormalisedFile(None, notes=norm.notes, reason=f"File {name}: {problem}")
    return norm


# Segment IDs of the 5010 837P/837I/835/999/277CA, for telling where a segment starts when the
# terminator before it is not the one the ISA set. The envelope's segments, CLM and CLP are
# also recognised by their first elements (_STRICT_STARTS), so that one run into the segment
# before it (no terminator at all) is found without mistaking a name ending in "ST" for one.
_SEGMENT_IDS = (
    "AK1|AK2|AMT|BHT|BPR|CAS|CL1|CLM|CLP|CN1|CR1|CR2|CR3|CRC|CTP|CUR|DMG|DTM|DTP|HCP|HI|HL|"
    "IK3|IK4|IK5|K3|LIN|LQ|LX|MEA|MIA|MOA|N1|N3|N4|NM1|NTE|OI|PAT|PER|PLB|PRV|PWK|QTY|RDM|REF|"
    "SBR|STC|SV1|SV2|SV3|SV4|SV5|SV6|SV7|SVC|SVD|TOO|TRN|TS2|TS3|FRM|PS1|MPI|N2|CR4|CR5|CR6|"
    "CR7|CR8|TA1|AK9|IK3|CTX|ENT|HSD|UR|SE|GE|IEA|GS|ST"
)
_KNOWN_IDS = frozenset(_SEGMENT_IDS.split("|"))
_STRICT_STARTS = (
    r"GS{e}(?:HC|HP|FA|HN){e}|ST{e}\d{{3}}{e}|SE{e}\d+{e}|GE{e}\d+{e}|IEA{e}\d+{e}"
    r"|CL[MP]{e}[^{e}]+{e}\d"
)


def terminator_problem(text: str) -> str | None:
    """What is wrong with the segment terminator, when something plainly is; else ``None``.

    The terminator is the character after ISA16. It is wrong when it cannot be one (a letter,
    a digit, a space, the element or sub-element separator: the terminator is missing and the
    ISA runs into the GS), or when a segment after the ISA is preceded by another character,
    or by none (two segments run together). Only the first such place is named. Element values
    are never quoted, only separators and segment IDs.
    """
    body = text.lstrip("\ufeff \t\r\n")
    if not body.startswith("ISA") or len(body) < 4:
        return None
    ele = body[3]
    if ele.isalnum() or ele.isspace():
        return None
    isa_end = _isa_end(body, ele)
    if isa_end is None:
        return None
    term, sub = body[isa_end], body[isa_end - 1]
    if term.isalnum() or term in (" ", "\t", ele, sub):
        return (
            "segment terminator expected after the ISA segment (the character after ISA16), "
            f"found {term!r}: the segment after the ISA runs into it; ask the sender to "
            "re-export the file with a segment terminator after every segment"
        )
    newline = term in "\r\n"
    e = re.escape(ele)
    strict = re.compile(_STRICT_STARTS.format(e=e))
    starts = re.compile(rf"(?:{_SEGMENT_IDS}){e}")
    segment = 1  # the ISA
    for match in starts.finditer(body, isa_end + 1):
        j = match.start() - 1
        while j > isa_end and body[j] in " \t\r\n":
            j -= 1
        gap = body[j + 1 : match.start()]
        before = body[j]
        broken = "\n" in gap or "\r" in gap
        if broken if newline else before == term:
            segment += 1
            continue
        glued = before.isalnum() and not gap
        if before in (ele, sub) or (glued and not strict.match(body, match.start())):
            continue  # an element value, not a segment start
        found = "none" if glued else "a line break" if broken else repr(before)
        expected = "(a line break)" if newline else repr(term)
        return (
            f"segment terminator {expected} expected after each segment (the ISA sets it after "
            f"ISA16), found {found} before segment {segment + 1} "
            f"({match.group(0).split(ele, 1)[0]}); ask the sender to re-export the file with "
            "one segment terminator throughout"
        )
    return None


def _normalise(text: str, name: str) -> NormalisedFile:
    notes: list[str] = []
    body = text.lstrip("\ufeff \t\r\n")
    if not body:
        return NormalisedFile(None, reason=f"File {name}: the file is empty")
    if not body.startswith("ISA"):
        if body.startswith("ST"):
            wrapped = _wrap_in_envelope(body, name, notes)
            if isinstance(wrapped, NormalisedFile):
                return wrapped
            body = wrapped
        else:
            return NormalisedFile(
                None,
                reason=(
                    f"File {name}: does not start with an ISA segment (starts with "
                    f"{body[:3]!r}); this is not an X12 file, or it is damaged: ask the sender "
                    "to re-export it"
                ),
            )
    if len(body) < 106:
        return NormalisedFile(
            None,
            reason=(
                f"File {name}: the ISA segment is incomplete ({len(body)} characters in all, "
                "an ISA alone has 106): the file is truncated or damaged"
            ),
        )
    ele = body[3]
    isa_end = _isa_end(body, ele)
    if isa_end is None:
        return NormalisedFile(
            None,
            reason=f"File {name}: the ISA segment does not have 16 elements; the file is damaged",
        )
    isa_text, seg_term = body[:isa_end], body[isa_end]
    rest = body[isa_end + 1 :]
    # Segment terminator: a newline terminator (possibly CRLF) becomes '~' so that pyx12 never
    # sees line-end characters inside a segment.
    if seg_term in "\r\n":
        new_term = next((c for c in _CANDIDATE_TERMINATORS if c not in body), None)
        if new_term is None:
            return NormalisedFile(
                None, reason=f"File {name}: cannot find a safe segment terminator"
            )
        notes.append(f"newline segment terminator replaced by {new_term!r}")
        segments = [s.strip() for s in re.split(r"[\r\n]+", rest)]
        seg_term = new_term
    else:
        segments = [s.strip(" \t\r\n") for s in rest.split(seg_term)]
    segments = [s for s in segments if s]
    isa = isa_text.split(ele)
    if len(isa) != 17:
        return NormalisedFile(
            None, reason=f"File {name}: the ISA segment does not have 16 elements"
        )
    padded = [isa[0]] + [v.strip().ljust(w) for v, w in zip(isa[1:], _ISA_WIDTHS[1:], strict=True)]
    if padded != isa:
        notes.append("ISA elements re-padded to their fixed widths")
    isa = padded
    sub_term = isa[16]

    # Versions: find every GS and ST, decide the kind, rewrite GS08/ST03 to pyx12's map.
    kinds: list[str] = []
    versions_seen: list[str] = []
    gs_index: int | None = None
    gs_kind: str | None = None
    for i, seg in enumerate(segments):
        if not seg.startswith(("GS", "ST")):
            continue  # (splitting every segment of a 50 MB file took seconds)
        elements = seg.split(ele)
        seg_id = elements[0]
        if seg_id == "GS":
            if len(elements) < 9:
                return NormalisedFile(
                    None, reason=f"File {name}: the GS segment at segment {i + 2} is incomplete"
                )
            version = elements[8]
            versions_seen.append(version)
            kind = _kind_of_group(elements[1], version, segments[i + 1 :], ele)
            if kind is None:
                return NormalisedFile(
                    None,
                    kinds=kinds,
                    versions_seen=versions_seen,
                    notes=notes,
                    reason=(
                        f"File {name}: GS08 version {_quoted(version)} (GS01 "
                        f"{_quoted(elements[1])}) is not a "
                        "5010 837P/837I/835 (or a 999/277CA acknowledgement); re-export the file "
                        "as 5010 (005010X222A1 837P, 005010X223A2 837I, 005010X221A1 835)"
                    ),
                )
            gs_index, gs_kind = i, kind
            kinds.append(kind)
            target = PYX12_VERSION.get(kind)
            if target and version != target:
                elements[8] = target
                segments[i] = ele.join(elements)
                notes.append(
                    f"GS08 {version!r} read as {target!r} ({kind}; pyx12 has the {target} map)"
                )
        elif seg_id == "ST" and gs_kind in PYX12_VERSION and len(elements) > 3:
            target = PYX12_VERSION[gs_kind]
            if elements[3] != target:
                notes.append(f"ST03 {elements[3]!r} read as {target!r}")
                elements[3] = target
                segments[i] = ele.join(elements)
    fixed_sub = _composite_separator(segments, ele, sub_term)
    if fixed_sub:
        notes.append(
            f"ISA16 sub-element separator {sub_term!r} read as {fixed_sub!r} (the composites in "
            "the file use it)"
        )
        isa[16] = sub_term = fixed_sub
    if gs_index is None:
        return NormalisedFile(
            None,
            notes=notes,
            reason=f"File {name}: no GS functional group header; the file is damaged",
        )

    # ISA12 must agree with the 5010 groups for pyx12 to pick the 5010 control map, and
    # ISA11 (the repetition separator in 5010) must not clash with another separator.
    if any(k in PYX12_VERSION for k in kinds) and isa[12] != "00501":
        notes.append(f"ISA12 {isa[12]!r} read as '00501' (the groups are 5010)")
        isa[12] = "00501"
    if isa[12] == "00501" and (isa[11] in (ele, sub_term, seg_term) or isa[11].isalnum()):
        all_text = ele.join(isa) + "".join(segments)
        free = next((c for c in _CANDIDATE_REPETITION if c not in all_text), None)
        if free is None:
            return NormalisedFile(
                None, reason=f"File {name}: ISA11 repetition separator clashes with the data"
            )
        notes.append(f"ISA11 repetition separator {isa[11]!r} replaced by {free!r}")
        isa[11] = free
    segments, damaged = _collapse_runs(segments, ele)
    if damaged:
        notes.append(
            f"{len(damaged)} runs of more than {MAX_RUN:,} identical segments read as one segment "
            "each (segment numbers after a run count it once)"
        )
    oversized = _cut_oversized(segments, ele)
    if oversized:
        notes.append(f"{len(oversized)} over-long segments: their longest elements were not read")
        damaged.update(oversized)
    out = ele.join(isa) + seg_term + seg_term.join(segments) + seg_term
    return NormalisedFile(
        out, kinds=kinds, versions_seen=versions_seen, notes=notes, damaged=damaged
    )


def _quoted(value: str, limit: int = 40) -> str:
    """``value`` quoted, cut at ``limit`` characters: a damaged element can be megabytes."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def _segment_id(segment: str, ele: str) -> str:
    """The segment's ID when it is one of the guides' ('?' otherwise: with its separators
    swapped, a file's first elements are values, a name or a member ID)."""
    seg_id = segment.split(ele, 1)[0]
    return seg_id if seg_id in _KNOWN_IDS else "?"


MAX_RUN = 1000
"""Identical segments in a row past which a file is damaged: no 5010 loop repeats one segment
verbatim so often, and pyx12 would spend minutes on a 50 MB run (issue 20)."""


def _collapse_runs(segments: list[str], ele: str) -> tuple[list[str], dict[int, str]]:
    """``segments`` with each run of more than :data:`MAX_RUN` identical segments as one, and
    what was collapsed, by the one's position (the ISA is segment 1), in words."""
    if len(segments) <= MAX_RUN:
        return segments, {}
    out: list[str] = []
    damaged: dict[int, str] = {}
    start = 2
    for segment, run in groupby(segments):
        count = sum(1 for _ in run)
        if count > MAX_RUN:
            out.append(segment)
            seg_id = _segment_id(segment, ele)
            damaged[len(out) + 1] = (
                f"the same {seg_id} segment {count:,} times in a row (segments {start:,} to "
                f"{start + count - 1:,} of the file); the file is damaged"
            )
        else:
            out.extend([segment] * count)
        start += count
    return out, damaged


MAX_SEGMENT = 4096
"""Characters a segment may have before its over-long elements are cut. No 5010 segment of the
837, 835, 999 or 277CA comes near (the longest element holds 264 characters); pyx12 stops
reading a file, without a word, at a segment it cannot find the end of in 8 KB."""
MAX_ELEMENT = 264


def _cut_oversized(segments: list[str], ele: str) -> dict[int, str]:
    """Empty the over-long elements of segments longer than :data:`MAX_SEGMENT` (in place);
    return what was cut, by segment position (the ISA is segment 1), in words without the
    element values."""
    damaged: dict[int, str] = {}
    for i, seg in enumerate(segments):
        if len(seg) <= MAX_SEGMENT:
            continue
        elements = seg.split(ele)
        seg_id = _segment_id(seg, ele)
        longest = max(len(e) for e in elements[1:]) if len(elements) > 1 else len(seg)
        kept = [e if len(e) <= MAX_ELEMENT else "" for e in elements[1:]]
        cut = ele.join([elements[0][:3], *kept])
        segments[i] = cut if len(cut) <= MAX_SEGMENT else elements[0][:3]
        damaged[i + 2] = (
            f"the {seg_id} segment is {len(seg):,} characters long (an element of {longest:,}); "
            f"no 5010 element holds more than {MAX_ELEMENT}"
        )
    return damaged


def _isa_end(body: str, ele: str) -> int | None:
    """Index of the ISA segment terminator (the character after ISA16)."""
    count = 0
    for i, ch in enumerate(body[:200]):
        if ch == ele:
            count += 1
            if count == 16:
                # ISA16 is one character, the terminator follows it.
                return i + 2 if i + 2 < len(body) else None
    return None


def _kind_of_group(gs01: str, version: str, following: list[str], ele: str) -> str | None:
    """The transaction kind of a functional group, or ``None`` when it is not one we read.

    GS08 decides, except that the ST03 of the first transaction set and the content (SV2/CL1 for
    institutional, SV1 for professional) override an 837 GS08 that contradicts them: files in the
    wild say ``005010X222`` in GS08 over an institutional ``005010X223`` transaction.
    """
    if version in _ACK_VERSIONS:
        return _ACK_VERSIONS[version]
    st03 = ""
    content_kind: str | None = None
    for seg in following[:4000]:
        parts = seg.split(ele, 4)
        if parts[0] == "ST" and not st03 and len(parts) > 3:
            st03 = parts[3]
        elif parts[0] in ("SV2", "CL1"):
            content_kind = "837I"
            break
        elif parts[0] == "SV1":
            content_kind = "837P"
            break
        elif parts[0] == "GE":
            break
    if gs01 == "HP" and (version in _EQUIVALENT_VERSIONS or version in ("5010", "005010")):
        return "835" if _EQUIVALENT_VERSIONS.get(version, "835") == "835" else None
    if gs01 == "HC":
        kind = _EQUIVALENT_VERSIONS.get(version)
        if version in ("5010", "005010"):
            kind = _EQUIVALENT_VERSIONS.get(st03) or content_kind
        st_kind = _EQUIVALENT_VERSIONS.get(st03)
        if kind and st_kind and st_kind != kind and content_kind == st_kind:
            kind = st_kind
        if kind in ("837P", "837I"):
            return kind
    return None


def _wrap_in_envelope(body: str, name: str, notes: list[str]) -> str | NormalisedFile:
    """Wrap one complete 835/837 transaction set that has no ISA/GS in a synthetic envelope.

    Safe only when the set is complete (ST ... SE with matching control numbers) and its kind is
    clear; the version is then assumed to be the 5010 guide for that kind.
    """
    ele = body[2]
    match = re.match(rf"ST{re.escape(ele)}(835|837){re.escape(ele)}([^{re.escape(ele)}]+?)", body)
    if not match:
        return NormalisedFile(
            None, reason=f"File {name}: no ISA/GS envelope and the ST segment is not 835/837"
        )
    st_end = re.search(r"[~'\r\n]", body)
    if st_end is None:
        return NormalisedFile(None, reason=f"File {name}: no segment terminator found")
    seg_term = st_end.group(0)
    segments = [s.strip() for s in re.split(re.escape(seg_term) + r"|[\r\n]+", body) if s.strip()]
    first = segments[0].split(ele)
    last = segments[-1].split(ele)
    if last[0] != "SE" or len(last) < 3 or last[2] != first[2]:
        return NormalisedFile(
            None,
            reason=(
                f"File {name}: no ISA/GS envelope and the transaction set is incomplete (no SE "
                "matching the ST); ask the sender for the complete file"
            ),
        )
    if sum(1 for s in segments if s.startswith("ST" + ele)) != 1:
        return NormalisedFile(
            None, reason=f"File {name}: no ISA/GS envelope around several transaction sets"
        )
    kind = (
        "835"
        if first[1] == "835"
        else ("837I" if _has_any(segments, ele, "SV2", "CL1") else "837P")
    )
    if kind != "835" and len(first) > 3 and first[3] in _EQUIVALENT_VERSIONS:
        kind = _EQUIVALENT_VERSIONS[first[3]]
    version = PYX12_VERSION[kind]
    date = _first_date(segments, ele) or "20000101"
    sub = ":"
    for seg in segments:
        m = re.match(
            rf"(?:SVC|SV1|SV2){re.escape(ele)}(?:[0-9]{{4}}{re.escape(ele)})?[A-Z]{{2}}(\W)", seg
        )
        if m:
            sub = m.group(1)
            break
    term = "~" if "~" not in body or seg_term == "~" else seg_term
    gs01 = "HP" if kind == "835" else "HC"
    isa = ele.join(
        [
            "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "UNKNOWN".ljust(15), "ZZ",
            "UNKNOWN".ljust(15), date[2:8], "0000", "^", "00501", "000000001", "0", "P", sub,
        ]
    )  # fmt: skip
    gs = ele.join(["GS", gs01, "UNKNOWN", "UNKNOWN", date, "0000", "1", "X", version])
    notes.append(
        f"no ISA/GS envelope: wrapped in a synthetic 5010 envelope (version {version} assumed)"
    )
    return term.join([isa, gs, *segments, f"GE{ele}1{ele}1", f"IEA{ele}1{ele}000000001"]) + term


def _has_any(segments: list[str], ele: str, *seg_ids: str) -> bool:
    return any(s.split(ele, 1)[0] in seg_ids for s in segments)


def _first_date(segments: list[str], ele: str) -> str | None:
    for seg in segments:
        parts = seg.split(ele)
        if parts[0] == "BPR" and len(parts) > 16 and re.fullmatch(r"\d{8}", parts[16]):
            return parts[16]
        if parts[0] in ("BHT", "DTM") and len(parts) > 2:
            cand = parts[4] if parts[0] == "BHT" and len(parts) > 4 else parts[2]
            if re.fullmatch(r"\d{8}", cand):
                return cand
    return None


_COMPOSITE_PROBE = re.compile(r"^(?:[A-Z]{2}|\d{2})([^\w\s])")


def _composite_separator(segments: list[str], ele: str, declared: str) -> str | None:
    """A different sub-element separator when the data plainly uses one other than ISA16.

    Looks at composites whose first component is a 2-character qualifier or code (CLM05,
    SV101, SV202, SVC01, HI): if none uses the declared separator and they all use the same
    other punctuation character, that character is the real separator.
    """
    seen: set[str] = set()
    for seg in segments[:2000]:
        parts = seg.split(ele)
        seg_id = parts[0]
        if seg_id == "CLM" and len(parts) > 5:
            probes = [parts[5]]
        elif seg_id in ("SV1", "SVC", "HI") and len(parts) > 1:
            probes = [parts[1]]
        elif seg_id == "SV2" and len(parts) > 2:
            probes = [parts[2]]
        else:
            continue
        for probe in probes:
            if declared in probe:
                return None
            match = _COMPOSITE_PROBE.match(probe)
            if match:
                seen.add(match.group(1))
    if len(seen) == 1:
        found = seen.pop()
        return found if found not in (ele, declared) else None
    return None
