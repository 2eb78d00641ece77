"""Ingest folders of X12 837P/837I/835 (and 999/277CA acknowledgements) into a ClaimsDataset.

Files are read in parallel (one process per file), then assembled, de-duplicated, validated
against the data contract and linked: every claim and remittance ends up either in the data set
or in the quarantine frame with a reason a billing analyst can act on, or, when its transaction
set was already read (the same 835 or 837 twice), is counted as a duplicate in the report.
Nothing is dropped silently, and nothing identifying a patient (member ID, name, birth date)
goes into a reason or the report.

:func:`ingest_into` adds files to a data set written before: the transaction sets its earlier
runs read are kept beside it (:data:`STATE_FILE`), so a file read again, under any name or
envelope, adds nothing; remittances link to earlier claims; a replacement claim (CLM05-3 = 7)
with an earlier claim's CLM01 replaces it and a void (8) removes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import (
    CLAIM_TABLES,
    SCHEMAS,
    ClaimsDataset,
    DatasetManifest,
    empty_table,
    ids_in,
    quarantine_incomplete_claims,
    read_manifest,
    validate_table,
    write_manifest,
)
from features.x12.outcomes import derive_followups, first_adjudication_outcomes
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


STATE_FILE = "ingest-state.json"
"""Beside a data set's tables: the transaction sets (and whole files) its runs read."""

_STATE_FORMAT = 1


@dataclass
class IngestState:
    """What a data set's ingest runs have read, so that reading it again adds nothing.

    Attributes
    ----------
    transaction_sets
        Digest of each transaction set read (:class:`~features.x12.reader.TransactionSet`) ->
        where it was first read (file, ST02, segment).
    files
        SHA-256 of each whole file read -> its path and its sets (digest, ST02, segment,
        claims, remittances): a byte-identical file is counted from this, not parsed again.
        Only files whose every claim and remittance lay in a complete transaction set.
    runs
        How many runs wrote the data set.
    """

    transaction_sets: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: int = 0

    @classmethod
    def read(cls, folder: Path) -> IngestState | None:
        """The state kept in a data set ``folder``; None when it has none."""
        path = Path(folder) / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(
            transaction_sets=dict(data.get("transaction_sets", {})),
            files=dict(data.get("files", {})),
            runs=int(data.get("runs", 0)),
        )

    def write(self, folder: Path) -> None:
        from features.atomic import write_text

        write_text(
            Path(folder) / STATE_FILE,
            json.dumps(
                {
                    "format": _STATE_FORMAT,
                    "runs": self.runs,
                    "transaction_sets": self.transaction_sets,
                    "files": self.files,
                }
            ),
        )


@dataclass
class IngestResult:
    """What :func:`ingest_paths` (or :func:`ingest_into`) read.

    Attributes
    ----------
    dataset
        The validated tables (with :func:`ingest_into`: the earlier runs' and this one's).
    quarantine
        One row per quarantined file, claim, remittance or row: ``file``, ``position`` (segment
        number, or ``file``), ``claim_id`` (patient control number, may be empty), ``reason``.
    report
        Per input file: transaction type, versions seen, normalisation notes, claims (or
        remittance claims) read / ingested / quarantined / duplicate (read = the other three;
        ``claims_replacing``: of the ingested, those that replaced an earlier version;
        ``claims_voids``: of the quarantined, the voids applied; a version replaced later in
        the same run is quarantined with that reason), the transaction sets that repeat one
        read before (``duplicate_of``), quarantine reasons,
        pyx12 warning count and the first redacted pyx12 messages. The key ``"_linking"``
        holds the claim/remittance linking summary (unmatched counts and ids).
    state
        What this run and the earlier ones read (kept beside the data set, :data:`STATE_FILE`).
    summary
        What this run added: claims, remittances (and those for earlier claims), replaced and
        voided claims, duplicates, quarantined items, earlier claims whose outcome changed.
    """

    dataset: ClaimsDataset
    quarantine: pd.DataFrame
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: IngestState = field(default_factory=IngestState)
    summary: dict[str, Any] = field(default_factory=dict)


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
    earlier: ClaimsDataset | None = None,
    state: IngestState | None = None,
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
    earlier, state
        A data set to add to and what its runs read (see :func:`ingest_into`); a file
        byte-identical to one read before is counted as a duplicate without being parsed.
    """
    files = expand_paths(paths)
    state = state or IngestState()
    hashes = {str(path): _file_hash(path) for path in files}
    parses: dict[int, FileParse] = {}
    to_parse: list[tuple[int, Path]] = []
    for i, path in enumerate(files):
        seen = state.files.get(hashes[str(path)] or "")
        if seen is not None:
            parses[i] = _already_read(str(path), seen)
        else:
            to_parse.append((i, path))
    done = len(parses)
    if progress and done:
        progress(done, len(files))
    if workers <= 1 or len(to_parse) <= 1:
        for i, path in to_parse:
            parses[i] = _parse_quietly(path, validation)
            done += 1
            if progress:
                progress(done, len(files))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [(i, pool.submit(_parse_quietly, path, validation)) for i, path in to_parse]
            for i, future in futures:
                parses[i] = future.result()
                done += 1
                if progress:
                    progress(done, len(files))
    ordered = [parses[i] for i in range(len(files))]
    result = assemble(ordered, earlier=earlier, state=state)
    for parse in ordered:
        digest = hashes.get(parse.path)
        if digest and digest not in result.state.files and _whole_sets(parse):
            result.state.files[digest] = {
                "path": parse.path,
                "kinds": list(dict.fromkeys(parse.kinds)),
                "sets": [
                    [ts.digest, ts.st02, ts.position, ts.claims, ts.remittances]
                    for ts in parse.transaction_sets
                ],
            }
    result.summary["files"] = len(files)
    result.summary["files_not_parsed_again"] = len(files) - len(to_parse)
    return result


def ingest_into(
    paths: list[Path],
    folder: Path,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    validation: Validation = "full",
) -> IngestResult:
    """Add 837/835 files to the data set in ``folder`` (an empty one when it does not exist).

    The result holds the whole data set, earlier rows and new ones, as a fresh ingest of every
    file would: a transaction set read by an earlier run (the same file, or a copy under
    another name or envelope) adds nothing and is counted as a duplicate; an 835 for claims
    ingested earlier links to them (by CLP01, else by payer + service date + charge, both
    ways); follow-ups are derived for the whole; a reversal (CLP02 = 22) or a new payment
    changes the earlier claim's outcome (counted in ``summary``); a replacement claim
    (CLM05-3 = 7) with an earlier claim's CLM01 replaces that claim, a void (8) removes it.
    Write it back with :func:`write_ingest`.

    Raises
    ------
    ValueError
        ``folder`` holds files but not a data set written by ``ingest`` (no
        :data:`STATE_FILE`): its earlier transaction sets are unknown, so appending could
        count them twice.
    """
    folder = Path(folder)
    earlier: ClaimsDataset | None = None
    state = IngestState()
    retired = sorted(folder.parent.glob(f".{folder.name}.*.replaced"))
    if not folder.exists() and retired:
        raise ValueError(
            f"{folder} is missing but its previous version is at {retired[0]}: a run was "
            f"stopped while putting the new one in place. Rename {retired[0].name} back to "
            f"{folder.name} and run again (files it already holds add nothing)"
        )
    if folder.exists() and any(folder.iterdir()):
        found = IngestState.read(folder)
        if found is None:
            raise ValueError(
                f"{folder} is not a data set written by 'ingest' with the transaction sets it "
                f"read ({STATE_FILE} is missing), so files read before could be counted twice; "
                "ingest its 837/835 files again with --into a new folder"
            )
        state = found
        earlier, rejects = ClaimsDataset.read(folder)
        if len(rejects):
            raise ValueError(
                f"{folder}: {len(rejects):,} rows no longer pass the data contract; ingest its "
                "837/835 files again with --into a new folder"
            )
    return ingest_paths(
        paths,
        workers=workers,
        progress=progress,
        validation=validation,
        earlier=earlier,
        state=state,
    )


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # parse_file says why the file cannot be read


def _whole_sets(parse: FileParse) -> bool:
    """Whether every claim and remittance of the file lay in a complete transaction set (then
    its sets alone say what it holds)."""
    sets = parse.transaction_sets
    return (
        bool(sets)
        and parse.file_reason is None
        and parse.claims_read == sum(ts.claims for ts in sets)
        and parse.remittances_read == sum(ts.remittances for ts in sets)
    )


def _already_read(path: str, seen: dict[str, Any]) -> FileParse:
    """A file byte-identical to one read before, as its parse would be (its sets, no rows):
    assembly finds every set already read and counts the file's claims as duplicates."""
    sets = [
        TransactionSet(digest=d, st02=st02, position=pos, claims=c, remittances=r, rows={})
        for d, st02, pos, c, r in seen["sets"]
    ]
    return FileParse(
        path=path,
        kinds=list(seen.get("kinds", [])),
        notes=[f"byte-identical to {seen['path']}, read before: counted, not parsed again"],
        claims_read=sum(ts.claims for ts in sets),
        remittances_read=sum(ts.remittances for ts in sets),
        transaction_sets=sets,
    )


def read_claims_837(paths: list[Path], workers: int = 2) -> tuple[ClaimsDataset, pd.DataFrame]:
    """Claims, lines and diagnoses of 837 files (for scoring), with the quarantine frame.

    Any 835 or acknowledgement in ``paths`` is ignored here.
    """
    result = ingest_paths(paths, workers=workers)
    data = result.dataset
    dataset = ClaimsDataset(claims=data.claims, lines=data.lines, diagnoses=data.diagnoses)
    return dataset, result.quarantine


# -- assembly ------------------------------------------------------------------------------------
def assemble(
    parses: list[FileParse],
    earlier: ClaimsDataset | None = None,
    state: IngestState | None = None,
) -> IngestResult:
    """Turn per-file rows into a validated data set, quarantine and report.

    With ``earlier`` (a data set written before) and ``state`` (what its runs read), the rows
    are added to it as :func:`ingest_into` describes.
    """
    state = IngestState(
        transaction_sets=dict(state.transaction_sets) if state else {},
        files=dict(state.files) if state else {},
        runs=(state.runs if state else 0) + 1,
    )
    quarantine: list[dict[str, Any]] = []
    report: dict[str, dict[str, Any]] = {}
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
    first_read = state.transaction_sets
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

    # Claims the reader already refused (no payer, no dates): quarantine the claim with its
    # lines and diagnoses.
    claims = frames["claims"]
    if len(claims):
        refused = claims["_reject"].notna()
        for _, row in claims[refused].iterrows():
            quarantine.append(_qrow(row, row["_reject"]))
        drop_keys = set(claims.loc[refused, "_key"])
        frames["claims"] = claims[~refused]
        for child in _CLAIM_CHILDREN:
            frame = frames[child]
            frames[child] = frame[~frame["_key"].isin(drop_keys)] if len(frame) else frame

    # remit_id must be unique: files with the same name in different folders (or runs) get a
    # suffix.
    taken = set(earlier.remittances["remit_id"]) if earlier is not None else set()
    _make_remit_ids_unique(frames, taken)

    linking, relinked_earlier = _link_remittances(frames, earlier)
    claim_file = dict(zip(frames["claims"]["_key"], frames["claims"]["_file"], strict=True))
    claim_pos = dict(zip(frames["claims"]["_key"], frames["claims"]["_pos"], strict=True))

    # Validation: the remittance tables and rejections at once; the claim tables once per
    # version, so that a claim and its replacement (the same CLM01) are each checked whole.
    valid: dict[str, pd.DataFrame] = {}
    rejects: list[pd.DataFrame] = []
    for name, frame in frames.items():
        if name in CLAIM_TABLES:
            continue
        good, bad = validate_table(name, frame)
        valid[name] = good
        rejects.append(bad)
        quarantine.extend(_rejected_rows(name, bad))
    bad_remits = set().union(*(_column(bad, "remit_id") for bad in rejects))
    if bad_remits:
        for child in _REMIT_CHILDREN:
            frame = valid[child]
            valid[child] = frame[~frame["remit_id"].isin(bad_remits)].reset_index(drop=True)
    versions = []
    for keys in _versions(frames["claims"]):
        version = {
            name: frames[name][frames[name]["_key"].isin(keys)] if len(frames[name]) else
            frames[name]
            for name in CLAIM_TABLES
        }  # fmt: skip
        checked, bad_rows = _validated_claims(version, claim_file, claim_pos)
        quarantine.extend(bad_rows)
        versions.append((version["claims"], checked))

    folded = _fold_versions(versions, earlier, quarantine)
    dataset = _union(earlier, folded, valid, relinked_earlier)
    if earlier is not None and _same_claims_and_remittances(earlier, dataset):
        dataset.followups = earlier.followups  # derived from the same rows: nothing to redo
    elif len(dataset.remittances):
        dataset.followups = validate_table("followups", derive_followups(dataset))[0]

    for row in quarantine:
        row["reason"] = _LONG_QUOTE.sub(_shorten, str(row["reason"]))
    qframe = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS)
    _fill_report(report, frames, folded, dataset, qframe)
    report["_linking"] = linking
    summary = _summary(report, folded, earlier, dataset, qframe, relinked_earlier, state.runs)
    return IngestResult(
        dataset=dataset, quarantine=qframe, report=report, state=state, summary=summary
    )


def _same_claims_and_remittances(earlier: ClaimsDataset, union: ClaimsDataset) -> bool:
    """Whether a run left every table follow-ups are derived from as it was (same rows)."""
    return all(
        getattr(union, name).equals(getattr(earlier, name))
        for name in ("claims", "remittances", "adjustments")
    )


def _column(frame: pd.DataFrame, column: str) -> set[Any]:
    return set(frame[column].dropna()) if column in frame and len(frame) else set()


def _rejected_rows(name: str, bad: pd.DataFrame) -> list[dict[str, Any]]:
    """Quarantine entries for rows the data contract refused."""
    rows = []
    for _, row in bad.iterrows():
        what = _row_label(name, row)
        rows.append(
            _qrow(
                row,
                f"File {Path(str(row.get('_file', '?'))).name}, segment "
                f"{row.get('_pos', '?')}: {what}: {explain(row['reason'])}",
            )
        )
    return rows


_INCOMPLETE = (
    "a service line or diagnosis of this claim failed validation",
    "claim has no valid service line",
)


def _validated_claims(
    version: dict[str, pd.DataFrame], claim_file: dict[str, Any], claim_pos: dict[str, Any]
) -> tuple[ClaimsDataset, list[dict[str, Any]]]:
    """One version of the claim tables (each CLM01 once) validated: a claim goes whole, with
    its lines and diagnoses, or not at all."""
    valid: dict[str, pd.DataFrame] = {}
    rejects: list[pd.DataFrame] = []
    quarantine: list[dict[str, Any]] = []
    for name in CLAIM_TABLES:
        good, bad = validate_table(name, version[name])
        valid[name] = good
        if len(bad):
            rejects.append(bad)
            quarantine.extend(_rejected_rows(name, bad))
    all_rejects = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=["table", "reason", "claim_id"])
    )
    claims, lines, diagnoses, all_rejects = quarantine_incomplete_claims(
        valid["claims"], valid["lines"], valid["diagnoses"], all_rejects
    )
    key_of = dict(zip(version["claims"]["claim_id"], version["claims"]["_key"], strict=True))
    for _, row in all_rejects[all_rejects["table"] == "claims"].iterrows():
        if row["reason"] in _INCOMPLETE:
            cid = row["claim_id"]
            key = str(key_of.get(cid))
            quarantine.append(
                {
                    "file": claim_file.get(key),
                    "position": str(claim_pos.get(key, "")),
                    "claim_id": cid,
                    "reason": f"File {Path(str(claim_file.get(key))).name}, segment "
                    f"{claim_pos.get(key, '?')}: claim {cid!r} quarantined because "
                    f"{row['reason']} (see the row-level entries for this claim)",
                }
            )
    # Lines and diagnoses of a claim rejected by the claims table go with it.
    kept = claims["claim_id"]
    lines = lines[ids_in(lines["claim_id"], kept)].reset_index(drop=True)
    diagnoses = diagnoses[ids_in(diagnoses["claim_id"], kept)].reset_index(drop=True)
    return ClaimsDataset(claims=claims, lines=lines, diagnoses=diagnoses), quarantine


def _versions(claims: pd.DataFrame) -> list[set[str]]:
    """The claim rows' keys by version: the first of each CLM01 in this run (by submission
    date, then as read), then the second of those sent more than once, and so on."""
    if not len(claims):
        return [set()]
    repeated = claims["claim_id"].duplicated(keep=False).to_numpy()
    if not repeated.any():
        return [set(claims["_key"])]
    order = claims.assign(_order=range(len(claims))).sort_values(
        ["submission_date", "_order"], kind="stable", na_position="last"
    )
    rank = order.groupby("claim_id", sort=False).cumcount()
    return [set(order.loc[rank == n, "_key"]) for n in range(int(rank.max()) + 1)]


_EARLIER_RUN = "an earlier run"


@dataclass
class _Folded:
    """The claims of this run after replacements and voids (see :func:`_fold_versions`)."""

    parts: list[ClaimsDataset]
    accepted_keys: set[str]
    void_keys: set[str]
    replacing_keys: set[str]
    removed_earlier: set[str]
    changes: list[dict[str, Any]]


def _fold_versions(
    versions: list[tuple[pd.DataFrame, ClaimsDataset]],
    earlier: ClaimsDataset | None,
    quarantine: list[dict[str, Any]],
) -> _Folded:
    """Apply each version in turn to the claims known so far (the earlier data set's first).

    A claim whose CLM01 is already known replaces the known one when it is a replacement
    (CLM05-3 = 7), removes it when it is a void (8), and is quarantined otherwise (the earlier
    one is kept). Replaced and voided claims are listed in ``changes``; a replacement or void
    that failed validation changes nothing (it is quarantined with its reason).
    """
    known: dict[str, str] = {}  # claim_id -> where it was read
    owner: dict[str, int] = {}  # claim_id -> the version holding it (-1: the earlier data set)
    if earlier is not None:
        known = dict.fromkeys(earlier.claims["claim_id"], _EARLIER_RUN)
        owner = dict.fromkeys(known, -1)
    read = [
        {
            cid: (str(key), str(file), str(pos), str(frequency))
            for cid, key, file, pos, frequency in zip(
                raw["claim_id"], raw["_key"], raw["_file"], raw["_pos"], raw["frequency_code"],
                strict=True,
            )
        }
        for raw, _ in versions
    ]  # fmt: skip
    drop: list[set[str]] = [set() for _ in versions]
    folded = _Folded([], set(), set(), set(), set(), [])
    for n, (_, checked) in enumerate(versions):
        ids = checked.claims["claim_id"]
        overlap = ids[ids_in(ids, set(known))] if known else ids.iloc[:0]
        for cid in overlap:
            key, file, pos, frequency = read[n][cid]
            where = f"File {Path(file).name}, segment {pos}"
            if frequency not in ("7", "8"):
                quarantine.append(
                    {
                        "file": file,
                        "position": pos,
                        "claim_id": cid,
                        "reason": f"{where}: claim {cid!r} repeats a patient control number "
                        f"(CLM01) already read from {known[cid]}, and is not a replacement "
                        "(CLM05-3 = 7) or a void (8); the earlier one is kept. Send a "
                        "corrected claim with frequency code 7, or give each claim its own "
                        "CLM01",
                    }
                )
                drop[n].add(cid)
                continue
            before = owner.pop(cid)
            action = "replaced" if frequency == "7" else "voided"
            how = "a corrected claim (CLM05-3 = 7)" if frequency == "7" else "a void (8)"
            earlier_file, earlier_pos = None, ""
            if before < 0:
                folded.removed_earlier.add(cid)
            else:
                drop[before].add(cid)
                earlier_key, earlier_file, earlier_pos, _ = read[before][cid]
                folded.accepted_keys.discard(earlier_key)
                folded.replacing_keys.discard(earlier_key)
            # The version set aside is accounted for where it was read, with what happened.
            quarantine.append(
                {
                    "file": earlier_file,
                    "position": earlier_pos,
                    "claim_id": cid,
                    "reason": f"claim {cid!r} read from {known[cid]} was {action} by {how} "
                    f"in {where}",
                }
            )
            folded.changes.append(
                {"claim_id": cid, "action": action, "by": where, "earlier": known.pop(cid)}
            )
            if frequency == "8":
                drop[n].add(cid)
                folded.void_keys.add(key)
                quarantine.append(
                    {
                        "file": file,
                        "position": pos,
                        "claim_id": cid,
                        "reason": f"{where}: claim {cid!r} is a void (CLM05-3 = 8): the claim "
                        "it voids was removed from the data set",
                    }
                )
            else:
                folded.replacing_keys.add(key)
        for cid in ids:
            if cid not in drop[n]:
                key, file, pos, _ = read[n][cid]
                known[cid] = f"{Path(file).name} segment {pos}"
                owner[cid] = n
                folded.accepted_keys.add(key)
    for n, (_, checked) in enumerate(versions):
        if drop[n]:
            checked = ClaimsDataset(
                **{
                    name: frame[~ids_in(frame["claim_id"], drop[n])].reset_index(drop=True)
                    for name, frame in ((t, getattr(checked, t)) for t in CLAIM_TABLES)
                }
            )
        folded.parts.append(checked)
    return folded


def _union(
    earlier: ClaimsDataset | None,
    folded: _Folded,
    valid: dict[str, pd.DataFrame],
    relinked_earlier: dict[str, str],
) -> ClaimsDataset:
    """The earlier data set (less the claims replaced or voided, its remittances re-linked)
    with this run's rows after it."""
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in SCHEMAS}
    if earlier is not None:
        gone = folded.removed_earlier
        for name in CLAIM_TABLES:
            frame = getattr(earlier, name)
            tables[name].append(frame[~ids_in(frame["claim_id"], gone)] if gone else frame)
        for name in ("remittances", *_REMIT_CHILDREN, "rejections"):
            frame = getattr(earlier, name)
            if relinked_earlier and name != "rejections" and len(frame):
                frame = frame.copy()
                frame["claim_id"] = (
                    frame["remit_id"]
                    .map(relinked_earlier)
                    .fillna(frame["claim_id"])
                    .astype(frame["claim_id"].dtype)
                )
            tables[name].append(frame)
    for part in folded.parts:
        for name in CLAIM_TABLES:
            tables[name].append(getattr(part, name))
    for name, frame in valid.items():
        if name != "followups":
            tables[name].append(frame)
    return ClaimsDataset(**{name: _concat(name, frames) for name, frames in tables.items()})


def _concat(name: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
    filled = [frame for frame in frames if len(frame)]
    if not filled:
        return frames[-1].reset_index(drop=True) if frames else empty_table(name)
    if len(filled) == 1:
        return filled[0].reset_index(drop=True)
    return pd.concat(filled, ignore_index=True)


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


def _make_remit_ids_unique(frames: dict[str, pd.DataFrame], taken: set[str]) -> None:
    """Give a remittance whose ``remit_id`` is taken (by an earlier row, or an earlier run's)
    the first free ``~N`` suffix, in its child rows too."""
    remits = frames["remittances"]
    ids = remits["remit_id"].tolist() if len(remits) else []
    if len(set(ids)) == len(ids) and not (taken and set(ids) & taken):
        return
    seen = set(taken)
    new_ids: list[str] = []
    for rid in ids:
        new, n = rid, 0
        while new in seen:
            n += 1
            new = f"{rid}~{n}"
        seen.add(new)
        new_ids.append(new)
    mapping = dict(zip(zip(remits["_file"], remits["remit_id"], strict=True), new_ids, strict=True))
    remits["remit_id"] = new_ids
    for child in _REMIT_CHILDREN:
        frame = frames[child]
        if len(frame):
            keys = zip(frame["_file"], frame["remit_id"], strict=True)
            frame["remit_id"] = [mapping.get(k, k[1]) for k in keys]


def _link_remittances(
    frames: dict[str, pd.DataFrame], earlier: ClaimsDataset | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Link each remittance to a claim: by CLP01 = CLM01, else by payer + service date + charge.

    A remittance whose CLP01 is a placeholder or unknown is re-pointed to the single claim with
    the same payer, first service date and total charge, when exactly one exists; otherwise it
    stays as it is and is listed as unmatched. With an ``earlier`` data set its claims are
    candidates too, and its remittances still unmatched are tried against this run's claims;
    those re-linked are returned as ``{remit_id: claim_id}`` (the earlier tables are not
    changed here).
    """
    claims, remits = frames["claims"], frames["remittances"]
    claim_sets = [claims] + ([earlier.claims] if earlier is not None else [])
    claim_sets = [frame for frame in claim_sets if len(frame)]
    known = set().union(*(set(frame["claim_id"]) for frame in claim_sets))
    index: dict[tuple[Any, ...], dict[str, None]] = {}

    def relink(rows: pd.DataFrame, service_dates: Iterable[Any]) -> dict[str, str]:
        if not index:  # built on first need: most runs' remittances all name a known claim
            for frame in claim_sets:
                for cid, payer, start, charge in zip(
                    frame["claim_id"], frame["payer_id"], frame["service_date_from"],
                    frame["total_charge"], strict=True,
                ):  # fmt: skip
                    index.setdefault((payer, _day(start), charge), {})[cid] = None
        found: dict[str, str] = {}
        for rid, payer, sdate, charge in zip(
            rows["remit_id"], rows["payer_id"], service_dates, rows["total_charge"], strict=True
        ):
            candidates = index.get((payer, _day(sdate), charge), {})
            if len(candidates) == 1:
                found[rid] = next(iter(candidates))
        return found

    def unlinked(rows: pd.DataFrame) -> pd.Series:
        return pd.Series(
            [cid not in known or is_placeholder_claim_id(cid) for cid in rows["claim_id"]],
            index=rows.index,
            dtype=bool,
        )

    relinked: dict[str, str] = {}
    relinked_earlier: dict[str, str] = {}
    if len(remits) and known:
        loose = unlinked(remits)
        if loose.any():
            relinked = relink(remits[loose], remits.loc[loose, "_service_date"])
        if relinked:
            remits["claim_id"] = remits["remit_id"].map(relinked).fillna(remits["claim_id"])
            for child in _REMIT_CHILDREN:
                frame = frames[child]
                if len(frame):
                    frame["claim_id"] = frame["remit_id"].map(relinked).fillna(frame["claim_id"])
    if earlier is not None and len(claims) and len(earlier.remittances):
        old = earlier.remittances
        orphans = old[unlinked(old)]
        if len(orphans):
            relinked_earlier = relink(orphans, _remit_service_dates(orphans, earlier.remit_lines))
    remit_ids = set(remits["claim_id"]) if len(remits) else set()
    if earlier is not None and len(earlier.remittances):
        old_ids = earlier.remittances["remit_id"].map(relinked_earlier)
        remit_ids |= set(old_ids.fillna(earlier.remittances["claim_id"]))
    unmatched_remits = sorted(remit_ids - known) if known else []
    unmatched_claims = sorted(known - remit_ids) if remit_ids else []
    unmatched_count = int(remits["claim_id"].isin(unmatched_remits).sum()) if len(remits) else 0
    return {
        "relinked_by_payer_date_charge": [
            {"remit_id": rid, "claim_id": cid}
            for rid, cid in [*relinked_earlier.items(), *relinked.items()]
        ],
        "unmatched_remittance_claim_ids": unmatched_remits,
        "unmatched_remittances": unmatched_count,
        "claims_without_remittance": len(unmatched_claims),
        "claims_without_remittance_ids": unmatched_claims[:1000],
    }, relinked_earlier


def _remit_service_dates(remits: pd.DataFrame, remit_lines: pd.DataFrame) -> pd.Series:
    """Each remittance's service date as the reader takes it: DTM*232, else its first line's
    date."""
    dated = remit_lines.dropna(subset=["service_date"]).drop_duplicates("remit_id")
    first_line = remits["remit_id"].map(dated.set_index("remit_id")["service_date"])
    return remits["statement_from"].where(remits["statement_from"].notna(), first_line)


def _day(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    return pd.Timestamp(value).strftime("%Y%m%d")


def _fill_report(
    report: dict[str, dict[str, Any]],
    frames: dict[str, pd.DataFrame],
    folded: _Folded,
    dataset: ClaimsDataset,
    quarantine: pd.DataFrame,
) -> None:
    kept_remits = set(dataset.remittances["remit_id"])
    # Grouped by file in plain Python, once: a pandas filter or group per file took most of
    # assembling a load of thousands of small files.
    claims_by_file = _by_file(frames["claims"], "_key")
    remits_by_file = _by_file(frames["remittances"], "remit_id")
    reasons_by_file = _by_file(quarantine.rename(columns={"file": "_file"}), "reason")
    for path, entry in report.items():
        keys = claims_by_file.get(path, [])
        rids = remits_by_file.get(path, [])
        entry["claims_ingested"] = sum(1 for k in keys if k in folded.accepted_keys)
        entry["claims_replacing"] = sum(1 for k in keys if k in folded.replacing_keys)
        entry["claims_voids"] = sum(1 for k in keys if k in folded.void_keys)
        entry["remittances_ingested"] = sum(1 for r in rids if r in kept_remits)
        for unit in ("claims", "remittances"):
            entry[f"{unit}_quarantined"] = (
                entry[f"{unit}_read"] - entry[f"{unit}_ingested"] - entry[f"{unit}_duplicate"]
            )
        entry["quarantine_reasons"] = reasons_by_file.get(path, [])


def _summary(
    report: dict[str, dict[str, Any]],
    folded: _Folded,
    earlier: ClaimsDataset | None,
    dataset: ClaimsDataset,
    quarantine: pd.DataFrame,
    relinked_earlier: dict[str, str],
    run: int,
) -> dict[str, Any]:
    """What this run added to the data set (see :attr:`IngestResult.summary`)."""
    entries = [entry for name, entry in report.items() if not name.startswith("_")]

    def total(key: str) -> int:
        return sum(int(entry.get(key, 0) or 0) for entry in entries)

    before = {name: len(getattr(earlier, name)) for name in SCHEMAS} if earlier else {}
    after = {name: len(getattr(dataset, name)) for name in SCHEMAS}
    earlier_claims = set(earlier.claims["claim_id"]) if earlier is not None else set()
    new_remits = dataset.remittances.iloc[before.get("remittances", 0) :]
    changed, new_outcomes = _outcome_changes(earlier, dataset, new_remits, relinked_earlier)
    replaced = [c for c in folded.changes if c["action"] == "replaced"]
    voided_earlier = sum(
        c["action"] == "voided" and c["earlier"] == _EARLIER_RUN for c in folded.changes
    )
    return {
        "run": run,
        # A replaced earlier claim keeps its row; a voided one lost it.
        "claims_added": after["claims"] - before.get("claims", 0) + voided_earlier,
        "claims_replaced": len(replaced),
        "claims_voided": len(folded.changes) - len(replaced),
        "claim_changes": folded.changes[:1000],
        "remittances_added": len(new_remits),
        "remittances_for_earlier_claims": int(new_remits["claim_id"].isin(earlier_claims).sum()),
        "earlier_remittances_linked_now": len(relinked_earlier),
        "rejections_added": after["rejections"] - before.get("rejections", 0),
        "claims_duplicate": total("claims_duplicate"),
        "remittances_duplicate": total("remittances_duplicate"),
        "transaction_sets_duplicate": sum(len(entry["duplicate_of"]) for entry in entries),
        "quarantined": len(quarantine),
        "outcomes_changed": len(changed),
        "outcomes_changed_claim_ids": changed[:1000],
        "outcomes_new_for_earlier_claims": new_outcomes,
        "tables_before": before,
        "tables_after": after,
    }


_OUTCOME_FIELDS = ["remit_id", "denied", "primary_carc", "paid_amount", "status"]


def _outcome_changes(
    earlier: ClaimsDataset | None,
    dataset: ClaimsDataset,
    new_remits: pd.DataFrame,
    relinked_earlier: dict[str, str],
) -> tuple[list[str], int]:
    """Earlier claims whose first-adjudication outcome this run changed (a reversal, a payment
    that now comes first, a remittance now linked) and how many had none before and have one
    now. Outcomes are derived for the claims the run's remittances touch only."""
    if earlier is None or not len(earlier.claims):
        return [], 0
    touched = set(new_remits["claim_id"]) | set(relinked_earlier.values())
    touched &= set(earlier.claims["claim_id"])
    if not touched:
        return [], 0

    def outcomes(data: ClaimsDataset) -> pd.DataFrame:
        remits = data.remittances[ids_in(data.remittances["claim_id"], touched)]
        adjustments = data.adjustments[ids_in(data.adjustments["remit_id"], remits["remit_id"])]
        subset = ClaimsDataset(
            claims=empty_table("claims"),
            lines=empty_table("lines"),
            diagnoses=empty_table("diagnoses"),
            remittances=remits.reset_index(drop=True),
            adjustments=adjustments.reset_index(drop=True),
        )
        found = first_adjudication_outcomes(subset)
        return found.set_index("claim_id")[_OUTCOME_FIELDS].astype(object)

    earlier_view = ClaimsDataset(
        claims=earlier.claims,
        lines=earlier.lines,
        diagnoses=earlier.diagnoses,
        remittances=earlier.remittances,
        adjustments=earlier.adjustments,
    )
    old, new = outcomes(earlier_view), outcomes(dataset)
    changed = sorted(
        cid
        for cid in old.index
        if cid not in new.index or not _same(old.loc[cid].tolist(), new.loc[cid].tolist())
    )
    return changed, int(sum(cid not in old.index for cid in new.index))


def _same(a: list[Any], b: list[Any]) -> bool:
    return all((pd.isna(x) and pd.isna(y)) or x == y for x, y in zip(a, b, strict=True))


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


# -- writing -------------------------------------------------------------------------------------
REPORT_FILE = "ingest-report.json"
QUARANTINE_FILE = "quarantine.csv"
RUNS_FOLDER = "ingest-runs"
"""Under a data set: each run's own report (``run-0001.json``) and quarantine
(``run-0001-quarantine.csv``); the files above hold every run's."""


def write_ingest(result: IngestResult, out: Path) -> DatasetManifest:
    """Put the data set, its manifest, the ingest state and the reports in ``out`` together
    (``features.atomic.atomic_folder``): a kill leaves the earlier folder or the new one, whole.

    When ``result`` adds to the data set already in ``out`` (its state counts more than one
    run), the earlier runs' reports and quarantine are kept: ``ingest-report.json`` and
    ``quarantine.csv`` hold every run's entries, ``ingest-runs/`` each run's own.
    """
    from features.atomic import atomic_folder

    out = Path(out)
    run = result.state.runs
    appending = run > 1 and out.is_dir()
    previous = read_manifest(out) if appending else None
    report: dict[str, Any] = json.loads((out / REPORT_FILE).read_text()) if appending else {}
    quarantine = [result.quarantine]
    if appending and (out / QUARANTINE_FILE).exists():
        quarantine.insert(0, pd.read_csv(out / QUARANTINE_FILE, dtype=str))
    runs = report.pop("_runs", [])
    for name, entry in result.report.items():
        if name.startswith("_"):
            continue
        report[name if name not in report else f"{name} (run {run})"] = entry
    report["_linking"] = result.report.get("_linking", {})
    report["_runs"] = [*runs, result.summary]
    with atomic_folder(out) as staging:
        result.dataset.write(staging)
        manifest = write_manifest(staging, result.dataset, previous)
        result.state.write(staging)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))
        _nonempty_concat(quarantine).to_csv(staging / QUARANTINE_FILE, index=False)
        runs_dir = staging / RUNS_FOLDER
        if appending and (out / RUNS_FOLDER).is_dir():
            shutil.copytree(out / RUNS_FOLDER, runs_dir)
        runs_dir.mkdir(exist_ok=True)
        (runs_dir / f"run-{run:04d}.json").write_text(
            json.dumps({"summary": result.summary, "files": result.report}, indent=2, default=str)
        )
        result.quarantine.to_csv(runs_dir / f"run-{run:04d}-quarantine.csv", index=False)
    return manifest


def _nonempty_concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled, ignore_index=True) if filled else frames[-1]
