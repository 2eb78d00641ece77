"""Write a ClaimsDataset as 5010 837P (005010X222A1) and 835 (005010X221A1) files.

Built by string formatting (pyx12 is only used to check the output, in the tests), so a
100,000-claim data set writes in seconds. Names and addresses are synthetic placeholders: the
contract holds no patient names, and nothing else identifying is invented. The reader
(:func:`features.x12.ingest.ingest_paths`) reads these files back into the same claims, lines,
diagnoses, remittances, remit lines, adjustments and remarks (``remit_id`` is regenerated from
the file, being a surrogate key).

Values the contract allows to be empty but the guide requires are filled with a documented
default: SBR09 ``ZZ`` when the claim filing indicator is empty, DMG03 ``U`` when the sex is
empty, CLP07 = the claim id when the payer claim number is empty, CLP06 ``ZZ`` when unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import ClaimsDataset

ELE, SUB, SEG, REP = "*", ":", "~", "^"
_CLP06_CODES = {
    "12", "13", "14", "15", "16", "17", "AM", "CH", "DS", "HM", "LM", "MA", "MB", "MC", "OF",
    "TV", "VA", "WC", "ZZ",
}  # fmt: skip
_PAYEE_NPI = "1234567893"  # synthetic NPI (valid check digit), no real provider


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


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _batches_by_send_date(claims: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """Claims in send-date batches: an 837 is one send, and BHT04 carries its date."""
    ordered = claims.sort_values(["submission_date", "claim_id"], kind="stable")
    for _, day in ordered.groupby("submission_date", sort=True):
        yield from _chunks(day, size)


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
        groups: dict[tuple[str, str], list[dict[Any, Any]]] = {}
        for claim in chunk.to_dict("records"):
            key = (
                _clean(claim["billing_npi"]),
                "" if _present(claim["rendering_npi"]) else _clean(claim["provider_taxonomy"]),
            )
            groups.setdefault(key, []).append(claim)
        for (npi, taxonomy), group in groups.items():
            hl += 1
            parent = hl
            body.append(_seg("HL", hl, "", "20", "1"))
            if taxonomy:
                body.append(_seg("PRV", "BI", "PXC", taxonomy))
            body.append(_seg("NM1", "85", "2", "BILLING PROVIDER", "", "", "", "",
                             "XX" if npi else "", npi))  # fmt: skip
            body.append(_seg("N3", "100 MAIN STREET"))
            body.append(_seg("N4", "ANYTOWN", "NY", "100010001"))
            body.append(_seg("REF", "EI", "999999999"))
            for claim in group:
                hl += 1
                body.append(_seg("HL", hl, parent, "22", "0"))
                cid = claim["claim_id"]
                body.extend(_claim_837(claim, lines.get(cid, []), dx.get(cid, []),
                                       faithful_defects))  # fmt: skip
        path = out_dir / f"claims_{n:05d}.837"
        path.write_text("".join(env.open() + body + env.close(len(body))), encoding="ascii")
        paths.append(path)
    return paths


def _records_by(frame: pd.DataFrame, key: str) -> dict[Any, list[dict[Any, Any]]]:
    """Rows as dicts grouped by ``key`` (plain Python: fast to format, keeps row order)."""
    grouped: dict[Any, list[dict[Any, Any]]] = {}
    for row in frame.to_dict("records"):
        grouped.setdefault(row[key], []).append(row)
    return grouped


def _header_837(chunk: pd.DataFrame, when: datetime, n: int) -> list[str]:
    dates = pd.to_datetime(chunk["submission_date"])
    bht_date = _d8(dates.min()) if len(dates) else when.strftime("%Y%m%d")
    return [
        _seg("BHT", "0019", "00", f"B{n:08d}", bht_date, "1200", "CH"),
        _seg("NM1", "41", "2", "DENIAL RISK SUBMITTER", "", "", "", "", "46", "SUBMITTER1"),
        _seg("PER", "IC", "BILLING OFFICE", "TE", "8005550100"),
        _seg("NM1", "40", "2", "RECEIVER", "", "", "", "", "46", "RECEIVER1"),
    ]


def _claim_837(
    claim: dict[Any, Any],
    lines: list[dict[Any, Any]],
    dx: list[dict[Any, Any]],
    faithful_defects: bool,
) -> list[str]:
    out: list[str] = []
    sbr09 = _clean(claim["claim_filing_indicator"]) or "ZZ"
    out.append(_seg("SBR", "P", "18", "", "", "", "", "", "", sbr09))
    out.append(_seg("NM1", "IL", "1", "PATIENT", "A", "", "", "", "MI",
                    _clean(claim["patient_id"])))  # fmt: skip
    out.append(_seg("N3", "1 PLACEHOLDER ROAD"))
    out.append(_seg("N4", "ANYTOWN", "NY", "10001"))
    if _present(claim["patient_birth_date"]):
        out.append(_seg("DMG", "D8", _d8(claim["patient_birth_date"]),
                        _clean(claim["patient_sex"]) or "U"))  # fmt: skip
    out.append(_seg("NM1", "PR", "2", _clean(claim["payer_name"]) or "PAYER", "", "", "", "",
                    "PI", _clean(claim["payer_id"])))  # fmt: skip
    pos = _clean(claim["place_of_service"]) or "11"
    out.append(_seg("CLM", _clean(claim["claim_id"]), _amount(claim["total_charge"]), "", "",
                    SUB.join([pos, "B", _clean(claim["frequency_code"])]), "Y", "A", "Y",
                    "Y"))  # fmt: skip
    # 2300 REF order in the guide: ... F8 (payer claim control number), 9F (referral),
    # G1 (prior authorization) ...
    if _present(claim["original_payer_claim_number"]):
        out.append(_seg("REF", "F8", _clean(claim["original_payer_claim_number"])))
    if _present(claim["referral_number"]):
        out.append(_seg("REF", "9F", _clean(claim["referral_number"])))
    if _present(claim["prior_auth_number"]):
        out.append(_seg("REF", "G1", _clean(claim["prior_auth_number"])))
    if dx:
        codes = [_clean(d["code"]) for d in dx][:12]
        out.append(_seg("HI", *[SUB.join(["ABK" if i == 0 else "ABF", c])
                                for i, c in enumerate(codes)]))  # fmt: skip
    if _present(claim["referring_npi"]):
        out.append(_seg("NM1", "DN", "1", "REFERRING", "A", "", "", "", "XX",
                        _clean(claim["referring_npi"])))  # fmt: skip
    if _present(claim["rendering_npi"]):
        out.append(_seg("NM1", "82", "1", "RENDERING", "A", "", "", "", "XX",
                        _clean(claim["rendering_npi"])))  # fmt: skip
        if _present(claim["provider_taxonomy"]):
            out.append(_seg("PRV", "PE", "PXC", _clean(claim["provider_taxonomy"])))
    if bool(claim["has_other_coverage"]):
        out.append(_seg("SBR", "S", "18", "", "", "", "", "", "", "CI"))
        out.append(_seg("OI", "", "", "Y", "", "", "Y"))
        out.append(_seg("NM1", "IL", "1", "PATIENT", "A", "", "", "", "MI", "OTHERCOVERAGE"))
        out.append(_seg("N3", "1 PLACEHOLDER ROAD"))
        out.append(_seg("N4", "ANYTOWN", "NY", "10001"))
        out.append(_seg("NM1", "PR", "2", "OTHER PAYER", "", "", "", "", "PI", "OTHERPAYER"))
    if lines:
        for i, line in enumerate(lines, start=1):
            mods = [_clean(line[f"modifier_{k}"]) for k in range(1, 5)]
            while mods and not mods[-1]:
                mods.pop()
            proc = SUB.join(["HC", _clean(line["procedure_code"]), *mods])
            pointers = _pointers(line["diagnosis_pointers"]) or ([] if faithful_defects else ["1"])
            out.append(_seg("LX", i))
            out.append(
                _seg("SV1", proc, _amount(line["line_charge"]), "UN", _quantity(line["units"]),
                     "", "", SUB.join(pointers))
            )  # fmt: skip
            out.append(_seg("DTP", "472", "D8", _d8(line["service_date"])))
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
    payer_key = remits["payer_id"].fillna("") + "\x00" + remits["payer_name"].fillna("")
    for (_, date), group in remits.groupby([payer_key, "remit_date"], sort=True):
        for chunk in _chunks(group, claims_per_file):
            n += 1
            when = pd.Timestamp(date).to_pydatetime()  # type: ignore[arg-type]
            env = _Envelope("HP", "005010X221A1", "835", n, when)
            body = _header_835(chunk, date, n)
            for remit in chunk.to_dict("records"):
                body.extend(_claim_835(remit, claims.get(remit["claim_id"]), by_remit))
            path = out_dir / f"remit_{n:05d}.835"
            path.write_text("".join(env.open() + body + env.close(len(body))), encoding="ascii")
            paths.append(path)
    return paths


def _header_835(chunk: pd.DataFrame, date: Any, n: int) -> list[str]:
    first = chunk.iloc[0]
    total = sum(Decimal(str(p)) for p in chunk["paid_amount"])
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
    rid, cid = remit["remit_id"], _clean(remit["claim_id"])
    filing = _clean(claim["claim_filing_indicator"]) if claim is not None else ""
    clp06 = filing if filing in _CLP06_CODES else "ZZ"
    pcn = _clean(remit["payer_claim_number"]) or cid
    patresp = _amount(remit["patient_responsibility"]) if _present(
        remit["patient_responsibility"]
    ) else ""  # fmt: skip
    out = [
        _seg("CLP", cid, _clean(remit["status_code"]), _amount(remit["total_charge"]),
             _amount(remit["paid_amount"]), patresp, clp06, pcn, "11", "1"),
    ]  # fmt: skip
    adjustments = by_remit["adjustments"].get(rid, [])
    remarks = by_remit["remarks"].get(rid, [])
    out.extend(_cas([a for a in adjustments if pd.isna(a["line_number"])]))
    member = _clean(claim["patient_id"]) if claim is not None else ""
    out.append(_seg("NM1", "QC", "1", "PATIENT", "A", "", "", "", "MI" if member else "",
                    member))  # fmt: skip
    claim_remarks = [_clean(r["rarc"]) for r in remarks if pd.isna(r["line_number"])]
    if claim_remarks:
        out.append(_seg("MOA", "", "", *claim_remarks[:5]))
    lines = sorted(by_remit["remit_lines"].get(rid, []), key=lambda r: int(r["line_number"]))
    for line in lines:
        number = int(line["line_number"])
        code = _clean(line["procedure_code"])
        svc01 = SUB.join(["HC", code]) if code else SUB.join(["NU", "0001"])
        units = _quantity(line["units"]) if _present(line["units"]) else ""
        out.append(_seg("SVC", svc01, _amount(line["line_charge"]),
                        _amount(line["paid_amount"]), "", units))  # fmt: skip
        out.extend(
            _cas([a for a in adjustments if _present(a["line_number"])
                  and int(a["line_number"]) == number])
        )  # fmt: skip
        out.append(_seg("REF", "6R", str(number)))
        for r in remarks:
            if _present(r["line_number"]) and int(r["line_number"]) == number:
                out.append(_seg("LQ", "HE", _clean(r["rarc"])))
    return out
