"""Load a model for serving: from the MLflow registry (alias or version) or a local model folder.

A registry load takes three steps, each failing with its own message: ask the registry which
version the URI names (an alias is resolved once, so the version reported is the version
loaded), download that version's files, read the pipeline from them. Only a registry or
artifact store that cannot be reached raises :class:`RegistryUnreachable`, the one failure a
last good local copy (:class:`LocalCopies`) may stand in for: a missing or unreadable artifact
is the registry's answer, and serving an older copy would hide it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import mlflow
from mlflow import MlflowClient
from pydantic import BaseModel, Field, ValidationError

from serving.service import ModelInfo, RiskBands, ScoringService
from training import registry
from training.history_store import load_history
from training.model import with_history_state

log = logging.getLogger("denial_risk.api")

TRAIN_ONE = (
    "Train one with `denial-risk train` or pass --model with a registry URI or a local model "
    "folder."
)
RECOVER = (
    "restore them or promote another version (`denial-risk promote` or `denial-risk rollback`), "
    "then reload (POST /v1/admin/reload)"
)


class ModelLoadError(RuntimeError):
    """No model could be loaded; the message says why and what to do."""


class RegistryUnreachable(ModelLoadError):
    """The MLflow tracking server or its artifact store could not be reached (refused, timed
    out, answered with server errors): a load may succeed later without anyone changing it."""


def load_service(
    model_uri: str,
    tracking_uri: str,
    bands: RiskBands | None = None,
    copies: LocalCopies | None = None,
    history: Path | None = None,
) -> ScoringService:
    """A ScoringService for ``model_uri`` (``models:/name@alias``, ``models:/name/3`` or a path).

    Its history is built from the data set ``history`` (the practice's, kept current by
    ``ingest --into``); by default from the one the model was trained on. With ``copies``, a
    model loaded from the registry is kept there as its last good copy. Raises
    :class:`ModelLoadError` (:class:`RegistryUnreachable` when the registry or its artifact
    store cannot be reached) with a message saying what to do.
    """
    if not model_uri.startswith("models:/"):
        # A local model folder needs no registry (and must load where none exists).
        info = ModelInfo(name=model_uri, version="local", alias=None, uri=model_uri)
        return _service(model_uri, model_uri, info, bands, history)
    info = _ask_registry(
        model_uri, lambda: describe_model(registry.configure(tracking_uri), model_uri)
    )
    with copies.staging(model_uri) if copies else _temporary_folder() as folder:
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{info.name}/{info.version}", dst_path=str(folder)
            )
        except Exception as error:  # MLflow raises several types for files it cannot get
            cause = unreachable_cause(error)
            if cause is not None:
                raise RegistryUnreachable(
                    f"cannot load model '{model_uri}': the artifact store of version "
                    f"{info.version} cannot be reached ({cause})"
                ) from error
            raise ModelLoadError(
                f"cannot load model '{model_uri}': the files of version {info.version} cannot "
                f"be downloaded from the artifact store ({error}); {RECOVER}"
            ) from error
        service = _service(folder, model_uri, info, bands, history)
        if copies:
            copies.keep(model_uri, folder, info)
    return service


def _ask_registry(model_uri: str, ask: Callable[[], ModelInfo]) -> ModelInfo:
    """``ask()``'s answer; its failure worded: unreachable, no such model, or anything else."""
    try:
        return ask()
    except registry.RegistryNotFound as error:
        raise ModelLoadError(f"cannot load model '{model_uri}': {error}") from error
    except Exception as error:  # MLflow raises several types for "not there"
        cause = unreachable_cause(error)
        if cause is not None:
            raise RegistryUnreachable(
                f"cannot load model '{model_uri}': the model registry cannot be reached ({cause})"
            ) from error
        raise ModelLoadError(f"cannot load model '{model_uri}': {error}. {TRAIN_ONE}") from error


def _service(
    folder: str | Path,
    model_uri: str,
    info: ModelInfo,
    bands: RiskBands | None,
    history: Path | None,
) -> ScoringService:
    """The model of an MLflow model folder with its history; :class:`ModelLoadError` when
    either cannot be read."""
    version = None if info.version == "local" else info.version
    try:
        pipeline, named = registry.load_model(str(folder))
    except Exception as error:  # a missing file, a truncated or garbled one: any type
        why = (
            f"{error}. {TRAIN_ONE}"
            if version is None
            else f"the files of version {version} cannot be read, they are missing or corrupt "
            f"({type(error).__name__}: {error}); {RECOVER}"
        )
        raise ModelLoadError(f"cannot load model '{model_uri}': {why}") from error
    source = history or named
    if source is None:
        raise ModelLoadError(
            f"cannot load model '{model_uri}': it names no data set to build its history from; "
            f"{HISTORY_HINT}"
        )
    features = pipeline.named_steps["features"]
    try:
        stored = load_history(source, features.smoothing, features.prior_rate)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"cannot load model '{model_uri}': its history data set cannot be read ({error}); "
            f"{HISTORY_HINT}"
        ) from error
    return ScoringService(with_history_state(pipeline, stored.state), info, bands, stored.as_of)


HISTORY_HINT = (
    "point --history (or the DENIAL_RISK_HISTORY_DATASET setting) at the practice's data set "
    "(`denial-risk ingest --into DATASET` keeps it current)"
)


@contextmanager
def _temporary_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="denial-risk-model-") as folder:
        yield Path(folder)


def unreachable_cause(error: BaseException) -> str | None:
    """Why the server behind ``error`` could not be reached, in a few words (no address), or
    ``None`` when ``error`` is an answer (not found, bad request) or not a network failure."""
    import requests

    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    kinds = requests.RequestException | ConnectionError | TimeoutError | socket.gaierror
    network = [e for e in chain if isinstance(e, kinds)]
    if not network:
        return None
    if any(isinstance(e, requests.Timeout | TimeoutError) for e in network):
        return "no answer in time"
    if any(isinstance(e, requests.exceptions.RetryError) for e in network):
        return "it answered with server errors"
    for link in reversed(network):  # the innermost socket error says it best
        if isinstance(link, OSError) and link.strerror:
            return str(link.strerror).lower()
    return type(network[-1]).__name__


def describe_model(client: MlflowClient | None, model_uri: str) -> ModelInfo:
    """Name, version, alias, training period and headline metrics of a registry model URI."""
    if client is None or not model_uri.startswith("models:/"):
        return ModelInfo(name=model_uri, version="local", alias=None, uri=model_uri)
    reference = model_uri.removeprefix("models:/")
    alias = None
    if "@" in reference:
        name, alias = reference.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = reference.split("/", 1)
        version = client.get_model_version(name, number)
    run = client.get_run(version.run_id) if version.run_id else None
    metrics = {}
    period = ""
    if run is not None:
        metrics = {
            k: v
            for k, v in run.data.metrics.items()
            if k in {"roc_auc", "pr_auc", "ece", "brier", "reason_top1_accuracy"}
        }
        period = run.data.tags.get("data.train_period", "")
    return ModelInfo(
        name=name,
        version=str(version.version),
        alias=alias,
        uri=model_uri,
        training_period=period,
        metrics=metrics,
    )


# -- the last good local copies -------------------------------------------------------------
class CopyRecord(BaseModel):
    """``last-good.json``: which version folder is the last good copy, and what it is."""

    model: ModelInfo
    folder: str = Field(pattern=r"^v[^/\\]+$")
    saved_at: datetime


class LocalCopies:
    """The last good copy of each registry model the API has loaded, for when the registry
    cannot be reached.

    ``<root>/<reference>/`` (``denial-risk@champion``) holds the MLflow model folder of the last
    version loaded (``v3/``, the very files that were downloaded and read) and ``last-good.json``
    saying which it is and when it was saved. A load downloads into a staging folder beside
    them, so keeping a copy is a rename, not a second copy of the files; several workers
    loading at once each stage their own.
    """

    RECORD = "last-good.json"

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, model_uri: str) -> Path:
        return self.root / quote(model_uri.removeprefix("models:/"), safe="@")

    @contextmanager
    def staging(self, model_uri: str) -> Iterator[Path]:
        """A new folder to download ``model_uri`` into, removed afterwards unless kept; a
        temporary one where the copies' folder cannot be written."""
        try:
            parent = self.folder(model_uri)
            parent.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
        except OSError as error:
            _log_no_copy(model_uri, error)
            path = Path(tempfile.mkdtemp(prefix="denial-risk-model-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def keep(self, model_uri: str, staged: Path, info: ModelInfo) -> None:
        """Make the folder ``staged`` (read without error into ``info``'s model) the last good
        copy of ``model_uri``. Best effort: a copy not written is logged, never a failed load."""
        parent = self.folder(model_uri)
        if staged.parent != parent:
            return  # staged in a temporary folder: the copies' folder cannot be written
        target = parent / f"v{info.version}"
        record = CopyRecord(model=info, folder=target.name, saved_at=datetime.now(UTC))
        try:
            if target.exists():  # the same version kept before: the fresh files replace it
                target.rename(parent / f".retired-{uuid.uuid4().hex}")
            staged.rename(target)
            written = parent / f".{self.RECORD}.{uuid.uuid4().hex}"
            written.write_text(record.model_dump_json(indent=2))
            os.replace(written, parent / self.RECORD)
        except OSError as error:
            _log_no_copy(model_uri, error)
            return
        for entry in parent.iterdir():
            if entry.name.startswith(".retired-") or (
                entry.name.startswith("v") and entry.is_dir() and entry != target
            ):
                shutil.rmtree(entry, ignore_errors=True)

    def load(
        self, model_uri: str, bands: RiskBands | None = None, history: Path | None = None
    ) -> ScoringService:
        """A service from the last good copy of ``model_uri`` (its history from ``history``,
        or the data set the model names); :class:`ModelLoadError` when there is none or it
        cannot be read."""
        parent = self.folder(model_uri)
        try:
            record = CopyRecord.model_validate_json((parent / self.RECORD).read_text())
        except FileNotFoundError:
            raise ModelLoadError(
                "no local copy to serve meanwhile (the API keeps one of each model it loads "
                "from the registry; none was loaded here yet)"
            ) from None
        except (OSError, ValidationError) as error:
            raise ModelLoadError(f"its local copy's record cannot be read ({error})") from None
        info = dataclasses.replace(record.model, local_copy_saved_at=record.saved_at)
        try:
            return _service(parent / record.folder, info.uri, info, bands, history)
        except ModelLoadError as error:
            raise ModelLoadError(
                f"its local copy (version {record.model.version}) cannot be read ({error})"
            ) from error


def _log_no_copy(model_uri: str, error: OSError) -> None:
    log.warning(
        json.dumps({"event": "local_copy_not_saved", "model_uri": model_uri, "reason": str(error)})
    )
