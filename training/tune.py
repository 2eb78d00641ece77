"""Optional hyperparameter search (Optuna) on time-ordered folds of the training period.

Each fold trains on claims sent before a cut and validates on the next slice, so tuning never
peeks at a later period than the one it is scored on, and the test period is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.estimator import BoosterParams, categorical_columns


def time_ordered_folds(dates: pd.Series, n_folds: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds: fold k trains on the first k+1 slices, validates on slice k+2."""
    order = np.argsort(dates.to_numpy(), kind="mergesort")
    slices = np.array_split(order, n_folds + 1)
    return [
        (np.sort(np.concatenate(slices[: k + 1])), np.sort(slices[k + 1])) for k in range(n_folds)
    ]


def tune_booster(
    matrix: pd.DataFrame,
    labels: pd.DataFrame,
    base: BoosterParams,
    trials: int = 20,
    n_folds: int = 3,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[BoosterParams, float]:
    """Search learning rate, leaves, leaf size, sampling and L2 for the best mean fold AUC."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y = labels["denied"].astype(int).to_numpy()
    folds = time_ordered_folds(labels["submission_date"], n_folds)
    categorical = categorical_columns(matrix)

    def objective(trial: optuna.Trial) -> float:
        params = replace(
            base,
            learning_rate=trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            num_leaves=trial.suggest_int("num_leaves", 15, 255, log=True),
            min_child_samples=trial.suggest_int("min_child_samples", 10, 200, log=True),
            feature_fraction=trial.suggest_float("feature_fraction", 0.5, 1.0),
            lambda_l2=trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        )
        scores = []
        for fit_idx, val_idx in folds:
            train = lgb.Dataset(matrix.iloc[fit_idx], y[fit_idx], categorical_feature=categorical)
            valid = lgb.Dataset(
                matrix.iloc[val_idx],
                y[val_idx],
                reference=train,
                categorical_feature=categorical,
            )
            booster = lgb.train(
                params.lgb_params("binary"),
                train,
                num_boost_round=params.max_rounds,
                valid_sets=[valid],
                callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
            )
            scores.append(roc_auc_score(y[val_idx], booster.predict(matrix.iloc[val_idx])))
        if progress:
            progress(f"tuning trial {trial.number + 1}/{trials}", (trial.number + 1) / trials)
        return float(np.mean(scores))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=7))
    study.optimize(objective, n_trials=trials)
    best = replace(base, **study.best_params)
    return best, float(study.best_value)
