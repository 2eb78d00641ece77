"""TreeSHAP for a LightGBM booster, precomputed per leaf and evaluated for a batch with numpy.

LightGBM's ``pred_contrib`` runs path-dependent TreeSHAP (Lundberg et al., 2020) for every row:
for every leaf of every tree it extends and unwinds the leaf's path, O(leaves x depth^2) work
per tree, about 2 ms per claim for the denial booster (245 trees of depth <= 7). That was most
of the cost of an explained score.

The work for a leaf depends on the row only through which of the leaf's split conditions the row
meets (Yang, "Fast TreeSHAP", 2021, algorithm v2). A leaf at depth ``m`` has ``2^m <= 128``
such patterns, so :class:`TreeShapTables` runs LightGBM's own path arithmetic once per leaf and
pattern, when the tables are built, and a row's contributions become a lookup and a sum: decide
every split of the booster for the batch, read each leaf's pattern as bits, gather the leaf's
precomputed values and add them up per feature. The values are the same TreeSHAP values (same
algorithm, same counts, same decisions); only the order of floating-point additions differs,
so they agree with ``pred_contrib`` to about 1e-15.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from scipy import sparse

from training.booster_cache import BoosterCache

ZERO_THRESHOLD = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold`` (a C++ float): values this close to 0 are read as 0."""

CHUNK_ROWS = 32
"""Rows evaluated together: bounds the (rows x path elements) work arrays to a few MB."""


@dataclass
class _Leaf:
    """One leaf's path from the root: the split nodes, the side taken, and the leaf value."""

    nodes: list[int]  # global internal-node ids, root first
    goes_left: list[bool]  # the side of each node that leads to this leaf
    value: float


@dataclass
class _Splits:
    """Every internal node of the booster, numbered globally across trees."""

    feature: list[int]
    threshold: list[float]
    categorical: list[bool]
    categories: list[list[int]]  # categories sent left (categorical splits)
    default_left: list[bool]
    missing_type: list[str]  # "None", "Zero" or "NaN"


def _parse(booster: lgb.Booster) -> tuple[_Splits, list[_Leaf], list[list[float]], int]:
    """Splits, leaves and each leaf's per-node zero fractions from LightGBM's JSON dump.

    The dump holds the thresholds and leaf values at full precision and the training counts
    TreeSHAP weighs the branches by. ``dump_model()`` takes the iterations ``predict`` takes
    by default (the best iteration when early stopping set one).
    """
    model: dict[str, Any] = booster.dump_model()
    if model.get("num_tree_per_iteration", 1) != 1:
        raise ValueError("TreeShapTables explains one output: the booster has several per round")
    splits = _Splits([], [], [], [], [], [])
    leaves: list[_Leaf] = []
    fractions: list[list[float]] = []

    def is_leaf(node: dict[str, Any]) -> bool:
        return "split_index" not in node

    def count(node: dict[str, Any]) -> float:
        return float(node["leaf_count"] if is_leaf(node) else node["internal_count"])

    def walk(node: dict[str, Any], path: list[int], sides: list[bool], ratios: list[float]) -> None:
        if is_leaf(node):
            leaves.append(_Leaf(list(path), list(sides), float(node["leaf_value"])))
            fractions.append(list(ratios))
            return
        node_id = len(splits.feature)
        categorical = node["decision_type"] == "=="
        splits.feature.append(int(node["split_feature"]))
        splits.categorical.append(categorical)
        splits.threshold.append(0.0 if categorical else float(node["threshold"]))
        splits.categories.append(
            [int(c) for c in str(node["threshold"]).split("||")] if categorical else []
        )
        splits.default_left.append(bool(node["default_left"]))
        splits.missing_type.append(str(node["missing_type"]))
        total = count(node)
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            walk(child, [*path, node_id], [*sides, left], [*ratios, count(child) / total])

    for tree in model["tree_info"]:
        if not is_leaf(tree["tree_structure"]):  # a one-leaf tree only moves the bias
            walk(tree["tree_structure"], [], [], [])
    return splits, leaves, fractions, int(model["max_feature_idx"]) + 1


def _unique_features(features: list[int], ratios: list[float]) -> tuple[list[int], list[float]]:
    """A path's distinct features in LightGBM's order (of last use) and their zero fractions.

    A feature split on twice is one path element whose zero fraction is the product of its
    nodes' fractions, multiplied in path order as LightGBM's unwind-and-extend does.
    """
    zero: dict[int, float] = {}
    for feature, ratio in zip(features, ratios, strict=True):
        zero[feature] = ratio * zero.pop(feature) if feature in zero else ratio
    return list(zero), list(zero.values())


def _extend(pweight: np.ndarray, depth: int, zero: np.ndarray, one: np.ndarray) -> None:
    """LightGBM's ``Tree::ExtendPath`` on a batch of paths (``pweight[..., :depth + 1]``)."""
    pweight[..., depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        pweight[..., i + 1] += one * pweight[..., i] * (i + 1) / float(depth + 1)
        pweight[..., i] = zero * pweight[..., i] * (depth - i) / float(depth + 1)


def _unwound_sum(pweight: np.ndarray, depth: int, zero: np.ndarray, one: np.ndarray) -> np.ndarray:
    """LightGBM's ``Tree::UnwoundPathSum`` for one path element (fractions ``zero``, ``one``)."""
    next_one_portion = pweight[..., depth].copy()
    total = np.zeros_like(next_one_portion)
    hot = one != 0
    safe_one = np.where(hot, one, 1.0)
    for i in range(depth - 1, -1, -1):
        scale = (depth - i) / float(depth + 1)
        tmp = next_one_portion * (depth + 1) / ((i + 1) * safe_one)
        total += np.where(hot, tmp, (pweight[..., i] / zero) / scale)
        next_one_portion = np.where(hot, pweight[..., i] - tmp * zero * scale, next_one_portion)
    return total


def _leaf_tables(
    depth: int, unique: int, positions: np.ndarray, zero: np.ndarray, value: np.ndarray
) -> np.ndarray:
    """SHAP values of leaves with ``depth`` nodes and ``unique`` features, for every pattern.

    ``positions[g, k, j]`` says node ``j`` of leaf ``g``'s path splits on its ``k``-th feature,
    ``zero`` is ``(leaves, unique)``. Pattern ``p``'s bit ``j`` says the row takes node ``j``'s
    side towards the leaf. Returns ``(leaves, 2^depth, unique)``.
    """
    patterns = 1 << depth
    bits = (np.arange(patterns)[:, None] >> np.arange(depth)[None, :]) & 1 == 1
    # A feature's one-fraction is 1 when the row takes the leaf's side at all of its nodes.
    one = np.all(bits[None, :, None, :] | ~positions[:, None, :, :], axis=-1).astype(float)
    zeros = np.broadcast_to(zero[:, None, :], one.shape)
    pweight = np.zeros((*one.shape[:2], unique + 1))
    _extend(pweight, 0, np.ones(one.shape[:2]), np.ones(one.shape[:2]))
    for k in range(unique):
        _extend(pweight, k + 1, zeros[..., k], one[..., k])
    phi = np.empty(one.shape)
    for k in range(unique):
        weight = _unwound_sum(pweight, unique, zeros[..., k], one[..., k])
        phi[..., k] = weight * (one[..., k] - zeros[..., k]) * value[:, None]
    return phi


class TreeShapTables:
    """A booster's TreeSHAP values per leaf and split pattern, and their per-row evaluation.

    Built once per booster (about a second; tens of MB); :meth:`contributions` then costs a
    few array operations per batch instead of a path recursion per row, leaf and tree. Use
    :func:`tables_for` to share one per booster.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        splits, leaves, fractions, self.n_features = _parse(booster)
        self._n_nodes = len(splits.feature)
        self._feature = np.asarray(splits.feature, dtype=np.intp)
        threshold = np.asarray(splits.threshold, dtype=np.float64)
        categorical = np.asarray(splits.categorical, dtype=bool)
        missing = np.asarray(splits.missing_type)
        default_left = np.asarray(splits.default_left, dtype=bool)
        # Splits by how they read a value; the common kind (numerical, no missing-value side)
        # takes two array operations per batch.
        plain = ~categorical & (missing == "None")
        self._plain = np.flatnonzero(plain)
        self._plain_threshold = threshold[plain][:, None]
        self._special = np.flatnonzero(~categorical & ~plain)
        self._special_threshold = threshold[self._special][:, None]
        self._special_zero = (missing[self._special] == "Zero")[:, None]
        self._special_nan = (missing[self._special] == "NaN")[:, None]
        self._special_default_left = default_left[self._special][:, None]
        self._categorical = np.flatnonzero(categorical)
        width = 1 + max((max(c) for c in splits.categories if c), default=0)
        # One row per categorical split: which codes go left; the last column (any code past
        # the largest one a split sends left) is False, as a code outside LightGBM's bitset.
        self._category_left = np.zeros((len(self._categorical), width + 1), dtype=bool)
        for row, node in enumerate(self._categorical):
            self._category_left[row, splits.categories[node]] = True
        self._build_leaves(leaves, fractions)

    def _build_leaves(self, leaves: list[_Leaf], fractions: list[list[float]]) -> None:
        """Tables for every leaf below a split, and the arrays that read them for a batch."""
        shaped = [
            (leaf, *_unique_features([int(self._feature[n]) for n in leaf.nodes], ratios))
            for leaf, ratios in zip(leaves, fractions, strict=True)
            if leaf.nodes  # a one-leaf tree only moves the bias
        ]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, (leaf, features, _) in enumerate(shaped):
            groups.setdefault((len(leaf.nodes), len(features)), []).append(index)
        tables: list[np.ndarray] = [np.zeros(0)] * len(shaped)
        for (depth, unique), members in groups.items():
            positions = np.zeros((len(members), unique, depth), dtype=bool)
            for g, index in enumerate(members):
                leaf, features, _ = shaped[index]
                for j, node in enumerate(leaf.nodes):
                    positions[g, features.index(int(self._feature[node])), j] = True
            zero = np.asarray([shaped[i][2] for i in members])
            value = np.asarray([shaped[i][0].value for i in members])
            phi = _leaf_tables(depth, unique, positions, zero, value)
            for g, index in enumerate(members):
                tables[index] = phi[g].ravel()
        self._values = np.concatenate(tables) if tables else np.zeros(0)

        # A row's entry in a leaf's table starts at offset + width * pattern, where pattern
        # bit j says the row takes the leaf's side at node j of its path. With left[node] in
        # {0, 1}, that is base + sum_j weight_j * left[node_j]: one sparse product per batch.
        widths = np.asarray([len(features) for _, features, _ in shaped], dtype=np.intp)
        offsets = np.cumsum([0] + [len(t) for t in tables])[:-1].astype(np.intp)
        rows, columns, weights = [], [], []
        base = offsets.astype(np.float64)
        for index, (leaf, _, _) in enumerate(shaped):
            for j, (node, left) in enumerate(zip(leaf.nodes, leaf.goes_left, strict=True)):
                step = float(widths[index] << j)
                rows.append(index)
                columns.append(node)
                weights.append(step if left else -step)
                if not left:  # going right sets the bit: (1 - left) * step
                    base[index] += step
        self._pattern_weights = sparse.csr_matrix(
            (weights, (rows, columns)), shape=(len(shaped), self._n_nodes)
        )
        self._table_base = base[:, None]
        self._widths = widths
        # Table entries are read leaf by leaf (slot k of each leaf's width), then summed per
        # feature with a 0/1 matrix, in tree order as LightGBM adds them.
        self._slots = np.concatenate([np.arange(w) for w in widths] or [np.zeros(0)])
        self._slots = self._slots.astype(np.intp)[:, None]
        element_features = [f for _, features, _ in shaped for f in features]
        self._sum_by_feature = sparse.csr_matrix(
            (np.ones(len(element_features)), (element_features, np.arange(len(element_features)))),
            shape=(self.n_features, len(element_features)),
        )

    def decisions(self, columns: np.ndarray) -> np.ndarray:
        """``(nodes, rows)``: whether each row goes left at each split, as LightGBM decides.

        ``columns`` is the batch transposed, ``(features, rows)``. Numerical: NaN reads as 0
        unless the split learned a side for NaN; a missing value (0 for "Zero", NaN for "NaN")
        takes the default side; else left when ``<=`` threshold. Categorical: NaN and negative
        codes go right; else left when the code is in the split's set.
        """
        left = np.empty((self._n_nodes, columns.shape[1]), dtype=bool)
        nan = np.isnan(columns)
        as_zero = np.where(nan, 0.0, columns) if nan.any() else columns
        left[self._plain] = as_zero[self._feature[self._plain]] <= self._plain_threshold
        if len(self._special):
            features = self._feature[self._special]
            value, is_nan = as_zero[features], nan[features]
            missing = (self._special_zero & (np.abs(value) <= ZERO_THRESHOLD)) | (
                self._special_nan & is_nan
            )
            compared = value <= self._special_threshold
            left[self._special] = np.where(missing, self._special_default_left, compared)
        if len(self._categorical):
            codes = columns[self._feature[self._categorical]]
            width = self._category_left.shape[1] - 1
            with np.errstate(invalid="ignore"):
                valid = codes > -1.0  # False for NaN; int(-0.5) is 0, a valid code
            index = np.where(valid, np.minimum(codes, width), width).astype(np.intp)
            rows = np.arange(len(self._categorical))[:, None]
            left[self._categorical] = self._category_left[rows, index]
        return left

    def contributions(self, values: np.ndarray) -> np.ndarray:
        """``(rows, features)`` TreeSHAP contributions to the raw score (bias not included)."""
        values = np.asarray(values, dtype=np.float64)
        if not len(self._widths):  # no tree splits: every row gets the bias only
            return np.zeros((len(values), self.n_features))
        out = np.empty((len(values), self.n_features))
        for start in range(0, len(values), CHUNK_ROWS):
            chunk = values[start : start + CHUNK_ROWS]
            out[start : start + len(chunk)] = self._chunk(chunk).T
        return out

    def _chunk(self, values: np.ndarray) -> np.ndarray:
        """``(features, rows)`` for a chunk of rows.

        Work arrays hold one row per split, leaf or table entry and one column per claim, so
        each step runs over contiguous memory and each leaf's table is read for all claims at
        once.
        """
        # A copy (the caller's matrix is left alone): LightGBM reads a dense row's
        # |value| <= kZeroThreshold as an absent feature, i.e. 0.
        columns = np.array(values.T, order="C")
        columns[np.abs(columns) <= ZERO_THRESHOLD] = 0.0
        left = self.decisions(columns).astype(np.float64)
        start = (self._pattern_weights @ left + self._table_base).astype(np.intp)
        entries = np.take(self._values, np.repeat(start, self._widths, axis=0) + self._slots)
        return np.asarray(self._sum_by_feature @ entries)


_TABLES: BoosterCache[TreeShapTables] = BoosterCache(TreeShapTables)


def tables_for(booster: lgb.Booster) -> TreeShapTables:
    """The booster's tables, built on first use and kept while the booster lives."""
    return _TABLES.get(booster)
