"""Logging a pipeline to MLflow: the file format, the signature, and no second scoring pass.

The pipeline here is a small fitted scikit-learn one and ``predict_frame`` is replaced by a
scorer that counts its calls: these tests are about what the registry writes and how often it
runs the model, not about the model (the integration tests score the real one).
"""

from __future__ import annotations

from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from features.claim_tables import ClaimTables
from tests.utils.factories import make_claim, make_whole_claim, tables_from
from training import registry

MODEL_NAME = "denial-risk-test"


def small_fitted_pipeline() -> Pipeline:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(
        x, [0, 0, 1, 1]
    )


class CountingScorer:
    """Stands in for ``predict_frame``: one score row per claim, and a count of the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pipeline: Pipeline, tables: ClaimTables) -> pd.DataFrame:
        self.calls += 1
        ids = tables.claims["claim_id"].to_numpy()
        return pd.DataFrame(
            {"claim_id": ids, "denial_probability": 0.25, "likely_reason": "authorization"}
        )


@pytest.fixture
def scorer(monkeypatch: pytest.MonkeyPatch) -> CountingScorer:
    counting = CountingScorer()
    monkeypatch.setattr(registry, "predict_frame", counting)
    # The small pipeline has no history to keep apart from it (test_history_store.py tests
    # that with the real one).
    monkeypatch.setattr(registry, "without_history", lambda pipeline: pipeline)
    monkeypatch.setattr(registry.DenialRiskPyfunc, "_with_history", lambda self: self.pipeline)
    return counting


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry.configure(uri, create=True)
    # Artifacts under tmp_path too, not in an ./mlruns beside wherever pytest runs.
    experiment = mlflow.create_experiment("logging", artifact_location=(tmp_path / "a").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    return uri


def example_tables() -> ClaimTables:
    return tables_from(
        [
            make_claim(prior_auth_number="A123"),
            make_claim(payer_type="medicare", rendering_npi=None),
            make_claim(lines=[{"procedure_code": "70553", "line_charge": 900.0, "units": 1}]),
        ]
    )


def test_pipeline_file_round_trips(tmp_path: Path) -> None:
    pipeline = small_fitted_pipeline()
    path = registry.save_pipeline_file(pipeline, tmp_path / registry.PIPELINE_FILE)
    loaded = registry.load_pipeline_file(path)
    x = np.array([[1.5, 0.0], [0.5, 1.0]])
    np.testing.assert_array_equal(loaded.predict_proba(x), pipeline.predict_proba(x))


def test_pipeline_files_of_older_versions_still_load(tmp_path: Path) -> None:
    # Versions logged before the zstd pickle hold a joblib file; an old champion must still load.
    pipeline = small_fitted_pipeline()
    joblib.dump(pipeline, tmp_path / "pipeline.joblib", compress=3)
    loaded = registry.load_pipeline_file(tmp_path / "pipeline.joblib")
    x = np.array([[1.5, 0.0]])
    np.testing.assert_array_equal(loaded.predict_proba(x), pipeline.predict_proba(x))


def test_signature_requires_only_the_fields_every_claim_has() -> None:
    example_input = registry.json_safe(example_tables().to_flat_lines())
    example_output = pd.DataFrame({"claim_id": ["C1"], "denial_probability": [0.3]})
    signature = registry.serving_signature(example_input, example_output)
    required = {c.name for c in signature.inputs.inputs if c.required}
    assert required == registry.REQUIRED_INPUT_COLUMNS
    assert "rendering_npi" in signature.inputs.input_names()
    assert signature.outputs.input_names() == ["claim_id", "denial_probability"]


def test_logged_version_scores_its_example_once_and_loads_back(
    scorer: CountingScorer, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loads: list[str] = []
    load_context = registry.DenialRiskPyfunc.load_context

    def counting_load_context(self: registry.DenialRiskPyfunc, context: object) -> None:
        loads.append("load")
        load_context(self, context)

    monkeypatch.setattr(registry.DenialRiskPyfunc, "load_context", counting_load_context)
    pipeline = small_fitted_pipeline()

    with mlflow.start_run() as run:
        model_uri = registry.log_pipeline(pipeline, example_tables(), tmp_path)
    client = mlflow.MlflowClient()
    version = registry.register_version(client, MODEL_NAME, model_uri, "card")

    # Scored once in memory for the signature; MLflow did not unpickle it to score it again.
    assert (scorer.calls, loads) == (1, [])
    assert version == "1"
    registered = client.get_model_version(MODEL_NAME, version)
    assert (registered.run_id, registered.description) == (run.info.run_id, "card")
    assert registry.incomplete_reason(client, MODEL_NAME, version) is None

    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    assert loads == ["load"]
    metadata = pyfunc.metadata
    assert metadata.saved_input_example_info["type"] == "dataframe"
    assert metadata.get_output_schema().input_names() == [
        "claim_id",
        "denial_probability",
        "likely_reason",
    ]
    assert {c.name for c in metadata.get_input_schema().inputs if c.required} == (
        registry.REQUIRED_INPUT_COLUMNS
    )
    artifacts = metadata.flavors["python_function"]["artifacts"]
    assert artifacts["pipeline"]["path"].endswith(registry.PIPELINE_FILE)

    scores = pyfunc.predict(pyfunc.input_example)
    assert len(scores) == 3 and (scores["denial_probability"] == 0.25).all()

    reloaded = registry.load_pipeline(model_uri)
    x = np.array([[1.5, 0.0]])
    np.testing.assert_array_equal(reloaded.predict_proba(x), pipeline.predict_proba(x))


def test_a_missing_sqlite_registry_is_refused_outside_training(tmp_path: Path) -> None:
    # Issue 20: a mistyped tracking path silently created a new, empty registry.
    from typer.testing import CliRunner

    from denial_risk.cli import app

    missing = tmp_path / "typo" / "mlfow.db"
    with pytest.raises(registry.RegistryNotFound, match="no model registry at"):
        registry.configure(f"sqlite:///{missing}")
    for command in (["models"], ["promote", "1"], ["rollback"]):
        result = CliRunner().invoke(app, [*command, "--tracking-uri", f"sqlite:///{missing}"])
        assert result.exit_code != 0, command
        assert "no model registry at" in " ".join(result.output.split()), command
    assert not missing.exists() and not missing.parent.exists()
    registry.configure(f"sqlite:///{missing}", create=True)  # training makes one
    assert missing.parent.is_dir()


def test_the_logged_input_example_names_no_patient_and_still_scores(
    scorer: CountingScorer, tracking_uri: str, tmp_path: Path
) -> None:
    """The input example is three real claims of the test period: MLflow shows it to whoever
    reads the registry, so it is logged de-identified (it held member IDs, birth dates, group
    numbers and notes of real patients)."""
    patient = {
        "patient_id": "QZMEMBER0417",
        "patient_birth_date": "1931-04-17",
        "patient_key": "QZKEY-ZANZIBARQUUX",
        "subscriber_group_number": "QZGROUP-77",
    }
    tables = tables_from(
        [
            make_whole_claim(**patient, claim_note="ZANZIBARQUUX called about her bill"),
            make_whole_claim(
                **patient,
                original_payer_claim_number="QZPAYERCLAIM9",
                prior_auth_number="QZAUTH-1",
                referral_number="QZREF-1",
            ),
            make_claim(patient_id="QZMEMBER0999", patient_birth_date="1931-04-18"),
        ]
    )
    identifying = {
        f"{value:%Y-%m-%d}" if isinstance(value, pd.Timestamp) else str(value)
        for frame in (tables.claims, tables.lines)
        for column in frame.columns
        if column in registry.EXAMPLE_PLACEHOLDERS
        or pd.api.types.is_datetime64_any_dtype(frame[column])
        for value in frame[column].dropna()
    }
    assert {"QZMEMBER0417", "1931-04-17", "given in clinic", "2025-03-03"} <= identifying

    with mlflow.start_run():
        model_uri = registry.log_pipeline(small_fitted_pipeline(), tables, tmp_path)
    files = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl")))
    for name in ("input_example.json", "serving_input_example.json"):
        text = (files / name).read_text()
        assert not [value for value in identifying if value in text], name
        assert "MEMBER-1" in text, name

    example = mlflow.pyfunc.load_model(model_uri).input_example
    scored, rejects = ClaimTables.from_flat_lines(example)
    assert (len(scored), len(rejects)) == (3, 0)
    # The same patient is the same placeholder; every claim keeps its lines and diagnoses.
    assert scored.claims["patient_id"].tolist() == ["MEMBER-1", "MEMBER-1", "MEMBER-2"]
    assert scored.lines.groupby("claim_id").size().tolist() == [2, 2, 1]
    assert scored.diagnoses.groupby("claim_id").size().tolist() == [2, 2, 1]
    assert set(scored.claims["patient_birth_date"]) == {registry.EXAMPLE_BIRTH_DATE}
    assert scored.claims["submission_date"].min() == registry.EXAMPLE_FIRST_SUBMISSION
