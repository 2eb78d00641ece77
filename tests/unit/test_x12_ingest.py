"""Ingest: malformed files are quarantined with a reason while good files still load; messy but
equivalent inputs are normalised; remittances without a claim are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.identity import patient_key
from features.x12 import ingest_paths, write_835, write_837p
from features.x12.normalise import normalise_text
from tests.unit.test_x12_roundtrip import make_dataset


@pytest.fixture
def good_files(tmp_path: Path) -> list[Path]:
    dataset = make_dataset()
    return write_837p(dataset, tmp_path / "good") + write_835(dataset, tmp_path / "good")


def _claim_file(good_files: list[Path]) -> Path:
    return next(p for p in good_files if p.suffix == ".837")


def test_bad_files_are_quarantined_and_the_rest_still_load(
    tmp_path: Path, good_files: list[Path]
) -> None:
    text = _claim_file(good_files).read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "old_version.837").write_text(text.replace("005010X222A1", "004010X098A1"))
    (bad / "truncated.837").write_text(text[: text.index("LX*1~") + 5])
    (bad / "garbage.837").write_bytes(b"\x00\x01 this is not an X12 file at all")
    result = ingest_paths([tmp_path / "good", bad], workers=2)

    assert sorted(result.dataset.claims["claim_id"]) == ["C1", "C2", "C3"]
    assert len(result.dataset.remittances) == 3
    reasons = result.quarantine.set_index(result.quarantine["file"].map(lambda f: Path(f).name))
    version = reasons.loc["old_version.837", "reason"]
    assert "'004010X098A1'" in version and "re-export the file as 5010" in version
    truncated = reasons.loc[["truncated.837"], "reason"]
    assert truncated.str.contains("not closed by SE; the file is truncated").all()
    assert "C1" in set(reasons.loc[["truncated.837"], "claim_id"])
    assert "not an X12 file" in reasons.loc["garbage.837", "reason"]
    report = {Path(k).name: v for k, v in result.report.items()}
    assert report["truncated.837"]["claims_quarantined"] == report["truncated.837"]["claims_read"]
    assert report["old_version.837"]["versions_seen"] == ["004010X098A1"]


def test_every_claim_of_a_file_rejected_whole_is_counted(
    tmp_path: Path, good_files: list[Path]
) -> None:
    # Issue 20: the claims of files rejected whole were counted nowhere, so the report's
    # ingested and quarantined claims did not add up to what the files held.
    text = _claim_file(good_files).read_text()
    held = text.count("~CLM*")
    assert held == 3
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "old_version.837").write_text(text.replace("005010X222A1", "004010X098A1"))
    (bad / "terminator.837").write_text(text.replace("~", ""))  # no segment terminator
    result = ingest_paths([tmp_path / "good", bad], workers=1)
    report = {Path(k).name: v for k, v in result.report.items()}
    for name in ("old_version.837", "terminator.837"):
        assert report[name]["claims_read"] == held, name
        assert report[name]["claims_quarantined"] == held and report[name]["claims_ingested"] == 0
    files = [v for k, v in report.items() if not k.startswith("_")]
    assert sum(v["claims_read"] for v in files) == 3 * held
    assert sum(v["claims_ingested"] + v["claims_quarantined"] for v in files) == 3 * held


def _after_isa(text: str, rest: str) -> str:
    """The ISA as written (ending with '~'), then ``rest`` in place of everything after it."""
    return text[: text.index("~") + 1] + rest


@pytest.mark.parametrize(
    ("mutate", "cause"),
    [
        # Issue 20: each was refused as "GS08 version '005010X222A1|ST' is not a 5010 837P", or
        # "the GS segment is incomplete", or read as truncated, or (a CLM run into the segment
        # before it) lost one claim without a word.
        (lambda t: _after_isa(t, t[t.index("~") + 1 :].replace("~", "|")), "found '|' before "
         "segment 3 (ST)"),
        (lambda t: _after_isa(t, t[t.index("~") + 1 :].replace("~", "\n")), "found a line break "
         "before segment 3 (ST)"),
        (lambda t: t[: t.index("~")] + "!" + t[t.index("~") + 1 :], "segment terminator '!' "
         "expected after each segment (the ISA sets it after ISA16), found '~' before segment 3"),
        (lambda t: t.replace("~", ""), "segment terminator expected after the ISA segment (the "
         "character after ISA16), found 'G'"),
        (lambda t: t[: len(t) // 2] + t[len(t) // 2 :].replace("~", "!"), "found '!' before "
         "segment"),
        (lambda t: t.replace("~CLM", "CLM", 1), "found none before segment 20 (CLM)"),
        (lambda t: t[: t.index("~")] + "\r\n" + t[t.index("~") + 1 :], "segment terminator "
         "(a line break) expected after each segment (the ISA sets it after ISA16), found '~'"),
    ],
    ids=["pipe", "newline", "isa-bang", "none", "changes-midway", "one-missing", "crlf-isa"],
)  # fmt: skip
def test_a_wrong_segment_terminator_is_named_and_every_claim_counted(
    tmp_path: Path, good_files: list[Path], mutate, cause: str
) -> None:
    text = _claim_file(good_files).read_text()
    path = tmp_path / "bad.837"
    path.write_text(mutate(text))
    result = ingest_paths([path], workers=1)
    reasons = list(result.quarantine["reason"])
    assert any("segment terminator" in r and cause in r for r in reasons), reasons
    assert not any("GS08" in r or "incomplete" in r or "truncated" in r for r in reasons)
    entry = result.report[str(path)]
    assert entry["claims_read"] == 3
    assert entry["claims_ingested"] + entry["claims_quarantined"] == 3
    assert entry["claims_ingested"] == len(result.dataset.claims)


def test_a_transaction_set_not_closed_before_the_next_st_quarantines_its_claims(
    tmp_path: Path, good_files: list[Path]
) -> None:
    # Found beside the fuzzing (issue 20): an ST before the open set's SE dropped the open set's
    # claims; they were counted as read and quarantined, with no reason anywhere.
    text = _claim_file(good_files).read_text()
    at = text.index("CLM*C2")
    path = tmp_path / "st_twice.837"
    path.write_text(text[:at] + "ST*837*0002*005010X222A1~" + text[at:])
    result = ingest_paths([path], workers=1, validation="envelope")
    reasons = result.quarantine.set_index("claim_id")["reason"]
    for claim_id in ("C1", "C3"):  # the claims before the second ST
        assert "ST02=0001 (segment 3) is not closed by SE before the next ST" in reasons[claim_id]
    entry = result.report[str(path)]
    assert entry["claims_read"] == 3 and entry["claims_quarantined"] == 3


def test_claims_outside_a_transaction_set_are_quarantined_with_a_reason(
    tmp_path: Path, good_files: list[Path]
) -> None:
    # Two claims after the SE, before the GE: the first was counted as read, then dropped with
    # the segments around it, and the reason spoke of one claim only.
    text = _claim_file(good_files).read_text()
    claim = text[text.index("CLM*C2") : text.index("~SE*") + 1]
    se = text[text.index("~SE*") + 1 :].split("~", 1)[0] + "~"
    path = tmp_path / "outside.837"
    path.write_text(text.replace(se, se + claim + claim.replace("CLM*C2", "CLM*C9")))
    result = ingest_paths([path], workers=1, validation="envelope")
    entry = result.report[str(path)]
    counts = [entry[f"claims_{n}"] for n in ("read", "ingested", "quarantined")]
    assert counts == [5, 3, 2]
    assert entry["quarantine_reasons"] == [
        "File outside.837: 2 of its 5 CLM segments could not be read as claims (a segment run "
        "into the one before it, or outside a transaction set); ask the sender to re-export the "
        "file"
    ]


def test_an_oversized_element_quarantines_only_what_holds_it(
    tmp_path: Path, good_files: list[Path]
) -> None:
    # Found by the fuzzing (issue 20): pyx12 stops reading, without a word, at a segment whose
    # end it cannot find within 8 KB, so a 70 KB element read as a truncated file and every
    # claim after it was lost. Now the element is cut and the claim (or remittance, or the set,
    # for a segment outside both) holding it is quarantined, saying so.
    text = _claim_file(good_files).read_text()
    claims = tmp_path / "claims.837"
    claims.write_text(text.replace("REF*G1*AUTH123", "REF*G1*" + "9" * 70_000))
    header = tmp_path / "header.837"
    header.write_text(text.replace("BILLING OFFICE", "B" * 70_000))
    remit_path = next(p for p in good_files if p.suffix == ".835")
    remit = remit_path.read_text()
    cas = remit[remit.index("CAS*") :].split("~", 1)[0]
    remits = tmp_path / "remits.835"
    other = remit.replace("CLP*C", "CLP*X").replace("TRN*1*CHK", "TRN*1*CHX")
    remits.write_text(remit.replace(cas, cas + "*" + "7" * 70_000) + other)
    result = ingest_paths([claims, header, remits], workers=1)
    report = {Path(k).name: v for k, v in result.report.items() if not k.startswith("_")}
    reasons = result.quarantine.groupby(result.quarantine["file"].map(lambda f: Path(f).name))
    assert report["claims.837"]["claims_ingested"] == 2  # C2 and C3
    [(claim_id, why)] = reasons.get_group("claims.837")[["claim_id", "reason"]].values
    assert claim_id == "C1" and "the REF segment is 70,007 characters long" in why
    assert report["header.837"]["claims_quarantined"] == 3  # its billing provider's loop
    assert reasons.get_group("header.837")["reason"].str.contains("PER segment is 70,").all()
    assert report["remits.835"]["remittances_ingested"] == 1  # the other payment
    assert report["remits.835"]["remittances_quarantined"] == 1
    assert "the CAS segment is 70," in reasons.get_group("remits.835")["reason"].iloc[0]
    assert "truncated" not in " ".join(result.quarantine["reason"])


def test_a_set_without_its_se_says_why_not_truncated(
    tmp_path: Path, good_files: list[Path]
) -> None:
    # Issue 20: a file whose SE was missing, or hidden by binary junk, was said to be truncated.
    text = _claim_file(good_files).read_text()
    se = text[text.index("~SE*") + 1 :].split("~", 1)[0] + "~"
    (tmp_path / "no_se.837").write_text(text.replace(se, ""))
    raw = text.encode("utf-16")
    at = len(raw) // 2 | 1  # an odd offset: the rest no longer decodes as it was written
    (tmp_path / "junk.837").write_bytes(raw[:at] + b"\x07" + raw[at:])
    (tmp_path / "cut.837").write_text(text[: text.index(se) - 40])
    result = ingest_paths([tmp_path], workers=1, validation="envelope")
    reasons = result.quarantine.groupby(result.quarantine["file"].map(lambda f: Path(f).name))
    said = {name: " ".join(group["reason"]) for name, group in reasons}
    assert "is not closed by SE: its SE is missing (the file goes on to IEA" in said["no_se.837"]
    assert "cannot be read past SV1 at segment 30, what follows is not X12" in said["junk.837"]
    assert "is not closed by SE; the file is truncated" in said["cut.837"]
    assert "truncated" not in said["no_se.837"] + said["junk.837"]


def test_a_patient_key_takes_any_character_a_damaged_file_holds() -> None:
    # Found by the fuzzing (issue 20, seed 2513): a DMG03 sex of 'Ê' raised UnicodeEncodeError
    # out of ingest. Keys of ASCII names, dates and sexes are what they were.
    key = patient_key("JONES", "SARAH", "19700601", "Ê")
    assert key == patient_key("JONES", "SARAH", "19700601", "E")
    assert patient_key("JONES", "SARAH", "1970\u00b20601", "F") is not None
    assert patient_key("JONES", "SARAH", "19700601", "F") == "a2f9521744faf45d"  # as before


def _resent(text: str) -> str:
    """The same interchange sent again: new ISA13, GS06 and ST02 control numbers, a new ISA
    date, line breaks after each segment."""
    isa = text[: text.index("~")]
    new_isa = isa.replace("*000000001*", "*000000042*").replace("*0000*^", "*0930*^")
    body = text[len(isa) :].replace("IEA*1*000000001", "IEA*1*000000042")
    body = body.replace("*1*X*", "*42*X*").replace("GE*1*1~", "GE*1*42~")
    body = body.replace("ST*835*0001", "ST*835*0042").replace("*0001~", "*0042~")
    body = body.replace("ST*837*0001", "ST*837*0042")
    return (new_isa + body).replace("~", "~\r\n")


def test_the_same_remittance_or_claim_batch_twice_is_read_once(
    tmp_path: Path, good_files: list[Path]
) -> None:
    # Issue 20: an 835 found in two folders was counted as two remittances (and an 837 sent
    # twice quarantined every claim as a repeated CLM01). A payer re-sending a remittance must
    # not double its outcomes: the copy is read once and counted as a duplicate.
    again = tmp_path / "again"
    again.mkdir()
    for path in good_files:
        (again / path.name).write_bytes(path.read_bytes())  # byte-identical, another folder
    remit_path = next(p for p in good_files if p.suffix == ".835")
    remit = remit_path.read_text()
    (again / "resent.835").write_text(_resent(remit))
    (again / "twice.835").write_text(remit + remit)  # one file holding it twice
    (again / "resent.837").write_text(_resent(_claim_file(good_files).read_text()))
    new_payment = remit.replace("TRN*1*CHK000000001", "TRN*1*CHK000000002")
    (again / "new_payment.835").write_text(new_payment)  # another payment: not a duplicate
    result = ingest_paths([tmp_path / "good", again], workers=2)

    assert sorted(result.dataset.claims["claim_id"]) == ["C1", "C2", "C3"]
    remits = result.dataset.remittances
    assert len(remits) == 4  # three payments, and the one with another trace number
    assert remits["claim_id"].value_counts().max() == 2
    assert result.quarantine.empty, result.quarantine["reason"].tolist()
    report = {Path(k).relative_to(tmp_path).as_posix(): v for k, v in result.report.items()
              if not k.startswith("_")}  # fmt: skip
    for name, duplicates in [("resent.835", 1), ("twice.835", 2), (remit_path.name, 1)]:
        entry = report[f"again/{name}"]
        assert entry["remittances_duplicate"] == duplicates, name
        assert entry["remittances_ingested"] == entry["remittances_quarantined"] == 0
        assert all(f"repeats {remit_path} " in d for d in entry["duplicate_of"]), name
    assert report["again/new_payment.835"]["remittances_ingested"] == 1
    for name in ("resent.837", "claims_00001.837"):
        assert report[f"again/{name}"]["claims_duplicate"] == 3
        assert report[f"again/{name}"]["claims_quarantined"] == 0
    for unit in ("claims", "remittances"):
        read = sum(v[f"{unit}_read"] for v in report.values())
        parts = ("ingested", "quarantined", "duplicate")
        assert read == sum(v[f"{unit}_{p}"] for v in report.values() for p in parts)
    assert sum(v["remittances_ingested"] for v in report.values()) == len(remits)


def test_bom_indentation_newlines_and_errata_versions_are_normalised(
    tmp_path: Path, good_files: list[Path]
) -> None:
    text = _claim_file(good_files).read_text()
    messy = text.replace("005010X222A1", "005010X222A2").replace("~", "~\r\n    ")
    path = tmp_path / "messy.837"
    path.write_bytes(b"\xef\xbb\xbf" + messy.encode())
    result = ingest_paths([path], workers=1)
    assert sorted(result.dataset.claims["claim_id"]) == ["C1", "C2", "C3"]
    notes = result.report[str(path)]["notes"]
    assert any("byte-order mark" in n for n in notes)
    assert any("'005010X222A2' read as '005010X222A1'" in n for n in notes)


def test_wrong_se_count_is_a_warning_and_the_data_is_kept(
    tmp_path: Path, good_files: list[Path]
) -> None:
    text = _claim_file(good_files).read_text()
    se = text[text.index("SE*") :].split("~", 1)[0]
    path = tmp_path / "bad_count.837"
    path.write_text(text.replace(se, "SE*3*0001"))
    result = ingest_paths([path], workers=1)
    assert len(result.dataset.claims) == 3 and result.quarantine.empty
    assert result.report[str(path)]["pyx12_warnings"] >= 1


def test_missing_envelope_is_wrapped() -> None:
    body = (
        "ST*835*1234~BPR*I*10*C*CHK************20240105~TRN*1*1*1999999999~N1*PR*PLAN~"
        "N1*PE*PAYEE*XX*1234567893~LX*1~CLP*A1*1*10*10**12*PCN1~SVC*HC:99213*10*10**1~"
        "SE*10*1234~"
    )
    norm = normalise_text(body, "bare.835")
    assert norm.reason is None and norm.kinds == ["835"]
    assert any("synthetic 5010 envelope" in n for n in norm.notes)


def test_utf16_file_is_decoded(tmp_path: Path, good_files: list[Path]) -> None:
    path = tmp_path / "wide.837"
    path.write_bytes(_claim_file(good_files).read_text().encode("utf-16"))
    result = ingest_paths([path], workers=1)
    assert len(result.dataset.claims) == 3
    assert any("UTF-16" in n for n in result.report[str(path)]["notes"])


def test_unmatched_remittances_are_reported_not_dropped(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.claims = dataset.claims[dataset.claims["claim_id"] != "C3"]
    dataset.lines = dataset.lines[dataset.lines["claim_id"] != "C3"]
    paths = write_837p(dataset, tmp_path) + write_835(dataset, tmp_path)
    result = ingest_paths(paths, workers=1)
    linking = result.report["_linking"]
    assert linking["unmatched_remittance_claim_ids"] == ["C3"]
    assert linking["unmatched_remittances"] == 1
    assert "C3" in set(result.dataset.remittances["claim_id"])


def test_quarantine_reasons_never_carry_member_ids(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.claims.loc[0, "payer_id"] = ""  # a claim the reader must refuse
    paths = write_837p(dataset, tmp_path)
    result = ingest_paths(paths, workers=1)
    assert "C1" in set(result.quarantine["claim_id"])
    text = " ".join(result.quarantine["reason"]) + str(result.report)
    assert "MBR0001" not in text and "19700601" not in text
