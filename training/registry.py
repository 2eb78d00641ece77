"""MLflow tracking and model registry: log, register, gate, promote, roll back, load.

The default store is a local SQLite file (no server needed); any MLflow tracking URI works.
The champion is an alias on a registered model version. Only the promotion step moves it, and
only after a run has finished and passed the gate, so a failed run never changes the champion.
The alias it replaces is remembered in a ``previous_champion`` alias for rollback.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.pyfunc import PyFuncModel, PythonModel
from mlflow.types.schema import ColSpec, Schema
from sklearn.pipeline import Pipeline

from features.atomic import read_pickle, write_pickle
from features.claim_tables import ClaimTables
from training.history_store import load_history
from training.model import predict_frame, with_history_state, without_history

PREVIOUS_ALIAS = "previous_champion"
PIPELINE_FILE = "pipeline.pkl.zst"


class RegistryNotFound(FileNotFoundError):
    """A sqlite registry that does not exist, asked for by a command that only reads one."""


def configure(tracking_uri: str, create: bool = False) -> MlflowClient:
    """Point MLflow at ``tracking_uri`` (tracking and registry) and return a client.

    A sqlite registry is made only with ``create`` (training): for any other command a
    missing file is a mistyped path, and MLflow would silently start an empty registry there
    (issue 20). Raises :class:`RegistryNotFound` then."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not create and not path.exists():
            raise RegistryNotFound(
                f"no model registry at {path}: check --tracking-uri (or MLFLOW_TRACKING_URI); "
                "`denial-risk train` creates one"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def save_pipeline_file(pipeline: Pipeline, path: Path) -> Path:
    """Write the fitted pipeline as a zstd-compressed pickle (see ``write_pickle``)."""
    return write_pickle(pipeline, path)


def load_pipeline_file(path: str | Path) -> Pipeline:
    """Read a pipeline written by :func:`save_pipeline_file`, or a joblib file from a version
    logged before it (so an older champion can still be loaded and compared).

    Like any pickle (and MLflow's own model loading), the file runs code as it loads: it must
    come from this project's training, through a registry or a folder it exported."""
    if str(path).endswith(".zst"):
        pipeline: Pipeline = read_pickle(path)
        return pipeline
    legacy: Pipeline = joblib.load(path)
    return legacy


class DenialRiskPyfunc(PythonModel):
    """MLflow wrapper: flat claim lines in (one row per service line), scores out."""

    def load_context(self, context: Any) -> None:
        self.pipeline: Pipeline = load_pipeline_file(context.artifacts["pipeline"])
        self.history_dataset: str | None = (context.model_config or {}).get(HISTORY_DATASET)
        self._scoring: Pipeline | None = None

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        tables, rejects = ClaimTables.from_flat_lines(model_input)
        if len(tables) == 0:
            raise ValueError(f"no valid claim in the input: {rejects['reason'].head(3).tolist()}")
        return predict_frame(self._with_history(), tables)

    def _with_history(self) -> Pipeline:
        """The pipeline with the history of the data set it names, built on the first call
        (the project's own loading, :mod:`serving.loading`, picks the data set itself)."""
        if self._scoring is None:
            if not self.history_dataset:
                raise ValueError("this model names no history data set to score with")
            features = self.pipeline.named_steps["features"]
            stored = load_history(
                Path(self.history_dataset), features.smoothing, features.prior_rate
            )
            self._scoring = with_history_state(self.pipeline, stored.state)
        return self._scoring


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    # Explicit, so MLflow does not run the model in a subprocess to infer them.
    return [
        f"{name}=={version(name)}"
        for name in ("lightgbm", "pandas", "scikit-learn", "numpy", "pyarrow", "pandera")
    ]


def _save_pyfunc_model(**kwargs: Any) -> None:
    """``mlflow.pyfunc.save_model`` as ``Model.log`` calls it, with ``validate_serving_input``.

    That keyword only tells ``Model.log`` to skip its input-example check; ``Model.log`` passes
    its extra keywords on to the flavor's ``save_model``, and the pyfunc one refuses unknown ones.
    """
    kwargs.pop("validate_serving_input", None)
    mlflow.pyfunc.save_model(**kwargs)


# The pyfunc flavor as Model.log uses it: a namespace with save_model (and the name MLflow records).
_PYFUNC_FLAVOR = SimpleNamespace(__name__="mlflow.pyfunc", save_model=_save_pyfunc_model)


EXAMPLE_PLACEHOLDERS: dict[str, str] = {
    "claim_id": "EXAMPLE-",
    "original_payer_claim_number": "PAYER-CLAIM-",
    "patient_id": "MEMBER-",
    "patient_key": "PATIENT-",
    "subscriber_group_number": "GROUP-",
    "prior_auth_number": "AUTH-",
    "referral_number": "REFERRAL-",
    "claim_note": "NOTE-",
    "line_prior_auth_number": "AUTH-",
    "line_referral_number": "REFERRAL-",
    "line_note": "NOTE-",
}
"""The ``claims`` and ``lines`` columns that identify a patient, a claim or an episode of care
(or are free text that may), and the prefix of the placeholders that replace their values in
the logged input example."""
EXAMPLE_BIRTH_DATE = pd.Timestamp("1970-01-01")
EXAMPLE_FIRST_SUBMISSION = pd.Timestamp("2025-01-06")
"""The example's dates move together so that its first claim was sent on this day."""


def deidentified_example(example: ClaimTables) -> ClaimTables:
    """``example`` as a model's input example may show it to anyone who can read the registry.

    Identifiers (:data:`EXAMPLE_PLACEHOLDERS`) become placeholders (the same value the same
    placeholder, an empty one stays empty, so links between the claims and the signature's
    types are kept); every birth date becomes :data:`EXAMPLE_BIRTH_DATE`, and the other dates
    move by one number of days (the intervals between them, which features use, are kept).
    Codes, amounts, NPIs, payers and states are kept: they make the example realistic, and
    none of them names a patient. The result is still a valid claim batch to score.
    """
    claims, lines, diagnoses = example.claims.copy(), example.lines.copy(), example.diagnoses.copy()
    shift = EXAMPLE_FIRST_SUBMISSION - claims["submission_date"].min().normalize()
    claim_ids = _placeholders(claims["claim_id"], EXAMPLE_PLACEHOLDERS["claim_id"])
    for frame in (claims, lines, diagnoses):
        for column, prefix in EXAMPLE_PLACEHOLDERS.items():
            if column in frame.columns:
                values = frame[column]
                names = claim_ids if column == "claim_id" else _placeholders(values, prefix)
                # Empty values and the column's type stay as they were: the signature's types
                # are inferred from them.
                named = values.map(names).where(values.notna(), values)
                frame[column] = named.astype(values.dtype)
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                frame[column] = frame[column] + shift
    claims["patient_birth_date"] = claims["patient_birth_date"].mask(
        claims["patient_birth_date"].notna(), EXAMPLE_BIRTH_DATE
    )
    return ClaimTables(claims, lines, diagnoses)


def _placeholders(values: pd.Series, prefix: str) -> dict[Any, str]:
    """Each distinct value's placeholder, numbered by first appearance (empty values map to
    nothing, so they stay empty)."""
    return {value: f"{prefix}{i}" for i, value in enumerate(pd.unique(values.dropna()), 1)}


def log_pipeline(pipeline: Pipeline, example: ClaimTables, history_dataset: Path) -> str:
    """Log the fitted pipeline as an MLflow pyfunc model; return its model URI.

    Must run inside an active MLflow run. It is not registered here: see
    :func:`register_version`. ``example`` (a few claims) is logged as the model's input
    example once de-identified (:func:`deidentified_example`). What is logged holds no
    history: scoring builds it from a data set (:mod:`training.history_store`), by default
    ``history_dataset``, the one the model was trained on (:func:`history_dataset_of`).
    """
    # The registry's artifact store is read by whoever can read the models, and an input
    # example is shown in MLflow's UI: real claims would put member IDs and birth dates there.
    example = deidentified_example(example)
    example_input = json_safe(example.to_flat_lines())
    # Scoring the example in memory both derives the output signature and proves that the
    # pipeline scores flat claim lines through the same path the pyfunc uses.
    example_output = predict_frame(pipeline, example)
    signature = serving_signature(example_input, example_output)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_pipeline_file(without_history(pipeline), Path(tmp) / PIPELINE_FILE)
        # Exactly what mlflow.pyfunc.log_model does, minus its check of the input example: that
        # check unpickles the model just written and scores the example again (seconds at a
        # million claims) and can only log a warning. The example was scored above already.
        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=_PYFUNC_FLAVOR,
            python_model=DenialRiskPyfunc(),
            artifacts={"pipeline": str(path)},
            signature=signature,
            input_example=example_input,
            pip_requirements=pip_requirements(),
            model_config={HISTORY_DATASET: str(Path(history_dataset).resolve())},
            validate_serving_input=False,
        )
    return info.model_uri


HISTORY_DATASET = "history_dataset"
"""The model's configuration entry naming the data set it was trained on: where its history is
built from unless the settings name another (the practice's data set, kept current)."""


def history_dataset_of(model: PyFuncModel) -> Path | None:
    """The data set a logged model names as its default history (``None`` for a model logged
    before the history was kept apart from it)."""
    value = (model.model_config or {}).get(HISTORY_DATASET)
    return Path(value) if value else None


def register_version(client: MlflowClient, name: str, model_uri: str, description: str) -> str:
    """Register the model at ``model_uri`` as a new version of ``name``; return the version.

    Called once the training run has ended: a version exists only for a run whose metrics,
    plots, model card and gate verdict are all logged. A training killed before this leaves no
    version; one killed during it leaves a version without its description (issue 20).
    """
    version = str(mlflow.register_model(model_uri, name).version)
    client.update_model_version(name, version, description=description[:4900])
    return version


def serving_signature(example_input: pd.DataFrame, example_output: pd.DataFrame) -> ModelSignature:
    """The model signature, with only the claim fields every claim has marked required."""
    inferred = infer_signature(example_input, example_output)
    # A three-claim example must not decide which fields are required: NPIs, pointers,
    # modifiers and auth numbers are often empty in real claims.
    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(type=c.type, name=c.name, required=c.name in REQUIRED_INPUT_COLUMNS)
                for c in inferred.inputs.inputs
            ]
        ),
        outputs=inferred.outputs,
    )


REQUIRED_INPUT_COLUMNS = frozenset(
    {
        "claim_id",
        "line_number",
        "line_charge",
        "units",
        "service_date",
        "submission_date",
        "payer_id",
        "payer_type",
        "patient_id",
        "total_charge",
        "service_date_from",
    }
)


def json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Claim lines as a JSON client sends them: dates as ISO strings (the model's signature)."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out


def load_pipeline(model_uri: str) -> Pipeline:
    """The fitted scikit-learn pipeline behind a registered model URI or a local model path
    (without a history: see :func:`load_model`)."""
    return load_model(model_uri)[0]


def load_model(model_uri: str) -> tuple[Pipeline, Path | None]:
    """The fitted pipeline behind a model URI or folder, and the data set it names as its
    default history (:func:`history_dataset_of`)."""
    model = mlflow.pyfunc.load_model(model_uri)
    wrapper = model.unwrap_python_model()
    return wrapper.pipeline, history_dataset_of(model)


LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece"})


def promotion_decision(
    metric: str,
    new: dict[str, float],
    champion: dict[str, float] | None,
    force: bool = False,
    compared_on: str = "the same test claims",
) -> tuple[bool, str]:
    """Whether a new version should become champion, and why, in one sentence.

    It must beat the champion on ``metric`` measured on the same later-period data; with no
    champion yet it wins; ``force`` overrides (the reason says so).
    """
    if force:
        return True, "promotion forced (--force-promote)"
    if champion is None:
        return True, "no champion yet"
    if metric not in new or metric not in champion:
        return False, f"gate metric '{metric}' missing; champion kept"
    lower = metric in LOWER_IS_BETTER
    better = new[metric] < champion[metric] if lower else new[metric] > champion[metric]
    verdict = "beats" if better else "does not beat"
    return better, (
        f"new {metric}={new[metric]:.4f} {verdict} champion {metric}={champion[metric]:.4f} "
        f"on {compared_on}"
    )


def champion_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


class IncompleteVersion(ValueError):
    """A registered version whose training did not finish (it cannot be promoted)."""


def incomplete_reason(client: MlflowClient, name: str, version: str) -> str | None:
    """Why ``version`` is not a complete model, or ``None`` when it is.

    Training registers a version only after its run has finished (:func:`register_version`);
    a version registered otherwise, or by an older release that registered inside the run, may
    have a run that a kill left RUNNING (issue 20). Complete means: registered READY, and its
    run (when it has one) FINISHED."""
    mv = client.get_model_version(name, version)  # raises a clear MLflow error if absent
    if mv.status != "READY":
        return f"its registration is {mv.status}"
    if mv.run_id:
        status = client.get_run(mv.run_id).info.status
        if status != "FINISHED":
            return f"its training run is {status} (interrupted before it finished)"
    return None


def promote(client: MlflowClient, name: str, version: str, alias: str = "champion") -> str | None:
    """Point ``alias`` at ``version``; remember the version it pointed at for rollback.

    Raises :class:`IncompleteVersion` for a version whose training did not finish."""
    reason = incomplete_reason(client, name, version)
    if reason is not None:
        raise IncompleteVersion(f"version {version} of '{name}' is incomplete: {reason}")
    previous = champion_version(client, name, alias)
    if previous is not None and previous != str(version):
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, previous)
    client.set_registered_model_alias(name, alias, str(version))
    return previous


def rollback(client: MlflowClient, name: str, alias: str = "champion") -> str:
    """Move ``alias`` back to the version it held before the last promotion."""
    previous = champion_version(client, name, PREVIOUS_ALIAS)
    if previous is None:
        raise ValueError(f"model '{name}' has no previous champion to roll back to")
    promote(client, name, previous, alias)
    return previous


OWNER_HOST_TAG = "denial_risk.host"
OWNER_PID_TAG = "denial_risk.pid"


def owner_tags() -> dict[str, str]:
    """Tags that name the process running a training run, given when the run starts, so a run
    that process never ended can be told from one still going (:func:`stopped_runs`)."""
    return {OWNER_HOST_TAG: socket.gethostname(), OWNER_PID_TAG: str(os.getpid())}


def stopped_runs(client: MlflowClient) -> list[Run]:
    """Runs still RUNNING whose process, on this machine, is gone: a training killed before it
    could end its run (SIGKILL, the out-of-memory killer). They registered no version.

    Runs of other machines, and of releases that did not tag their process, are left out: no
    one can tell whether they are still going.
    """
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    host = socket.gethostname()
    return [
        run
        for run in running
        if run.data.tags.get(OWNER_HOST_TAG) == host
        and not _process_exists(int(run.data.tags.get(OWNER_PID_TAG, "0")))
    ]


def end_stopped_runs(client: MlflowClient) -> list[str]:
    """Mark :func:`stopped_runs` KILLED (as MLflow marks a run that raised FAILED); their ids."""
    ids = [run.info.run_id for run in stopped_runs(client)]
    for run_id in ids:
        client.set_terminated(run_id, "KILLED")
    return ids


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True  # or a later process given the same id: then the run is left as it is


@dataclass
class VersionRow:
    version: str
    aliases: list[str]
    run_id: str
    created: str
    metrics: dict[str, float]
    incomplete: str | None = None
    """Why the version cannot be promoted (see :func:`incomplete_reason`), if it cannot."""


def list_versions(client: MlflowClient, name: str, metric_names: list[str]) -> list[VersionRow]:
    """Every registered version with its aliases and headline test-period metrics."""
    # The aliases from the registered model: a version search leaves them out (an empty list
    # for every version on the sqlite store, so the champion never showed).
    aliases_of: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases_of.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        metrics: dict[str, float] = {}
        incomplete = None if mv.status == "READY" else f"its registration is {mv.status}"
        if mv.run_id:
            run = client.get_run(mv.run_id)
            metrics = {m: run.data.metrics[m] for m in metric_names if m in run.data.metrics}
            if incomplete is None and run.info.status != "FINISHED":
                incomplete = f"its training run is {run.info.status}"
        rows.append(
            VersionRow(
                version=str(mv.version),
                aliases=sorted(aliases_of.get(str(mv.version), [])),
                run_id=mv.run_id or "",
                created=pd.Timestamp(mv.creation_timestamp, unit="ms").strftime("%Y-%m-%d %H:%M"),
                metrics=metrics,
                incomplete=incomplete,
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)
