"""LightGBM's trees walked by a compiled (numba) kernel: a large batch's prediction at one thread.

Why: chunked batch scoring (:func:`training.model.predict`) predicts each chunk on one thread,
and the denial booster was the largest cost of a batch. LightGBM's predictor turns every row
into a sparse vector, copies it into a dense buffer and walks each tree with a branch per split
that the processor cannot predict. :func:`_raw_scores` walks 64 rows through a tree side by
side (their memory loads overlap), reads each split without a branch (a numerical split as a
comparison, a categorical one as a test against a 64-bit mask of the categories sent left),
keeps the rare splits that need more (a learned side for missing values, categories past 63)
on a branch of their own, and walks trees of depth up to 8 as complete binary trees
(:class:`_CompleteTrees`). For the denial booster that is ~2x LightGBM's one-thread
prediction (``BENCHMARKS.md``); the multiclass reason booster's narrow trees gain nothing.

The numbers are LightGBM's, bit for bit: the same decisions (its ``NumericalDecision`` and
``CategoricalDecision``: values within ``kZeroThreshold`` of 0 read as 0, NaN read as 0 unless
the split learned a side for it, codes truncated towards 0, negative codes and NaN to the
right), the leaf values at full precision from the model text, the trees added in LightGBM's
order, and its output transform (sigmoid, softmax). Each :class:`CompiledTrees` checks that
against ``Booster.predict`` on probe rows when built; :func:`compiled_trees` gives ``None``
(callers then use LightGBM) for a model it cannot reproduce exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from numba import njit

# LightGBM's kZeroThreshold, defined once for both readings of its trees (a fixed constant of
# LightGBM's: numba compiles it in, and its on-disk cache is keyed to this file only).
from training.booster_cache import BoosterCache
from training.treeshap import ZERO_THRESHOLD

log = logging.getLogger(__name__)

_PLAIN, _CATEGORICAL, _SPECIAL = 0, 1, 2
"""Split kinds: numerical without a missing-value side; categorical with every category sent
left below 64; the rest (numerical with a side for zero or NaN, wider categorical sets)."""

_MISSING_ZERO, _MISSING_NAN = 1, 2  # LightGBM's MissingType (0: none)
_BLOCK_ROWS = 64
"""Rows walked through a tree side by side. Each block reads every tree's splits once (more
than a core's 1 MB L2 for the denial booster), so larger blocks re-read them less: 64 walked
the complete trees ~16% faster than 16, on one thread and on two alike (128 no faster)."""


@dataclass(frozen=True)
class _Forest:
    """Every split and leaf of a booster, numbered globally, as the kernel reads them."""

    feature: np.ndarray  # int64 per split
    threshold: np.ndarray  # float64 per split; NaN for categorical (never "<=")
    left: np.ndarray  # int64 per split: child split within the tree, or ~leaf
    right: np.ndarray
    kind: np.ndarray  # int64 per split: _PLAIN, _CATEGORICAL or _SPECIAL
    category_mask: np.ndarray  # uint64 per split: categories < 64 sent left
    missing_type: np.ndarray  # int64 per split (special numerical splits)
    default_left: np.ndarray  # bool per split (special numerical splits)
    bitset_start: np.ndarray  # int64 per split: its categories' words in ``bitset_words``
    bitset_stop: np.ndarray
    bitset_words: np.ndarray  # uint32: LightGBM's category bitsets, concatenated
    split_start: np.ndarray  # int64 per tree (n_trees + 1)
    leaf_start: np.ndarray  # int64 per tree (n_trees + 1)
    leaf_value: np.ndarray  # float64
    depth: np.ndarray  # int64 per tree: splits on its longest path
    has_special: np.ndarray  # bool per tree: any _SPECIAL split
    complete: _CompleteTrees
    """The trees also laid out complete (see :class:`_CompleteTrees`), where they can be."""


@dataclass(frozen=True)
class _CompleteTrees:
    """Trees of the forest laid out as complete binary trees, as the kernel walks them fastest.

    A tree of depth ``d`` becomes ``2**d - 1`` splits in heap order (split ``i``'s children are
    ``2i + 1`` and ``2i + 2``) over ``2**d`` leaves: every row takes ``d`` steps, each one
    comparison and no lookup of children, and a row never sits at a leaf while others step on.
    A leaf shallower than ``d`` fills every leaf slot beneath its position, under splits that
    cannot change the value reached (feature 0, threshold 0). Only trees whose splits the
    branch-free test reads (no ``_SPECIAL`` split) and of depth up to
    :data:`_COMPLETE_DEPTH_MAX` (beyond it the padding outgrows the tree).
    """

    start: np.ndarray  # int64 per tree: its first split in the arrays below, -1 if not laid out
    leaf_start: np.ndarray  # int64 per tree: its first leaf slot in ``leaf_value``
    feature: np.ndarray  # int64 per split
    threshold: np.ndarray  # float64 per split
    category_mask: np.ndarray  # uint64 per split
    leaf_value: np.ndarray  # float64 per leaf slot


_COMPLETE_DEPTH_MAX = 8
"""Deepest tree laid out complete: 255 splits and 256 leaf slots, ~7 kB (LightGBM's default
``num_leaves=31`` trees with ``max_depth`` 7 measured ~15% faster than walked by child index)."""


class UnsupportedModel(ValueError):
    """A booster feature the kernel does not reproduce (LightGBM predicts such models)."""


def _parse_model(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The model text's header fields and each tree's fields (``key=value`` lines)."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    for line in text.splitlines():
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
        elif line.startswith("end of trees"):
            break
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key] = value
    return header, trees


def _numbers(fields: dict[str, str], key: str, kind: type) -> list:
    return [kind(value) for value in fields[key].split()] if fields.get(key) else []


def _forest(trees: list[dict[str, str]]) -> _Forest:
    columns: dict[str, list] = {
        name: []
        for name in (
            "feature", "threshold", "left", "right", "kind", "mask", "missing", "default_left",
            "bitset_start", "bitset_stop",
        )
    }  # fmt: skip
    words: list[int] = []
    leaf_values: list[float] = []
    split_start, leaf_start, depths = [0], [0], []
    for tree in trees:
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedModel("linear trees")
        leaves = _numbers(tree, "leaf_value", float)
        if int(tree["num_leaves"]) > 1:
            decision = _numbers(tree, "decision_type", int)
            threshold = _numbers(tree, "threshold", float)
            boundaries = _numbers(tree, "cat_boundaries", int)
            tree_words = _numbers(tree, "cat_threshold", int)
            for split, decision_type in enumerate(decision):
                categorical = bool(decision_type & 1)
                missing = (decision_type >> 2) & 3
                start = stop = 0
                mask = 0
                kind = _SPECIAL if missing else _PLAIN
                if categorical:
                    index = int(threshold[split])
                    start = len(words) + boundaries[index]
                    stop = len(words) + boundaries[index + 1]
                    own = tree_words[boundaries[index] : boundaries[index + 1]]
                    codes = [
                        32 * w + b for w, word in enumerate(own) for b in range(32) if word >> b & 1
                    ]
                    kind = _CATEGORICAL if all(code < 64 for code in codes) else _SPECIAL
                    mask = sum(1 << code for code in codes if code < 64)
                columns["threshold"].append(math.nan if categorical else threshold[split])
                columns["kind"].append(kind)
                columns["mask"].append(mask if kind == _CATEGORICAL else 0)
                columns["missing"].append(-1 if categorical else missing)
                columns["default_left"].append(bool(decision_type & 2))
                columns["bitset_start"].append(start)
                columns["bitset_stop"].append(stop)
            columns["feature"] += _numbers(tree, "split_feature", int)
            columns["left"] += _numbers(tree, "left_child", int)
            columns["right"] += _numbers(tree, "right_child", int)
            words += tree_words
        leaf_values += leaves
        split_start.append(len(columns["feature"]))
        leaf_start.append(len(leaf_values))
        depths.append(_depth(columns["left"], columns["right"], split_start[-2], split_start[-1]))
    kinds = np.asarray(columns["kind"], dtype=np.int64)
    has_special = np.asarray(
        [
            np.any(kinds[a:b] == _SPECIAL)
            for a, b in zip(split_start[:-1], split_start[1:], strict=True)
        ],
        dtype=np.bool_,
    )
    return _Forest(
        feature=np.asarray(columns["feature"], dtype=np.int64),
        threshold=np.asarray(columns["threshold"], dtype=np.float64),
        left=np.asarray(columns["left"], dtype=np.int64),
        right=np.asarray(columns["right"], dtype=np.int64),
        kind=kinds,
        category_mask=np.asarray(columns["mask"], dtype=np.uint64),
        missing_type=np.asarray(columns["missing"], dtype=np.int64),
        default_left=np.asarray(columns["default_left"], dtype=np.bool_),
        bitset_start=np.asarray(columns["bitset_start"], dtype=np.int64),
        bitset_stop=np.asarray(columns["bitset_stop"], dtype=np.int64),
        bitset_words=np.asarray(words, dtype=np.uint32),
        split_start=np.asarray(split_start, dtype=np.int64),
        leaf_start=np.asarray(leaf_start, dtype=np.int64),
        leaf_value=np.asarray(leaf_values, dtype=np.float64),
        depth=np.asarray(depths, dtype=np.int64),
        has_special=has_special,
        complete=_complete_trees(
            columns, leaf_values, split_start, leaf_start, depths, has_special
        ),
    )


def _complete_trees(
    columns: dict[str, list],
    leaf_values: list[float],
    split_start: list[int],
    leaf_start: list[int],
    depths: list[int],
    has_special: np.ndarray,
) -> _CompleteTrees:
    """:class:`_CompleteTrees` of the forest's split lists (as :func:`_forest` gathers them)."""
    start = np.full(len(depths), -1, dtype=np.int64)
    slots = np.zeros(len(depths), dtype=np.int64)
    feature: list[int] = []
    threshold: list[float] = []
    mask: list[int] = []
    leaves: list[float] = []
    for t, depth in enumerate(depths):
        slots[t] = len(leaves)
        if has_special[t] or not 0 < depth <= _COMPLETE_DEPTH_MAX:
            continue
        start[t] = len(feature)
        n_splits = (1 << depth) - 1
        tree_feature, tree_threshold = [0] * n_splits, [0.0] * n_splits
        tree_mask, tree_leaves = [0] * n_splits, [0.0] * (1 << depth)
        pending = [(0, 0, 0)]  # (child as LightGBM numbers it, heap position, its depth)
        while pending:
            child, position, level = pending.pop()
            if child < 0:  # a leaf: every slot beneath its position
                first = ((position + 1) << (depth - level)) - 1 - n_splits
                value = leaf_values[leaf_start[t] + ~child]
                tree_leaves[first : first + (1 << (depth - level))] = [value] * (
                    1 << (depth - level)
                )
                continue
            split = split_start[t] + child
            tree_feature[position] = columns["feature"][split]
            tree_threshold[position] = columns["threshold"][split]
            tree_mask[position] = columns["mask"][split]
            pending.append((columns["left"][split], 2 * position + 1, level + 1))
            pending.append((columns["right"][split], 2 * position + 2, level + 1))
        feature += tree_feature
        threshold += tree_threshold
        mask += tree_mask
        leaves += tree_leaves
    return _CompleteTrees(
        start=start,
        leaf_start=slots,
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float64),
        category_mask=np.asarray(mask, dtype=np.uint64),
        leaf_value=np.asarray(leaves, dtype=np.float64),
    )


def _depth(left: list[int], right: list[int], start: int, stop: int) -> int:
    """Splits on the longest root-to-leaf path of the tree whose splits are ``start:stop``."""
    if start == stop:
        return 0
    deepest, pending = 0, [(0, 1)]
    while pending:
        split, depth = pending.pop()
        deepest = max(deepest, depth)
        for child in (left[start + split], right[start + split]):
            if child >= 0:
                pending.append((child, depth + 1))
    return deepest


@njit(nogil=True, cache=True, inline="always")
def _read(value):
    """A value as LightGBM reads it: within ``kZeroThreshold`` of 0 it is an absent feature, 0."""
    return 0.0 if abs(value) <= ZERO_THRESHOLD else value


@njit(nogil=True, cache=True, inline="always")
def _goes_left(as_zero, one_hot, threshold, category_mask):
    """A numerical split without a missing-value side (categorical splits hold a NaN
    threshold, never met) or a categorical one sending only categories below 64 left (numerical
    splits hold an empty mask): one test for both, without a branch."""
    return (as_zero <= threshold) | ((one_hot & category_mask) != 0)


@njit(nogil=True, cache=True)
def _special_goes_left(
    value, threshold, missing_type, default_left, bitset_start, bitset_stop, bitset_words
):
    """A split the branch-free test does not cover: a categorical one that sends a category
    past 63 left (``missing_type`` -1), or a numerical one with a side for zero or NaN."""
    if missing_type < 0:
        if np.isnan(value) or not -1.0 < value < 2147483648.0:
            return False  # NaN and negative codes go right (and nothing past int's range)
        code = int(value)
        word = bitset_start + (code >> 5)
        return word < bitset_stop and (bitset_words[word] >> (code & 31)) & 1 == 1
    if np.isnan(value) and missing_type != _MISSING_NAN:
        value = 0.0
    if (missing_type == _MISSING_ZERO and -ZERO_THRESHOLD <= value <= ZERO_THRESHOLD) or (
        missing_type == _MISSING_NAN and np.isnan(value)
    ):
        return default_left
    return value <= threshold


@njit(nogil=True, cache=True, boundscheck=False)
def _raw_scores(  # noqa: PLR0913 - the forest's arrays, as numba takes them
    columns, n_outputs, feature, threshold, left, right, kind, category_mask, missing_type,
    default_left, bitset_start, bitset_stop, bitset_words, split_start, leaf_start, leaf_value,
    depth, has_special, complete_start, complete_leaf_start, complete_feature,
    complete_threshold, complete_mask, complete_leaf_value, out,
):  # fmt: skip
    """Add each row's tree outputs into ``out`` (rows x outputs, zeros), tree by tree.

    ``columns`` is the batch transposed (features x rows, C order: one compiled signature).
    Trees laid out complete (``complete_*``, see :class:`_CompleteTrees`) are walked that way,
    the others by their child indexes.
    """
    n_features, n_rows = columns.shape
    n_trees = len(split_start) - 1
    as_zero = np.empty((_BLOCK_ROWS, n_features))  # NaN read as 0
    one_hot = np.empty((_BLOCK_ROWS, n_features), dtype=np.uint64)  # bit of a category < 64
    node = np.empty(_BLOCK_ROWS, dtype=np.int64)
    for first in range(0, n_rows, _BLOCK_ROWS):
        rows = min(_BLOCK_ROWS, n_rows - first)
        for f in range(n_features):
            for r in range(rows):
                v = _read(columns[f, first + r])
                missing = np.isnan(v)
                read = 0.0 if missing else v
                as_zero[r, f] = read
                # A category code: static_cast<int> truncates towards 0, so (-1, 64) are the
                # codes 0..63 (written without a branch: the values mix kinds).
                inside = (read > -1.0) & (read < 64.0) & ~missing
                code = np.uint64(int(min(max(read, 0.0), 63.0)))
                one_hot[r, f] = (np.uint64(1) << code) * np.uint64(inside)
        for t in range(n_trees):
            output = t % n_outputs
            leaves = leaf_start[t]
            if depth[t] == 0:  # a one-leaf tree
                for r in range(rows):
                    out[first + r, output] += leaf_value[leaves]
                continue
            for r in range(rows):
                node[r] = 0
            base = complete_start[t]
            if base >= 0:
                for _ in range(depth[t]):
                    for r in range(rows):
                        at = node[r]
                        g = base + at
                        f = complete_feature[g]
                        go_left = _goes_left(
                            as_zero[r, f], one_hot[r, f], complete_threshold[g], complete_mask[g]
                        )
                        node[r] = 2 * at + 2 - np.int64(go_left)  # left child 2i+1, right 2i+2
                # Node numbers past the splits are leaf slots, in order.
                slots = complete_leaf_start[t] - ((1 << depth[t]) - 1)
                for r in range(rows):
                    out[first + r, output] += complete_leaf_value[slots + node[r]]
                continue
            splits = split_start[t]
            if not has_special[t]:
                for _ in range(depth[t]):
                    for r in range(rows):
                        at = node[r]
                        if at >= 0:  # else at a leaf already
                            g = splits + at
                            f = feature[g]
                            go_left = _goes_left(
                                as_zero[r, f], one_hot[r, f], threshold[g], category_mask[g]
                            )
                            node[r] = left[g] if go_left else right[g]
            else:
                for _ in range(depth[t]):
                    for r in range(rows):
                        at = node[r]
                        if at >= 0:
                            g = splits + at
                            if kind[g] != _SPECIAL:
                                f = feature[g]
                                go_left = _goes_left(
                                    as_zero[r, f], one_hot[r, f], threshold[g], category_mask[g]
                                )
                            else:
                                go_left = _special_goes_left(
                                    _read(columns[feature[g], first + r]), threshold[g],
                                    missing_type[g], default_left[g], bitset_start[g],
                                    bitset_stop[g], bitset_words,
                                )  # fmt: skip
                            node[r] = left[g] if go_left else right[g]
            for r in range(rows):
                out[first + r, output] += leaf_value[leaves + ~node[r]]
    return out


@njit(nogil=True, cache=True)
def _sigmoid(raw, scale, out):
    """LightGBM's binary output: ``1 / (1 + exp(-sigmoid * raw))``."""
    for i in range(len(raw)):
        out[i] = 1.0 / (1.0 + math.exp(-scale * raw[i]))
    return out


@njit(nogil=True, cache=True)
def _softmax(raw):
    """LightGBM's multiclass output (``Common::Softmax``), row by row, in place."""
    n_rows, n_classes = raw.shape
    for i in range(n_rows):
        highest = raw[i, 0]
        for k in range(1, n_classes):
            highest = max(raw[i, k], highest)
        total = 0.0
        for k in range(n_classes):
            raw[i, k] = math.exp(raw[i, k] - highest)
            total += raw[i, k]
        for k in range(n_classes):
            raw[i, k] /= total
    return raw


class CompiledTrees:
    """A booster's trees for :func:`_raw_scores`, with its output transform.

    :meth:`predict` returns what ``booster.predict(values)`` does (probabilities: ``(rows,)``
    for a binary booster, ``(rows, classes)`` for a multiclass one). Raises
    :class:`UnsupportedModel` for a model it does not reproduce.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        header, trees = _parse_model(booster.model_to_string())
        objective = header.get("objective", "").split()
        if not objective or objective[0] not in ("binary", "multiclass", "multiclassova"):
            raise UnsupportedModel(f"objective {header.get('objective')!r}")
        if objective[0] == "multiclassova" or "average_output" in header:
            raise UnsupportedModel("one-vs-all or random-forest output")
        self.n_features = int(header["max_feature_idx"]) + 1
        self.n_outputs = int(header.get("num_tree_per_iteration", "1"))
        self.multiclass = objective[0] == "multiclass"
        self.sigmoid = 1.0
        for parameter in objective[1:]:
            if parameter.startswith("sigmoid:"):
                self.sigmoid = float(parameter.split(":", 1)[1])
        self._forest = _forest(trees)

    def raw_scores(self, values: np.ndarray) -> np.ndarray:
        """Each row's summed tree outputs, ``(rows, outputs)`` (LightGBM's ``raw_score``)."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {values.shape}")
        forest = self._forest
        out = np.zeros((len(values), self.n_outputs))
        # No copy for the column-major matrix the feature step builds.
        columns = np.ascontiguousarray(values.T)
        return _raw_scores(
            columns, self.n_outputs, forest.feature, forest.threshold, forest.left, forest.right,
            forest.kind, forest.category_mask, forest.missing_type, forest.default_left,
            forest.bitset_start, forest.bitset_stop, forest.bitset_words, forest.split_start,
            forest.leaf_start, forest.leaf_value, forest.depth, forest.has_special,
            forest.complete.start, forest.complete.leaf_start, forest.complete.feature,
            forest.complete.threshold, forest.complete.category_mask,
            forest.complete.leaf_value, out,
        )  # fmt: skip

    def predict(self, values: np.ndarray) -> np.ndarray:
        raw = self.raw_scores(values)
        if self.multiclass:
            return _softmax(raw)
        return _sigmoid(raw[:, 0], self.sigmoid, np.empty(len(raw)))


def probe_rows(trees: CompiledTrees, rows: int = 512) -> np.ndarray:
    """Rows that send the trees' splits both ways and read every kind of missing value.

    Each value is, per feature, one of its numerical split thresholds (and its neighbours on
    either side), a category code (small, past 63, negative, fractional), 0, -0, a value within
    ``kZeroThreshold`` of 0, NaN or infinity, drawn with a fixed seed.
    """
    forest = trees._forest
    numerical = ~np.isnan(forest.threshold)  # categorical splits hold NaN
    thresholds: list[list[float]] = [[] for _ in range(trees.n_features)]
    for f, threshold in zip(forest.feature[numerical], forest.threshold[numerical], strict=True):
        thresholds[f] += [threshold, np.nextafter(threshold, -np.inf),
                          np.nextafter(threshold, np.inf)]  # fmt: skip
    special = [0.0, -0.0, 1e-36, -1e-36, np.nan, np.inf, -np.inf, -0.5, -1.0, -3.0, 0.5]
    codes = [float(c) for c in (*range(70), 95, 127, 128, 255, 1000, 2**31, 2**40)]
    rng = np.random.default_rng(20261129)
    out = np.empty((rows, trees.n_features))
    for f in range(trees.n_features):
        pool = np.asarray([*thresholds[f], *special, *codes], dtype=np.float64)
        out[:, f] = rng.choice(pool, size=rows)
    return out


def compiled_trees(booster: lgb.Booster) -> CompiledTrees | None:
    """The booster's :class:`CompiledTrees`, built on first use and kept while it lives, or
    ``None`` when they would not give LightGBM's numbers (callers then use LightGBM).

    The first build in a process also compiles the kernel (about a second; numba then caches
    it on disk).
    """
    return _COMPILED.get(booster)


def _checked_compiled_trees(booster: lgb.Booster) -> CompiledTrees | None:
    """:class:`CompiledTrees` of the booster if they predict what it predicts on probe rows."""
    try:
        trees = CompiledTrees(booster)
    except UnsupportedModel as reason:
        log.info("trees not compiled (%s); LightGBM predicts", reason)
        return None
    probe = probe_rows(trees)
    want = np.asarray(booster.predict(probe, num_threads=1))
    # Read-only batches (a frame's values) are a second compiled signature: both now.
    read_only = probe.copy()
    read_only.setflags(write=False)
    if not all(
        np.array_equal(trees.predict(rows), want, equal_nan=True) for rows in (probe, read_only)
    ):
        log.warning("compiled trees differ from LightGBM on probe rows; using LightGBM")
        return None
    return trees


_COMPILED: BoosterCache[CompiledTrees | None] = BoosterCache(_checked_compiled_trees)
