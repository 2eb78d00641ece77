"""Write a ClaimsDataset as 5010 837P (005010X222A1) and 835 (005010X221A1) files.

Built by string formatting (pyx12 is only used to check the output, in the tests), so a
100,000-claim data set writes in seconds. The reader (:func:`features.x12.ingest.ingest_paths`)
reads these files back into the same claims, lines, diagnoses, remittances, remit lines,
adjustments and remarks (``remit_id`` is regenerated from the file, being a surrogate key).

Every contract column a row holds is written where the guide puts it, and only when it holds a
value. Segments and elements the guide requires get a documented default when the contract's
value is empty:

- 2000B SBR01 ``P``; SBR09 ``ZZ``; 2320 SBR01 ``S`` (``P`` when the claim's payer is not the
  primary one), SBR02 ``18``, SBR09 ``ZZ``; 2330B NM109 ``OTHERPAYER`` (read back as no ID,
  :mod:`features.x12.placeholders`); DMG03 ``U``;
  SV103 ``UN``; CTP04 the line's units and CTP05 ``UN`` when an NDC has no quantity or unit;
  CLP06 the claim's filing indicator, else ``ZZ``; CLP09 the claim's frequency code, else ``1``;
  835 NM1*QC NM109 the claim's member ID; REF*6R the line number; CLP07 the claim id.
- Names and addresses are synthetic: the contract holds no names, and nothing identifying is
  invented. The patient is named ``PATIENT`` with a first name derived from ``patient_key``
  alone, so every claim of one key carries one name. Reading the files back hashes that name
  with the birth date and sex into a *new* key (the key itself changes through the hash);
  claims that shared a key (and a birth date and sex) still share one. A patient without a
  key is named ``PATIENT A``, which the reader reads as no key.
- Addresses are ``ANYTOWN`` with the contract's state (N4-02) when it has one, else no state.
- A claim has one address per person in X12: without a patient loop (relationship ``18`` or
  empty) the subscriber's N4 carries ``subscriber_state`` (else ``patient_state``), which reads
  back as both; the taxonomy in ``provider_taxonomy`` is written as the rendering provider's
  PRV when there is no ``rendering_taxonomy`` and it differs from ``billing_taxonomy``.
- Text longer than the guide allows is cut: notes (NTE02) at 80 characters, one claim note
  (the 837P allows one); a claim note read from several 837I NTEs is written as one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from pathlib import Path
from typing import Any

import pandas as pd

from features.atomic import write_text
from features.schema import ClaimsDataset
from features.x12.placeholders import UNKNOWN_OTHER_PAYER, UNNAMED_PATIENT

ELE, SUB, SEG, REP = "*", ":", "~", "^"
_CLP06_CODES = {
    "12", "13", "14", "15", "16", "17", "AM", "CH", "DS", "HM", "LM", "MA", "MB", "MC", "OF",
    "TV", "VA", "WC", "ZZ",
}  # fmt: skip
_PAYEE_NPI = "1234567893"  # synthetic NPI (valid check digit), no real provider
_NOTE_LENGTH = 80  # NTE02
_SELF = "18"  # SBR02 / PAT01: the patient is the subscriber
# PWK02 transmission codes that need an attachment control number (PWK05 AC, PWK06).
_SENT_SEPARATELY = {"BM", "EL", "EM", "FX", "FT"}
_CMN = "CT"  # 2400 PWK*CT, the DME certificate indicator: its own segment, after the others


def _amount(value: Any) -> str:
    """Dollars as X12 decimal: exact cents, no trailing zeros (``125``, ``99.5``, ``-12.34``)."""
    d = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    text = f"{d:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _quantity(value: Any) -> str:
    d = Decimal(str(float(value))).normalize()
    text = f"{d:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _d8(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y%m%d")


def _clean(value: Any) -> str:
    """Text safe inside an element: separators replaced by spaces, trimmed; '' for missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value)
    for ch in (ELE, SUB, SEG, REP, "\n", "\r"):
        text = text.replace(ch, " ")
    return text.strip()


def _text(value: Any) -> str:
    """A value as text, '' for missing (unlike :func:`_clean`, separators kept)."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _present(value: Any) -> bool:
    return _clean(value) != ""


def _seg(*elements: Any) -> str:
    items = [str(e) for e in elements]
    while items and items[-1] == "":
        items.pop()
    return ELE.join(items) + SEG


class _Envelope:
    """ISA/GS/ST framing with correct control numbers and counts."""

    def __init__(self, gs01: str, version: str, st01: str, control: int, when: datetime) -> None:
        self.gs01, self.version, self.st01 = gs01, version, st01
        self.control = control
        self.when = when

    def open(self) -> list[str]:
        date6, date8, time4 = (
            self.when.strftime("%y%m%d"),
            self.when.strftime("%Y%m%d"),
            self.when.strftime("%H%M"),
        )
        isa = ELE.join(
            [
                "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "DENIALRISK".ljust(15), "ZZ",
                "RECEIVER".ljust(15), date6, time4, REP, "00501", f"{self.control:09d}", "0", "P",
                SUB,
            ]
        )  # fmt: skip
        st03 = self.version if self.st01 == "837" else ""
        return [
            isa + SEG,
            _seg("GS", self.gs01, "DENIALRISK", "RECEIVER", date8, time4, self.control, "X",
                 self.version),
            _seg("ST", self.st01, "0001", st03),
        ]  # fmt: skip

    def close(self, body_segments: int) -> list[str]:
        # SE01 counts ST through SE inclusive.
        return [
            _seg("SE", body_segments + 2, "0001"),
            _seg("GE", 1, self.control),
            _seg("IEA", 1, f"{self.control:09d}"),
        ]


def _chunks(rows: list[dict[Any, Any]], size: int) -> Iterator[list[dict[Any, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _batches_by_send_date(claims: pd.DataFrame, size: int) -> Iterator[list[dict[Any, Any]]]:
    """Claims (as records) in send-date batches: an 837 is one send, and BHT04 carries its date.

    The frame is turned into records once: per batch, pandas' ``to_dict`` costs about half a
    millisecond per column, which made writing a day's few claims slow.
    """
    ordered = claims.sort_values(["submission_date", "claim_id"], kind="stable")
    records = [r for r in ordered.to_dict("records") if not pd.isna(r["submission_date"])]
    for _, day in groupby(records, key=lambda record: record["submission_date"]):
        yield from _chunks(list(day), size)


def write_837p(
    dataset: ClaimsDataset,
    out_dir: Path,
    claims_per_file: int = 5000,
    when: datetime | None = None,
    faithful_defects: bool = False,
) -> list[Path]:
    """Write the professional claims as 837P files; return the paths written.

    Each file holds one interchange with one transaction set of up to ``claims_per_file``
    claims; claims are grouped under their billing provider. Institutional claims are skipped
    (there is no 837I writer yet).

    A service line without a diagnosis pointer cannot be valid 5010 (SV107 is required): by
    default it is written pointing at diagnosis 1. With ``faithful_defects=True`` it is written
    without SV107, exactly as the defective claim was, and pyx12 will flag that line.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    when = when or datetime(2000, 1, 1)
    claims = dataset.claims[dataset.claims["claim_type"] == "professional"]
    lines = _records_by(dataset.lines.sort_values(["claim_id", "line_number"]), "claim_id")
    dx = _records_by(dataset.diagnoses.sort_values(["claim_id", "position"]), "claim_id")
    paths: list[Path] = []
    for n, chunk in enumerate(_batches_by_send_date(claims, claims_per_file), start=1):
        env = _Envelope("HC", "005010X222A1", "837", n, when)
        body = _header_837(chunk, when, n)
        hl = 0
        groups: dict[tuple[str, str, str], list[dict[Any, Any]]] = {}
        for claim in chunk:
            billing_prv, claim["_rendering_prv"] = _taxonomies(claim)
            key = (_clean(claim["billing_npi"]), billing_prv, _clean(claim.get("billing_state")))
            groups.setdefault(key, []).append(claim)
        for (npi, taxonomy, state), group in groups.items():
            hl += 1
            parent = hl
            body.append(_seg("HL", hl, "", "20", "1"))
            if taxonomy:
                body.append(_seg("PRV", "BI", "PXC", taxonomy))
            body.append(_seg("NM1", "85", "2", "BILLING PROVIDER", "", "", "", "",
                             "XX" if npi else "", npi))  # fmt: skip
            body.append(_seg("N3", "100 MAIN STREET"))
            body.append(_address(state, "100010001"))
            body.append(_seg("REF", "EI", "999999999"))
            for claim in group:
                hl += 1
                subscriber_hl = hl
                dependent = _clean(claim.get("patient_relationship")) not in ("", _SELF)
                body.append(_seg("HL", hl, parent, "22", "1" if dependent else "0"))
                body.extend(_subscriber_837(claim, dependent))
                if dependent:
                    hl += 1
                    body.append(_seg("HL", hl, subscriber_hl, "23", "0"))
                    body.extend(_patient_837(claim))
                cid = claim["claim_id"]
                body.extend(_claim_837(claim, lines.get(cid, []), dx.get(cid, []),
                                       faithful_defects))  # fmt: skip
        path = write_text(
            out_dir / f"claims_{n:05d}.837",
            "".join(env.open() + body + env.close(len(body))),
            encoding="ascii",
        )
        paths.append(path)
    return paths


def _records_by(frame: pd.DataFrame, key: str) -> dict[Any, list[dict[Any, Any]]]:
    """Rows as dicts grouped by ``key`` (plain Python: fast to format, keeps row order)."""
    grouped: dict[Any, list[dict[Any, Any]]] = {}
    for row in frame.to_dict("records"):
        grouped.setdefault(row[key], []).append(row)
    return grouped


def _header_837(chunk: list[dict[Any, Any]], when: datetime, n: int) -> list[str]:
    bht_date = _d8(chunk[0]["submission_date"]) if chunk else when.strftime("%Y%m%d")
    return [
        _seg("BHT", "0019", "00", f"B{n:08d}", bht_date, "1200", "CH"),
        _seg("NM1", "41", "2", "DENIAL RISK SUBMITTER", "", "", "", "", "46", "SUBMITTER1"),
        _seg("PER", "IC", "BILLING OFFICE", "TE", "8005550100"),
        _seg("NM1", "40", "2", "RECEIVER", "", "", "", "", "46", "RECEIVER1"),
    ]


def _taxonomies(claim: dict[Any, Any]) -> tuple[str, str]:
    """The billing (2000A PRV*BI) and rendering (2310B PRV*PE) taxonomies to write.

    ``provider_taxonomy`` is the rendering provider's taxonomy, else the billing provider's; a
    data set without the two separate columns (or with only one) still has it written where
    the reader finds it again.
    """
    billing = _clean(claim.get("billing_taxonomy"))
    rendering = _clean(claim.get("rendering_taxonomy"))
    provider = _clean(claim["provider_taxonomy"])
    if not rendering and provider != billing and _present(claim["rendering_npi"]):
        rendering = provider
    if not billing and not rendering:
        billing = provider
    return billing, rendering


def _address(state: str, postal_code: str) -> str:
    """A synthetic N4: the state only when the contract has one (no invented state)."""
    return _seg("N4", "ANYTOWN", state, postal_code) if state else _seg("N4", "ANYTOWN")


def _patient_name(claim: dict[Any, Any]) -> tuple[str, str]:
    """A synthetic name depending only on ``patient_key``: one name per key, none shared.

    The first name is a hash of the key, not the key: keys that differ only in case or
    punctuation (which the reader's key normalises away) keep different names, and any key
    fits NM104's 35 characters.
    """
    key = _clean(claim.get("patient_key"))
    if not key:
        return UNNAMED_PATIENT
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest().upper()
    return "PATIENT", "K" + digest


def _demographics(claim: dict[Any, Any]) -> list[str]:
    if not _present(claim["patient_birth_date"]):
        return []
    return [_seg("DMG", "D8", _d8(claim["patient_birth_date"]),
                 _clean(claim["patient_sex"]) or "U")]  # fmt: skip


def _subscriber_837(claim: dict[Any, Any], dependent: bool) -> list[str]:
    """2000B SBR and 2010BA/2010BB: the subscriber (the patient too, unless ``dependent``)."""
    relationship = _SELF if _clean(claim.get("patient_relationship")) == _SELF else ""
    sbr09 = _clean(claim["claim_filing_indicator"]) or "ZZ"
    last, first = ("SUBSCRIBER", "A") if dependent else _patient_name(claim)
    state = _clean(claim.get("subscriber_state"))
    if not dependent:
        state = state or _clean(claim.get("patient_state"))
    out = [
        _seg("SBR", _clean(claim.get("payer_responsibility")) or "P", relationship,
             _clean(claim.get("subscriber_group_number")), "", "", "", "", "", sbr09),
        _seg("NM1", "IL", "1", last, first, "", "", "", "MI", _clean(claim["patient_id"])),
        _seg("N3", "1 PLACEHOLDER ROAD"),
        _address(state, "10001"),
    ]  # fmt: skip
    if not dependent:
        out.extend(_demographics(claim))
    out.append(_seg("NM1", "PR", "2", _clean(claim["payer_name"]) or "PAYER", "", "", "", "",
                    "PI", _clean(claim["payer_id"])))  # fmt: skip
    return out


def _patient_837(claim: dict[Any, Any]) -> list[str]:
    """2000C PAT and 2010CA: a patient other than the subscriber (DMG needs a birth date)."""
    last, first = _patient_name(claim)
    return [
        _seg("PAT", _clean(claim.get("patient_relationship"))),
        _seg("NM1", "QC", "1", last, first),
        _seg("N3", "1 PLACEHOLDER ROAD"),
        _address(_clean(claim.get("patient_state")), "10001"),
        *_demographics(claim),
    ]


def _codes(value: Any) -> list[str]:
    """A comma-joined contract list (``"AA,EM"``) as its codes; empty entries kept in place."""
    text = _clean(value)
    return [code.strip() for code in text.split(",")] if text else []


def _attachments(claim_id: str, types: Any, sent: Any) -> list[str]:
    """PWK segments for aligned lists of report types and transmission codes (a missing
    transmission code reads ``AA``, available on request); the DME certificate goes last."""
    kinds, hows = _codes(types), _codes(sent)
    pairs = [(kind, hows[i] if i < len(hows) and hows[i] else "AA")
             for i, kind in enumerate(kinds) if kind]  # fmt: skip
    pairs.sort(key=lambda pair: pair[0] == _CMN)
    out = []
    for i, (kind, how) in enumerate(pairs, start=1):
        control = f"{claim_id}A{i}"[:50] if how in _SENT_SEPARATELY else ""
        out.append(_seg("PWK", kind, how, "", "", "AC" if control else "", control))
    return out


def _note(value: Any) -> list[str]:
    text = _clean(value)
    return [_seg("NTE", "ADD", text[:_NOTE_LENGTH].strip())] if text else []


def _dates(row: dict[Any, Any], qualifiers: list[tuple[str, str]]) -> list[str]:
    return [_seg("DTP", qualifier, "D8", _d8(row[column]))
            for qualifier, column in qualifiers if _present(row.get(column))]  # fmt: skip


def _references(row: dict[Any, Any], qualifiers: list[tuple[str, str]]) -> list[str]:
    return [_seg("REF", qualifier, _clean(row[column]))
            for qualifier, column in qualifiers if _present(row.get(column))]  # fmt: skip


def _related_causes(claim: dict[Any, Any]) -> str:
    """CLM11: up to three related-cause codes and the auto accident's state (the state alone,
    without a cause, has no place in the composite and is not written)."""
    causes = [code for code in _codes(claim.get("related_causes")) if code][:3]
    if not causes:
        return ""
    parts = [*causes, "", "", ""][:3] + [_clean(claim.get("auto_accident_state"))]
    return SUB.join(parts).rstrip(SUB)


def _epsdt(claim: dict[Any, Any]) -> list[str]:
    """CRC*ZZ: the EPSDT referral indicator; CRC03 says which referral (ST new services
    requested) or, with N, NU (not used)."""
    flag = _clean(claim.get("epsdt_indicator"))
    if not flag:
        return []
    return [_seg("CRC", "ZZ", flag, "ST" if flag == "Y" else "NU")]


def _claim_837(
    claim: dict[Any, Any],
    lines: list[dict[Any, Any]],
    dx: list[dict[Any, Any]],
    faithful_defects: bool,
) -> list[str]:
    out: list[str] = []
    cid = _clean(claim["claim_id"])
    pos = _clean(claim["place_of_service"]) or "11"
    clm = (
        [
            "CLM",
            cid,
            _amount(claim["total_charge"]),
            "",
            "",
            SUB.join([pos, "B", _clean(claim["frequency_code"])]),
            "Y",
            "A",
            "Y",
            "Y",
            "",
            _related_causes(claim),
        ]
        + [""] * 8
        + [_clean(claim.get("delay_reason_code"))]
    )
    out.append(_seg(*clm))  # fmt: skip
    # 2300 in guide order: DTP (431, 454, 439), PWK, REF (9F, G1, F8, X4), NTE, CRC, HI.
    out.extend(_dates(claim, [("431", "onset_date"), ("454", "initial_treatment_date"),
                              ("439", "accident_date")]))  # fmt: skip
    out.extend(_attachments(cid, claim.get("attachment_types"),
                            claim.get("attachment_transmission")))  # fmt: skip
    out.extend(_references(claim, [("9F", "referral_number"), ("G1", "prior_auth_number"),
                                   ("F8", "original_payer_claim_number"),
                                   ("X4", "clia_number")]))  # fmt: skip
    out.extend(_note(claim.get("claim_note")))
    out.extend(_epsdt(claim))
    if dx:
        codes = [_clean(d["code"]) for d in dx][:12]
        out.append(_seg("HI", *[SUB.join(["ABK" if i == 0 else "ABF", c])
                                for i, c in enumerate(codes)]))  # fmt: skip
    out.extend(_providers_837(claim))
    if bool(claim["has_other_coverage"]) or _present(claim.get("other_payer_id")):
        out.extend(_other_payer_837(claim))
    for i, line in enumerate(lines, start=1):
        out.extend(_line_837(cid, i, line, faithful_defects))
    return out


def _providers_837(claim: dict[Any, Any]) -> list[str]:
    """2310A referring, 2310B rendering (with its PRV), 2310C service facility."""
    out: list[str] = []
    if _present(claim["referring_npi"]):
        out.append(_seg("NM1", "DN", "1", "REFERRING", "A", "", "", "", "XX",
                        _clean(claim["referring_npi"])))  # fmt: skip
    rendering, taxonomy = _clean(claim["rendering_npi"]), claim.get("_rendering_prv", "")
    if rendering or taxonomy:
        out.append(_seg("NM1", "82", "1", "RENDERING", "A", "", "", "",
                        "XX" if rendering else "", rendering))  # fmt: skip
        if taxonomy:
            out.append(_seg("PRV", "PE", "PXC", taxonomy))
    facility, state = (
        _clean(claim.get("service_facility_npi")),
        _clean(claim.get("service_facility_state")),
    )
    if facility or state:
        out.append(_seg("NM1", "77", "2", "SERVICE FACILITY", "", "", "", "",
                        "XX" if facility else "", facility))  # fmt: skip
        out.append(_seg("N3", "1 FACILITY DRIVE"))
        out.append(_address(state, "10001"))
    return out


def _other_payer_837(claim: dict[Any, Any]) -> list[str]:
    """One 2320/2330A/2330B loop: the other payer's responsibility, filing indicator, paid
    amount (AMT*D, the sum over every other payer when several were read) and its
    adjudication date (2330B DTP*573)."""
    primary = (_clean(claim.get("payer_responsibility")) or "P") == "P"
    out = [
        _seg("SBR", _clean(claim.get("other_payer_responsibility")) or ("S" if primary else "P"),
             _SELF, "", "", "", "", "", "",
             _clean(claim.get("other_payer_filing_indicator")) or "ZZ"),
    ]  # fmt: skip
    if _present(claim.get("other_payer_paid_amount")):
        out.append(_seg("AMT", "D", _amount(claim["other_payer_paid_amount"])))
    out.append(_seg("OI", "", "", "Y", "", "", "Y"))
    out.append(_seg("NM1", "IL", "1", "PATIENT", "A", "", "", "", "MI", "OTHERCOVERAGE"))
    out.append(_seg("NM1", "PR", "2", "OTHER PAYER", "", "", "", "", "PI",
                    _clean(claim.get("other_payer_id")) or UNKNOWN_OTHER_PAYER))  # fmt: skip
    out.extend(_dates(claim, [("573", "other_payer_adjudication_date")]))
    return out


def _line_837(
    claim_id: str, number: int, line: dict[Any, Any], faithful_defects: bool
) -> list[str]:
    """2400 in guide order: LX, SV1, PWK, DTP*472, REF (G1, X4, 9F), NTE, 2410 LIN/CTP,
    2420A rendering, 2420F referring."""
    mods = [_clean(line[f"modifier_{k}"]) for k in range(1, 5)]
    while mods and not mods[-1]:
        mods.pop()
    proc = SUB.join(["HC", _clean(line["procedure_code"]), *mods])
    pointers = _pointers(line["diagnosis_pointers"]) or ([] if faithful_defects else ["1"])
    out = [
        _seg("LX", number),
        _seg("SV1", proc, _amount(line["line_charge"]), _clean(line.get("unit_basis")) or "UN",
             _quantity(line["units"]), _clean(line.get("line_place_of_service")), "",
             SUB.join(pointers)),
        *_attachments(f"{claim_id}L{number}", line.get("line_attachment_types"),
                      line.get("line_attachment_transmission")),
        _seg("DTP", "472", "D8", _d8(line["service_date"])),
        *_references(line, [("G1", "line_prior_auth_number"), ("X4", "line_clia_number"),
                            ("9F", "line_referral_number")]),
        *_note(line.get("line_note")),
    ]  # fmt: skip
    ndc = _clean(line.get("ndc_code"))
    if ndc:
        quantity = line.get("ndc_quantity")
        quantity = quantity if _present(quantity) else line["units"]
        out.append(_seg("LIN", "", "N4", ndc))
        out.append(_seg("CTP", "", "", "", _quantity(quantity),
                        _clean(line.get("ndc_unit")) or "UN"))  # fmt: skip
    for entity, column, name in (("82", "line_rendering_npi", "RENDERING"),
                                 ("DN", "line_referring_npi", "REFERRING")):  # fmt: skip
        if _present(line.get(column)):
            out.append(_seg("NM1", entity, "1", name, "A", "", "", "", "XX",
                            _clean(line[column])))  # fmt: skip
    return out


def _pointers(value: Any) -> list[str]:
    """Diagnosis pointers ``"1,2"`` (or ``"1:2"``) as SV107 components, at most four."""
    if not _present(value):
        return []
    return [p.strip() for p in str(value).replace(":", ",").split(",") if p.strip()][:4]


def write_835(
    dataset: ClaimsDataset,
    out_dir: Path,
    claims_per_file: int = 5000,
) -> list[Path]:
    """Write the remittances as 835 files, one transaction set per payer and remit date.

    A file holds up to ``claims_per_file`` claim payments of one payer and date (a payer's
    check run); larger runs split over several files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remits = dataset.remittances
    claims = {c["claim_id"]: c for c in dataset.claims.to_dict("records")}
    by_remit = {
        name: _records_by(getattr(dataset, name), "remit_id")
        for name in ("remit_lines", "adjustments", "remarks")
    }
    paths: list[Path] = []
    n = 0
    runs: dict[tuple[str, pd.Timestamp], list[dict[Any, Any]]] = {}
    for remit in remits.to_dict("records"):
        if pd.isna(remit["remit_date"]):
            continue
        payer = f"{_text(remit['payer_id'])}\x00{_text(remit['payer_name'])}"
        runs.setdefault((payer, pd.Timestamp(remit["remit_date"])), []).append(remit)
    for (_, date), run in sorted(runs.items(), key=lambda item: item[0]):
        for chunk in _chunks(run, claims_per_file):
            n += 1
            env = _Envelope("HP", "005010X221A1", "835", n, date.to_pydatetime())
            body = _header_835(chunk, date, n)
            for remit in chunk:
                body.extend(_claim_835(remit, claims.get(remit["claim_id"]), by_remit))
            path = write_text(
                out_dir / f"remit_{n:05d}.835",
                "".join(env.open() + body + env.close(len(body))),
                encoding="ascii",
            )
            paths.append(path)
    return paths


def _header_835(chunk: list[dict[Any, Any]], date: Any, n: int) -> list[str]:
    first = chunk[0]
    total = sum(Decimal(str(remit["paid_amount"])) for remit in chunk)
    d8 = _d8(date)
    if total > 0:
        bpr = _seg("BPR", "I", _amount(total), "C", "CHK", "", "", "", "", "", "", "", "", "",
                   "", "", d8)  # fmt: skip
    else:
        bpr = _seg("BPR", "H", _amount(max(total, Decimal(0))), "C", "NON", "", "", "", "", "",
                   "", "", "", "", "", "", d8)  # fmt: skip
    out = [
        bpr,
        _seg("TRN", "1", f"CHK{n:09d}", "1999999999"),
        _seg("DTM", "405", d8),
        _seg("N1", "PR", _clean(first["payer_name"]) or "PAYER"),
        _seg("N3", "1 PAYER PLAZA"),
        _seg("N4", "ANYTOWN", "NY", "10001"),
    ]
    if _present(first["payer_id"]):
        out.append(_seg("REF", "2U", _clean(first["payer_id"])))
    out.append(_seg("PER", "BL", "PROVIDER SERVICES", "TE", "8005550100"))
    out.append(_seg("N1", "PE", "PAYEE", "XX", _PAYEE_NPI))
    out.append(_seg("LX", "1"))
    return out


def _cas(adjustments: list[dict[Any, Any]]) -> list[str]:
    """CAS segments: one per group code, up to six (CARC, amount, quantity) triplets each."""
    by_group: dict[str, list[dict[Any, Any]]] = {}
    for adj in adjustments:
        by_group.setdefault(str(adj["group_code"]), []).append(adj)
    out: list[str] = []
    for group_code, rows in by_group.items():
        for start in range(0, len(rows), 6):
            elements: list[str] = ["CAS", group_code]
            for adj in rows[start : start + 6]:
                qty = "" if pd.isna(adj["quantity"]) else _quantity(adj["quantity"])
                elements += [_clean(adj["carc"]), _amount(adj["amount"]), qty]
            out.append(_seg(*elements))
    return out


def _claim_835(
    remit: dict[Any, Any],
    claim: dict[Any, Any] | None,
    by_remit: dict[str, dict[Any, list[dict[Any, Any]]]],
) -> list[str]:
    """2100 in guide order: CLP, CAS, NM1 (QC, IL, 74), MIA/MOA, DTM (232, 233, 036, 050);
    then each 2110: SVC, DTM*472, CAS, REF*6R, AMT*B6, LQ."""
    rid, cid = remit["remit_id"], _clean(remit["claim_id"])

    def echoed(column: str) -> str:
        # The 835 echoes the claim where the remittance row does not say.
        value = _clean(remit.get(column))
        return value or (_clean(claim[column]) if claim is not None else "")

    filing = echoed("claim_filing_indicator")
    clp06 = filing if filing in _CLP06_CODES else "ZZ"
    pcn = _clean(remit["payer_claim_number"]) or cid
    patresp = _amount(remit["patient_responsibility"]) if _present(
        remit["patient_responsibility"]
    ) else ""  # fmt: skip
    out = [
        _seg("CLP", cid, _clean(remit["status_code"]), _amount(remit["total_charge"]),
             _amount(remit["paid_amount"]), patresp, clp06, pcn, "11",
             echoed("frequency_code") or "1"),
    ]  # fmt: skip
    adjustments = by_remit["adjustments"].get(rid, [])
    remarks = by_remit["remarks"].get(rid, [])
    out.extend(_cas([a for a in adjustments if pd.isna(a["line_number"])]))
    member = _clean(remit.get("patient_member_id")) or (
        _clean(claim["patient_id"]) if claim is not None else ""
    )
    out.append(_seg("NM1", "QC", "1", "PATIENT", "A", "", "", "", "MI" if member else "",
                    member))  # fmt: skip
    if _present(remit.get("insured_member_id")):
        out.append(_seg("NM1", "IL", "1", "INSURED", "A", "", "", "", "MI",
                        _clean(remit["insured_member_id"])))  # fmt: skip
    if _present(remit.get("corrected_member_id")):
        out.append(_seg("NM1", "74", "1", "", "", "", "", "", "C",
                        _clean(remit["corrected_member_id"])))  # fmt: skip
    claim_remarks = [r for r in remarks if pd.isna(r["line_number"])]
    inpatient = [_clean(r["rarc"]) for r in claim_remarks if r.get("source") == "MIA"][:5]
    outpatient = [_clean(r["rarc"]) for r in claim_remarks if r.get("source") != "MIA"][:5]
    if inpatient:
        # MIA01 (covered days) is required; MIA05 and MIA20-23 carry the remark codes.
        elements = ["0", "", "", "", inpatient[0], *[""] * 14, *inpatient[1:]]
        out.append(_seg("MIA", *elements))
    if outpatient:
        out.append(_seg("MOA", "", "", *outpatient))
    for qualifier, column in (
        ("232", "statement_from"),
        ("233", "statement_to"),
        ("036", "coverage_expiration_date"),
        ("050", "received_date"),
    ):
        if _present(remit.get(column)):
            out.append(_seg("DTM", qualifier, _d8(remit[column])))  # fmt: skip
    lines = sorted(by_remit["remit_lines"].get(rid, []), key=lambda r: int(r["line_number"]))
    for line in lines:
        out.extend(_service_835(line, adjustments, remarks))
    return out


def _service_835(
    line: dict[Any, Any], adjustments: list[dict[Any, Any]], remarks: list[dict[Any, Any]]
) -> list[str]:
    number = int(line["line_number"])
    code = _clean(line["procedure_code"])
    mods = [_clean(line.get(f"modifier_{k}")) for k in range(1, 5)]
    while mods and not mods[-1]:
        mods.pop()
    svc01 = SUB.join(["HC", code, *mods]) if code else SUB.join(["NU", "0001"])
    units = _quantity(line["units"]) if _present(line["units"]) else ""
    original = _clean(line.get("original_procedure_code"))
    out = [
        _seg("SVC", svc01, _amount(line["line_charge"]), _amount(line["paid_amount"]), "",
             units, SUB.join(["HC", original]) if original else ""),
    ]  # fmt: skip
    if _present(line.get("service_date")):
        out.append(_seg("DTM", "472", _d8(line["service_date"])))
    out.extend(
        _cas([a for a in adjustments if _present(a["line_number"])
              and int(a["line_number"]) == number])
    )  # fmt: skip
    out.append(_seg("REF", "6R", _clean(line.get("line_control_number")) or str(number)))
    if _present(line.get("allowed_amount")):
        out.append(_seg("AMT", "B6", _amount(line["allowed_amount"])))
    for r in remarks:
        if _present(r["line_number"]) and int(r["line_number"]) == number:
            out.append(_seg("LQ", "HE", _clean(r["rarc"])))
    return out
