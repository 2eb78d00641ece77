"""What is built once per LightGBM booster and kept beside it (not on the estimator, so a
pickled model does not carry it)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import lightgbm as lgb

Built = TypeVar("Built")


class BoosterCache(Generic[Built]):
    """``build(booster)``, run on a booster's first use and kept while the booster lives.

    Built under a lock: concurrent first uses (a server's first requests, a batch's chunk
    threads) would otherwise each build a copy. Whatever ``build`` returns is kept, ``None``
    included.
    """

    def __init__(self, build: Callable[[lgb.Booster], Built]) -> None:
        self._build = build
        self._built: weakref.WeakKeyDictionary[lgb.Booster, Built] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, booster: lgb.Booster) -> Built:
        with self._lock:
            if booster not in self._built:
                self._built[booster] = self._build(booster)
            return self._built[booster]
