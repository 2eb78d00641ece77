"""A PHI scan of everything the product writes or says (issue 20).

A small simulated practice's 837 and 835 files get distinctive markers wherever a patient is
identified (:mod:`tests.utils.phi`: names, street and city, member IDs in both the 837s and the
835s, group numbers, one birth date), and a few of them are damaged where those markers are, so
that error and quarantine paths speak. Then the product is used as a billing team would:
``ingest`` (a sample with full validation, the whole history with envelope validation),
``train`` into a sqlite registry, ``score`` of later 837 files and of a claim-lines CSV with bad
rows, ``worklist``, and ``serve`` (a real process) answering good and bad requests on every
route that takes claims or denials.

Every console output, log record (MLflow's loggers too), line written to file descriptors 1
and 2 (child processes too), warning, server log line, response body and headers (metric
labels among them) and every file written under the test's folder (reports, quarantine and
rejects files, scores, the worklist, the model card and plots, MLflow's sqlite database as raw
bytes, its artifact store with the logged model's ``MLmodel``, input examples and the pipeline
pickle decompressed, the server's local copy of the model) is searched for each marker. The
failure names each place and marker found.

Left out, on purpose: the input files, and the data set's own tables (``claims.parquet``,
``remittances.parquet``... of an ingested data set), which hold member IDs and birth dates by
design: history features key on them. They are read here only to prove the markers reached
the product.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_risk.cli import app
from features.schema import SCHEMAS
from tests.utils import phi
from tests.utils.factories import make_claim, make_whole_claim
from tests.utils.servers import serve_command, wait_until_answered

pytestmark = pytest.mark.integration

CLAIMS, SEED = 2_500, 3
CUT = "20251001"
"""837s sent and 835s paid before this day are the practice's history; later 837s are scored."""
KEY = "phi-scan-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
MEMBER = phi.MEMBER_PREFIX + "0417"


def test_nothing_the_product_writes_or_says_holds_a_planted_identifier(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    recwarn: pytest.WarningsRecorder,
) -> None:
    # What the product writes beside its working directory (MLflow's ./mlruns artifact store,
    # the server's models/last-good copy) lands here and is scanned too. A wide console: a
    # table cell folded over two lines would hide a marker from the scan, not from a reader.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "1000")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.WARNING, logger="httpx")  # the test's own client, not the product
    for ours in ("denial_risk", "features", "serving", "simulator", "training"):
        caplog.set_level(logging.DEBUG, logger=ours)
    _hear_loggers_that_do_not_propagate(caplog, monkeypatch)
    said: dict[str, str] = {}
    inputs = tmp_path / "inputs"
    tracking = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]

    # 1. A practice's files, with the markers planted, split at a date; some damaged.
    run(said, ["simulate", "--claims", str(CLAIMS), "--seed", str(SEED), "--x12",
               "--out", str(inputs / "sim")])  # fmt: skip
    history, later = inputs / "history", inputs / "later"
    counts = phi.split_planted(inputs / "sim" / "x12", CUT, history, later)
    assert min(counts.values()) > 10, counts
    claim_files, remit_files = sorted(history.glob("*.837")), sorted(history.glob("*.835"))
    phi.garble(claim_files[-1])
    phi.truncate(remit_files[-1])
    # Files of several claims first: the damaged one keeps a claim to score.
    later_files = sorted(sorted(later.glob("*.837")), key=lambda f: f.read_text().count("CLM*") < 2)
    phi.garble(later_files[0])
    sample, to_score = inputs / "sample", inputs / "to-score"
    for folder, files in ((sample, [*claim_files[-4:], *remit_files[-6:]]),
                          (to_score, later_files[:5])):  # fmt: skip
        folder.mkdir()
        for path in files:
            shutil.copy(path, folder)
    lines_csv = _claim_lines_with_bad_rows(later_files[5:15], inputs / "claim-lines.csv")

    # 2. Ingest, train, score, worklist, serve: as a billing team runs them.
    # pyx12's full validation takes ~0.4 s a file of a few claims here: a sample of files has
    # it (the damaged ones among them), the whole history is read with envelope validation.
    run(said, ["ingest", str(sample), "--out", "ingested-full", "--validation", "full",
               "--workers", "1"], "ingest --validation full")  # fmt: skip
    # The damaged files spoke: pyx12's findings, a claim and a remittance quarantined.
    report = json.loads(Path("ingested-full/ingest-report.json").read_text())
    garbled = report[str(sample / claim_files[-1].name)]
    assert garbled["pyx12_messages"] and garbled["claims_quarantined"] == 1, garbled
    assert report[str(sample / remit_files[-1].name)]["remittances_quarantined"] >= 1
    run(said, ["ingest", str(history), "--out", "ingested", "--validation", "envelope"])
    ingested = pd.read_parquet("ingested/claims.parquet")
    # The markers reached the data set (whose tables the scan leaves out), as Parquet holds them.
    assert ingested["patient_id"].str.startswith(phi.MEMBER_PREFIX).all()
    assert "birth date (ISO)" in phi.found_markers(ingested.to_csv())
    run(said, ["train", "ingested", "--out", "train", *tracking])

    env = {**os.environ, "DENIAL_RISK_API_KEYS": json.dumps([KEY]),
           "DENIAL_RISK_LOG_LEVEL": "info"}  # fmt: skip
    options = ["--model", "models:/denial-risk@champion", *tracking]
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with serve_command(options, env, tmp_path, out, err) as (server, url):
        # It starts and loads the model while the batch commands run.
        run(said, ["score", str(to_score), "--out", "scores/scores.csv", *tracking], "score 837")
        run(said, ["score", str(lines_csv), "--out", "scores/lines.csv", *tracking], "score CSV")
        assert len(pd.read_csv("scores/lines-rejects.csv")) >= 2
        run(said, ["worklist", "ingested", "--out", "worklist/worklist.csv", *tracking])
        wait_until_answered(server, f"{url}/ready")
        for name, answer in _requests(url, later_files).items():
            said[f"response to {name}"] = f"{answer.status_code} {answer.headers}\n{answer.text}"
    assert server.returncode in (0, -signal.SIGTERM), server.returncode
    said["serve stdout"], said["serve stderr"] = out.read_text(), err.read_text()
    assert '"status": 404' in said["serve stdout"]  # the request log was heard

    # 3. Scan what was said and what was written.
    said["log records"] = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    assert any(r.name.startswith("mlflow") for r in caplog.records)  # its own handler heard
    captured = capfd.readouterr()
    said["file descriptors 1 and 2"] = captured.out + captured.err
    said["warnings"] = "\n".join(f"{w.category.__name__}: {w.message}" for w in recwarn)
    found = [(where, marker) for where, text in said.items() for marker in phi.found_markers(text)]
    written = _written(tmp_path, inputs)
    expected = {"mlflow.db", "MLmodel", "input_example.json", "serving_input_example.json",
                "pipeline.pkl.zst", "model_card.md", "ingest-report.json", "quarantine.csv",
                "lines-rejects.csv", "scores.csv", "worklist.html"}  # fmt: skip
    assert expected <= {path.name for path in written}
    assert [path for path in written if "last-good" in path.parts]  # the server's local copy
    found.extend(phi.scan_files(written, tmp_path))
    assert not found, "patient identifiers found:\n" + "\n".join(
        f"  {where}: {marker}" for where, marker in found
    )


def _hear_loggers_that_do_not_propagate(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """caplog listens at the root logger: MLflow's loggers print through their own handler."""
    import mlflow  # noqa: F401  (configures its loggers as the product's first use would)

    for logger in list(logging.root.manager.loggerDict.values()):
        if (
            isinstance(logger, logging.Logger)
            and not logger.propagate
            # pyx12's NullHandler: ingest silences it on purpose (its lines quote segments).
            and any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
        ):
            monkeypatch.setattr(logger, "handlers", [*logger.handlers, caplog.handler])


def run(said: dict[str, str], args: list[str], name: str | None = None) -> None:
    """``denial-risk ARGS`` in this process, as the console script runs it; its output kept
    under ``name`` (the sub-command by default)."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{args}:\n{result.output}"
    said[f"`{name or args[0]}` stdout"] = result.stdout
    said[f"`{name or args[0]}` stderr"] = result.stderr


def _claim_lines_with_bad_rows(files: list[Path], out: Path) -> Path:
    """The claims of ``files`` as a claim-lines CSV (a practice-management export), one claim
    with a control character in its member ID and one with a birth date no calendar has."""
    from features.claim_tables import ClaimTables
    from features.x12.ingest import ingest_paths

    dataset = ingest_paths(files, workers=1, validation="envelope").dataset
    flat = ClaimTables.from_dataset(dataset).to_flat_lines().astype(object)
    first, second = flat["claim_id"].drop_duplicates().iloc[:2]
    flat.loc[flat["claim_id"] == first, "patient_id"] = f"{MEMBER}\t"
    flat.loc[flat["claim_id"] == second, "patient_birth_date"] = "1931-04-31"
    flat.to_csv(out, index=False)
    return out


def _requests(url: str, later_files: list[Path]) -> dict[str, httpx.Response]:
    """Every route that takes claims or denials, with good and bad bodies holding the markers;
    then what an operator reads. Each answer is checked to be the one the request asks for."""
    person: dict[str, Any] = {
        "patient_id": MEMBER,
        "patient_birth_date": "1931-04-17",
        "patient_key": f"{phi.LAST_NAME}-{phi.FIRST_NAME}",
        "subscriber_group_number": phi.GROUP_PREFIX + "77",
    }
    good = make_whole_claim(
        **person, claim_note=f"{phi.LAST_NAME} {phi.FIRST_NAME}, {phi.STREET}, {phi.CITY}"
    )
    bad = [
        make_claim(**{**person, "patient_birth_date": "1931-04-31"}),
        make_claim(
            **person,
            patient_name=f"{phi.LAST_NAME} {phi.FIRST_NAME}",
            patient_address=f"{phi.STREET}, {phi.CITY}",
        ),
        make_claim(**{**person, "patient_id": f" {MEMBER}\t"}),
        make_claim(**{**person, "patient_id": MEMBER * 10}),
        make_claim(**{**person, "subscriber_group_number": phi.GROUP_PREFIX + "9" * 50}),
        make_claim(**person, claim_note=f"{phi.LAST_NAME} " * 20),
    ]
    denial = {
        "claim_id": "PCN000000001", "payer_id": "87716", "carc": "27", "group_code": "CO",
        "denial_date": "2025-09-20", "service_date": "2025-09-01", "denied_amount": 230.0,
    }  # fmt: skip
    bad_denials = [
        {**denial, "patient_id": MEMBER, "patient_name": phi.LAST_NAME},
        {**denial, "kind": "rejection", "carc": None, "group_code": None,
         "rejection_reason": f"NM109 {MEMBER} {phi.LAST_NAME} {phi.FIRST_NAME} not found"
         + "." * 300},
    ]  # fmt: skip
    x12, body = later_files[1].read_text(), json.dumps({"claims": [good]})
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        answers = {
            "GET /health": client.get("/health", headers={"X-API-Key": ""}),
            "GET /ready": client.get("/ready", headers={"X-API-Key": ""}),
            "POST /v1/claims/score good and bad": client.post(
                "/v1/claims/score", json={"claims": [good, *bad]}, params={"member": MEMBER}
            ),
            "POST /v1/claims/score bad": client.post("/v1/claims/score", json={"claims": bad}),
            "POST /v1/claims/score keyed by member ID": client.post(
                "/v1/claims/score", json={"claims": {MEMBER: good}}
            ),
            "POST /v1/claims/score cut short": client.post(
                "/v1/claims/score",
                content=body[: body.index(MEMBER) + len(MEMBER) + 2],  # in the member ID's field
                headers={"Content-Type": "application/json"},
            ),
            "POST /v1/claims/score-x12": client.post("/v1/claims/score-x12", content=x12),
            "POST /v1/claims/score-x12 damaged": client.post(
                "/v1/claims/score-x12", content=later_files[0].read_text()
            ),
            "POST /v1/claims/score-x12 cut short": client.post(
                "/v1/claims/score-x12", content=x12[: x12.index(phi.LAST_NAME) + 5]
            ),
            "POST /v1/denials/prioritize": client.post(
                "/v1/denials/prioritize",
                json={"denials": [denial, {**denial, "claim_id": "PCN2", "carc": "16"}]},
            ),
            "POST /v1/denials/prioritize bad": client.post(
                "/v1/denials/prioritize", json={"denials": bad_denials}
            ),
            "GET /v1/claims/{member ID}": client.get(f"/v1/claims/{MEMBER}"),
            "GET /v1/model": client.get("/v1/model"),
        }
        answers["GET /metrics"] = client.get("/metrics")  # last: it counts the others
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "GET /health": 200, "GET /ready": 200,
        "POST /v1/claims/score good and bad": 200, "POST /v1/claims/score bad": 422,
        "POST /v1/claims/score keyed by member ID": 422, "POST /v1/claims/score cut short": 422,
        "POST /v1/claims/score-x12": 200, "POST /v1/claims/score-x12 damaged": 200,
        "POST /v1/claims/score-x12 cut short": 422,
        "POST /v1/denials/prioritize": 200, "POST /v1/denials/prioritize bad": 422,
        "GET /v1/claims/{member ID}": 404, "GET /v1/model": 200, "GET /metrics": 200,
    }, {name: answers[name].text[:300] for name in answers}  # fmt: skip
    mixed = answers["POST /v1/claims/score good and bad"].json()
    assert (mixed["scored"], len(mixed["errors"])) == (1, len(bad)), mixed["errors"]
    assert answers["POST /v1/claims/score-x12 damaged"].json()["errors"]
    # Metric labels are route templates, whatever path was asked for.
    routes = set(re.findall(r'route="([^"]*)"', answers["GET /metrics"].text))
    assert "unmatched" in routes and all(r == "unmatched" or r.startswith("/") for r in routes)
    return answers


def _written(root: Path, inputs: Path) -> list[Path]:
    """Every file under ``root`` but the inputs and the data set's own tables."""
    tables = {f"{name}.parquet" for name in SCHEMAS}
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not path.is_relative_to(inputs)
        and not (path.name in tables and (path.parent / "ingest-report.json").exists())
    ]
