"""Ingest folders of X12 837P/837I/835 (and 999/277CA acknowledgements) into a ClaimsDataset.

Files are read in parallel (one process per file), then assembled, de-duplicated, validated
against the data contract and linked: every claim and remittance ends up either in the data set
or in the quarantine frame with a reason a billing analyst can act on, or, when its transaction
set was already read (the same 835 or 837 twice), is counted as a duplicate in the report.
Nothing is dropped silently, and nothing identifying a patient (member ID, name, birth date)
goes into a reason or the report.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import SCHEMAS, ClaimsDataset, empty_table, validate_table
from features.x12.outcomes import derive_followups
from features.x12.placeholders import is_placeholder_claim_id
from features.x12.pyx12_stream import Validation
from features.x12.reader import FileParse, TransactionSet, parse_file

QUARANTINE_COLUMNS = ["file", "position", "claim_id", "reason"]
_DATE_COLUMNS = {
    "claims": (
        "submission_date", "service_date_from", "service_date_to", "patient_birth_date",
        "accident_date", "onset_date", "initial_treatment_date", "other_payer_adjudication_date",
    ),
    "lines": ("service_date",),
    "remittances": (
        "remit_date", "statement_from", "statement_to", "received_date",
        "coverage_expiration_date",
    ),
    "remit_lines": ("service_date",),
    "rejections": ("rejection_date",),
}  # fmt: skip
_CLAIM_CHILDREN = ("lines", "diagnoses")
_REMIT_CHILDREN = ("remit_lines", "adjustments", "remarks")
_SKIP_SUFFIXES = {".md", ".parquet", ".json", ".py", ".csv", ".zip", ".gz"}


@dataclass
class IngestResult:
    """What :func:`ingest_paths` read.

    Attributes
    ----------
    dataset
        The validated tables.
    quarantine
        One row per quarantined file, claim, remittance or row: ``file``, ``position`` (segment
        number, or ``file``), ``claim_id`` (patient control number, may be empty), ``reason``.
    report
        Per input file: transaction type, versions seen, normalisation notes, claims (or
        remittance claims) read / ingested / quarantined / duplicate (read = the other three),
        the transaction sets that repeat one read before (``duplicate_of``), quarantine
        reasons, pyx12 warning count and the first redacted pyx12 messages. The key
        ``"_linking"`` holds the claim/remittance linking summary (unmatched counts and ids).
    """

    dataset: ClaimsDataset
    quarantine: pd.DataFrame
    report: dict[str, dict[str, Any]] = field(default_factory=dict)


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given, and every file under a folder (recursively, sorted, hidden ones skipped)."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.suffix.lower() not in _SKIP_SUFFIXES
            )
        else:
            files.append(path)
    return files


def _parse_quietly(path: Path, validation: Validation) -> FileParse:
    # pyx12 logs every finding, quoting segment text that can carry member IDs; the findings
    # are collected (redacted) by our error handler instead, so pyx12's own log is silenced.
    logger = logging.getLogger("pyx12")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return parse_file(path, validation)


def ingest_paths(
    paths: list[Path],
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    validation: Validation = "full",
) -> IngestResult:
    """Read 837P/837I/835 files and folders into a validated :class:`ClaimsDataset`.

    Parameters
    ----------
    paths
        Files or folders (searched recursively).
    workers
        Processes reading files in parallel; 1 reads in this process.
    progress
        Called as ``progress(files_done, files_total)`` after each file.
    validation
        ``"full"``: pyx12 checks every segment against the implementation guide (thorough,
        slower); ``"envelope"``: pyx12 checks separators, control numbers, counts and the HL/LX
        structure only (for bulk loads from a trusted source). Findings are warnings either way.
    """
    files = expand_paths(paths)
    parses: list[FileParse] = []
    if workers <= 1 or len(files) <= 1:
        for i, path in enumerate(files, start=1):
            parses.append(_parse_quietly(path, validation))
            if progress:
                progress(i, len(files))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_parse_quietly, path, validation) for path in files]
            for i, future in enumerate(futures, start=1):
                parses.append(future.result())
                if progress:
                    progress(i, len(files))
    return assemble(parses)


def read_claims_837(paths: list[Path], workers: int = 2) -> tuple[ClaimsDataset, pd.DataFrame]:
    """Claims, lines and diagnoses of 837 files (for scoring), with the quarantine frame.

    Any 835 or acknowledgement in ``paths`` is ignored here.
    """
    result = ingest_paths(paths, workers=workers)
    data = result.dataset
    dataset = ClaimsDataset(claims=data.claims, lines=data.lines, diagnoses=data.diagnoses)
    return dataset, result.quarantine


# -- assembly ------------------------------------------------------------------------------------
def assemble(parses: list[FileParse]) -> IngestResult:
    """Turn per-file rows into a validated data set, quarantine and report."""
    quarantine: list[dict[str, Any]] = []
    report: dict[str, dict[str, Any]] = {}
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
    first_read: dict[str, str] = {}
    for parse in parses:
        repeats = _repeated_sets(parse, first_read)
        report[parse.path] = {
            "transaction_type": ", ".join(dict.fromkeys(parse.kinds)) or None,
            "versions_seen": list(dict.fromkeys(parse.versions_seen)),
            "notes": parse.notes,
            "claims_read": parse.claims_read,
            "remittances_read": parse.remittances_read,
            "placeholder_clp01": parse.placeholder_clp01,
            "claims_duplicate": sum(ts.claims for ts, _ in repeats),
            "remittances_duplicate": sum(ts.remittances for ts, _ in repeats),
            "duplicate_of": [
                f"ST02={ts.st02} (segment {ts.position}) repeats {first}" for ts, first in repeats
            ],
            "pyx12_warnings": parse.pyx12_warnings,
            "pyx12_messages": parse.pyx12_messages,
        }
        if parse.file_reason:
            quarantine.append(
                {"file": parse.path, "position": "file", "claim_id": None,
                 "reason": parse.file_reason}
            )  # fmt: skip
        quarantine.extend(parse.quarantine)
        for table, rows in parse.tables.items():
            raw[table].extend(_without(rows, [ts.rows.get(table) for ts, _ in repeats]))

    frames = {name: _frame(name, rows) for name, rows in raw.items()}

    # Claims the reader already refused (no payer, no dates) and claim_id duplicates: quarantine
    # the claim with its lines and diagnoses.
    claims = frames["claims"]
    drop_keys: set[str] = set()
    if len(claims):
        refused = claims["_reject"].notna()
        for _, row in claims[refused].iterrows():
            quarantine.append(_qrow(row, row["_reject"]))
        drop_keys |= set(claims.loc[refused, "_key"])
        claims = claims[~refused]
        first_seen = claims.drop_duplicates("claim_id", keep="first").set_index("claim_id")
        dupes = claims[claims.duplicated("claim_id", keep="first")]
        for _, row in dupes.iterrows():
            first = first_seen.loc[row["claim_id"]]
            quarantine.append(
                _qrow(
                    row,
                    f"File {Path(row['_file']).name}, segment {row['_pos']}: claim "
                    f"{row['claim_id']!r} repeats a patient control number (CLM01) already read "
                    f"from {Path(first['_file']).name} segment {first['_pos']}; the first one is "
                    "kept. Give each claim (and each corrected claim) its own CLM01, or load the "
                    "versions separately",
                )
            )
        drop_keys |= set(dupes["_key"])
        frames["claims"] = claims[~claims["_key"].isin(drop_keys)]
        for child in _CLAIM_CHILDREN:
            frame = frames[child]
            frames[child] = frame[~frame["_key"].isin(drop_keys)] if len(frame) else frame

    # remit_id must be unique: files with the same name in different folders get a suffix.
    remits = frames["remittances"]
    if len(remits) and remits["remit_id"].duplicated().any():
        suffix = remits.groupby("remit_id").cumcount().astype(str)
        new_ids = remits["remit_id"].where(suffix == "0", remits["remit_id"] + "~" + suffix)
        mapping = dict(
            zip(zip(remits["_file"], remits["remit_id"], strict=True), new_ids, strict=True)
        )
        remits["remit_id"] = new_ids
        for child in _REMIT_CHILDREN:
            frame = frames[child]
            if len(frame):
                keys = zip(frame["_file"], frame["remit_id"], strict=True)
                frame["remit_id"] = [mapping.get(k, k[1]) for k in keys]

    linking = _link_remittances(frames)
    claim_file = dict(zip(frames["claims"]["claim_id"], frames["claims"]["_file"], strict=True))
    claim_pos = dict(zip(frames["claims"]["claim_id"], frames["claims"]["_pos"], strict=True))

    valid: dict[str, pd.DataFrame] = {}
    rejects: list[pd.DataFrame] = []
    for name, frame in frames.items():
        good, bad = validate_table(name, frame)
        valid[name] = good
        if len(bad):
            rejects.append(bad)
            for _, row in bad.iterrows():
                what = _row_label(name, row)
                quarantine.append(
                    _qrow(
                        row,
                        f"File {Path(str(row.get('_file', '?'))).name}, segment "
                        f"{row.get('_pos', '?')}: {what}: {explain(row['reason'])}",
                    )
                )
    all_rejects = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=["table", "reason", "claim_id"])
    )
    dataset = ClaimsDataset(**valid)
    dataset, all_rejects = dataset.drop_incomplete_claims(all_rejects)
    for _, row in all_rejects[all_rejects["table"] == "claims"].iterrows():
        if row["reason"] in (
            "a service line or diagnosis of this claim failed validation",
            "claim has no valid service line",
        ):
            cid = row["claim_id"]
            quarantine.append(
                {
                    "file": claim_file.get(cid),
                    "position": str(claim_pos.get(cid, "")),
                    "claim_id": cid,
                    "reason": f"File {Path(str(claim_file.get(cid))).name}, segment "
                    f"{claim_pos.get(cid, '?')}: claim {cid!r} quarantined because "
                    f"{row['reason']} (see the row-level entries for this claim)",
                }
            )
    # Lines and diagnoses of a claim rejected by the claims table go with it.
    kept = set(dataset.claims["claim_id"])
    for child in _CLAIM_CHILDREN:
        frame = getattr(dataset, child)
        setattr(dataset, child, frame[frame["claim_id"].isin(kept)].reset_index(drop=True))
    bad_remits = set(
        all_rejects.loc[all_rejects["table"] == "remittances", "remit_id"].dropna()
        if "remit_id" in all_rejects
        else []
    )
    if bad_remits:
        for child in _REMIT_CHILDREN:
            frame = getattr(dataset, child)
            setattr(
                dataset, child, frame[~frame["remit_id"].isin(bad_remits)].reset_index(drop=True)
            )

    if len(dataset.remittances) and len(dataset.followups) == 0:
        dataset.followups = validate_table("followups", derive_followups(dataset))[0]

    for row in quarantine:
        row["reason"] = _LONG_QUOTE.sub(_shorten, str(row["reason"]))
    qframe = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS)
    _fill_report(report, frames, dataset, qframe)
    report["_linking"] = linking
    return IngestResult(dataset=dataset, quarantine=qframe, report=report)


def _repeated_sets(
    parse: FileParse, first_read: dict[str, str]
) -> list[tuple[TransactionSet, str]]:
    """The transaction sets of ``parse`` already read (from an earlier file, or earlier in
    this one), each with where it was first read; the others are noted in ``first_read``.

    A payer sending the same remittance again (in another folder, under another name, with
    new envelope control numbers) must not count its claims' outcomes twice, nor a practice's
    claim batch sent twice its claims: the copy's rows are left out and its claims and
    remittances are counted as duplicates, so the report still adds up to what the files hold.
    """
    repeats = []
    for ts in parse.transaction_sets:
        if ts.digest in first_read:
            repeats.append((ts, first_read[ts.digest]))
        else:
            first_read[ts.digest] = f"{parse.path} ST02={ts.st02} (segment {ts.position})"
    return repeats


def _without(rows: list[dict[str, Any]], spans: list[tuple[int, int] | None]) -> list[Any]:
    """``rows`` less the ``[start, end)`` spans given (``None``: nothing)."""
    cuts = sorted(span for span in spans if span)
    if not cuts:
        return rows
    kept: list[Any] = []
    at = 0
    for start, end in cuts:
        kept.extend(rows[at:start])
        at = end
    kept.extend(rows[at:])
    return kept


def _frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        frame = empty_table(name).copy()
        for extra in ("_file", "_pos", "_key", "_reject", "_service_date"):
            frame[extra] = pd.Series(dtype=object)
        return frame
    frame = pd.DataFrame(rows)
    for column in _DATE_COLUMNS.get(name, ()):
        frame[column] = pd.to_datetime(frame[column], format="%Y%m%d", errors="coerce")
    return frame


def _qrow(row: pd.Series, reason: str) -> dict[str, Any]:
    return {
        "file": row.get("_file"),
        "position": str(row.get("_pos", "")),
        "claim_id": row.get("claim_id"),
        "reason": reason,
    }


def _row_label(table: str, row: pd.Series) -> str:
    cid = row.get("claim_id")
    if table == "lines":
        return f"claim {cid!r} service line {row.get('line_number')}"
    if table == "diagnoses":
        return f"claim {cid!r} diagnosis {row.get('position')}"
    if table in ("remittances", "remit_lines", "adjustments", "remarks"):
        return f"remittance for claim {cid!r} ({table})"
    return f"claim {cid!r}"


def _link_remittances(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Link each remittance to a claim: by CLP01 = CLM01, else by payer + service date + charge.

    A remittance whose CLP01 is a placeholder or unknown is re-pointed to the single claim with
    the same payer, first service date and total charge, when exactly one exists; otherwise it
    stays as it is and is listed as unmatched.
    """
    claims, remits = frames["claims"], frames["remittances"]
    known = set(claims["claim_id"]) if len(claims) else set()
    relinked: list[dict[str, str]] = []
    if len(remits) and len(claims):
        index: dict[tuple[Any, ...], list[str]] = {}
        for cid, payer, start, charge in zip(
            claims["claim_id"],
            claims["payer_id"],
            claims["service_date_from"],
            claims["total_charge"],
            strict=True,
        ):
            index.setdefault((payer, _day(start), charge), []).append(cid)
        new_ids = remits["claim_id"].copy()
        for i, (cid, payer, sdate, charge) in enumerate(
            zip(
                remits["claim_id"],
                remits["payer_id"],
                remits["_service_date"],
                remits["total_charge"],
                strict=True,
            )
        ):
            if cid in known and not is_placeholder_claim_id(cid):
                continue
            candidates = index.get((payer, _day(sdate), charge), [])
            if len(candidates) == 1:
                new_ids.iloc[i] = candidates[0]
                relinked.append({"remit_id": remits["remit_id"].iloc[i], "claim_id": candidates[0]})
        if relinked:
            mapping = dict(zip(remits["remit_id"], new_ids, strict=True))
            remits["claim_id"] = new_ids
            for child in _REMIT_CHILDREN:
                frame = frames[child]
                if len(frame):
                    frame["claim_id"] = frame["remit_id"].map(mapping).fillna(frame["claim_id"])
    remit_ids = set(remits["claim_id"]) if len(remits) else set()
    unmatched_remits = sorted(remit_ids - known) if len(claims) else []
    unmatched_claims = sorted(known - remit_ids) if len(remits) else []
    return {
        "relinked_by_payer_date_charge": relinked,
        "unmatched_remittance_claim_ids": unmatched_remits,
        "unmatched_remittances": int(remits["claim_id"].isin(unmatched_remits).sum())
        if len(remits)
        else 0,
        "claims_without_remittance": len(unmatched_claims),
        "claims_without_remittance_ids": unmatched_claims[:1000],
    }


def _day(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    return pd.Timestamp(value).strftime("%Y%m%d")


def _fill_report(
    report: dict[str, dict[str, Any]],
    frames: dict[str, pd.DataFrame],
    dataset: ClaimsDataset,
    quarantine: pd.DataFrame,
) -> None:
    kept_claims = set(dataset.claims["claim_id"])
    kept_remits = set(dataset.remittances["remit_id"])
    # Grouped by file in plain Python, once: a pandas filter or group per file took most of
    # assembling a load of thousands of small files.
    claims_by_file = _by_file(frames["claims"], "claim_id")
    remits_by_file = _by_file(frames["remittances"], "remit_id")
    reasons_by_file = _by_file(quarantine.rename(columns={"file": "_file"}), "reason")
    for path, entry in report.items():
        ids = claims_by_file.get(path, [])
        rids = remits_by_file.get(path, [])
        entry["claims_ingested"] = sum(1 for c in ids if c in kept_claims)
        entry["remittances_ingested"] = sum(1 for r in rids if r in kept_remits)
        for unit in ("claims", "remittances"):
            entry[f"{unit}_quarantined"] = (
                entry[f"{unit}_read"] - entry[f"{unit}_ingested"] - entry[f"{unit}_duplicate"]
            )
        entry["quarantine_reasons"] = reasons_by_file.get(path, [])


def _by_file(frame: pd.DataFrame, column: str) -> dict[Any, list[Any]]:
    """``column``'s values grouped by the row's ``_file``, in row order."""
    grouped: dict[Any, list[Any]] = {}
    if len(frame):
        for file, value in zip(frame["_file"], frame[column], strict=True):
            grouped.setdefault(file, []).append(value)
    return grouped


_EXPLAIN = [
    (
        r"^code: str_matches.*\(got '([^']*)'\)$",
        "diagnosis {0!r} is not an ICD-10-CM code (ICD-9 codes are not accepted since "
        "2015-10-01); recode the diagnosis",
    ),
    (
        r"^procedure_code: not_nullable.*$",
        "the service line has no CPT/HCPCS procedure code (a revenue-code-only line); add the "
        "HCPCS code",
    ),
    (
        r"^procedure_code: str_matches.*\(got '([^']*)'\)$",
        "procedure code {0!r} is not a 5-character CPT/HCPCS code",
    ),
    (
        r"^frequency_code: not_nullable.*$",
        "CLM05-3 claim frequency code is missing (or CLM05 uses a sub-element separator other "
        "than the one in ISA16); send 1 (original), 7 (replacement) or 8 (void)",
    ),
    (
        r"^frequency_code: isin.*\(got '([^']*)'\)$",
        "claim frequency code {0!r} (CLM05-3) is not 1, 7 or 8",
    ),
    (r"^(\w+): not_nullable.*$", "{0} is missing or not a valid value"),
]


def explain(reason: str) -> str:
    """Reword pandera's check names into what a billing analyst should fix."""
    parts = []
    for piece in str(reason).split("; "):
        for pattern, template in _EXPLAIN:
            match = re.match(pattern, piece)
            if match:
                parts.append(template.format(*match.groups()))
                break
        else:
            parts.append(f"failed the data contract ({piece})")
    return "; ".join(parts)


# Reasons quote the values they refuse (a code, a claim's CLM01); a damaged element can be
# thousands of characters of junk (issue 20's fuzzing, seeds 385 and 6961), so a long one is cut.
_LONG_QUOTE = re.compile(r"""(?<=[\s(])(?:'([^']{41,})'|"([^"]{41,})")(?=[\s),;:]|$)""")


def _shorten(match: re.Match[str]) -> str:
    value = match.group(1) or match.group(2)
    return f"{value[:20]!r}... ({len(value):,} characters)"
