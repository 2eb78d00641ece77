"""Code tables kept as data files: CARCs, reason categories, filing indicators, payer defaults.

One loader serves the simulator, the feature pipeline, the scorer and the worklist, so a rule
changes in one place: edit the CSV under ``features/data/``, not the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from types import ModuleType

import numpy as np
import pandas as pd

DENIAL_CATEGORIES: tuple[str, ...] = (
    "eligibility",
    "missing_information",
    "authorization",
    "non_covered",
    "documentation",
    "medical_necessity",
    "timely_filing",
    "coding",
    "credentialing",
    "duplicate",
    "other",
)
"""Root-cause categories of a denial, in a fixed order (the reason model's class order)."""

NON_DENIAL_CATEGORIES: tuple[str, ...] = ("patient_share", "contractual")

PAYER_TYPES: tuple[str, ...] = (
    "commercial",
    "medicare",
    "medicare_advantage",
    "medicaid",
    "other",
)


def _read_table(name: str) -> pd.DataFrame:
    path = resources.files("features") / "data" / name
    with path.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


def _as_bool(column: pd.Series) -> pd.Series:
    return column.str.strip().str.lower().map({"true": True, "false": False}).astype(bool)


@dataclass(frozen=True)
class CarcInfo:
    """One Claim Adjustment Reason Code and the root cause it usually signals."""

    code: str
    description: str
    category: str
    default_group: str
    is_denial: bool
    appealable: bool
    rarc_required: bool


@dataclass(frozen=True)
class CodeTables:
    """The reference tables, loaded once (see :func:`code_tables`)."""

    carc: pd.DataFrame
    reason_categories: pd.DataFrame
    claim_filing_indicators: pd.DataFrame
    payer_type_defaults: pd.DataFrame

    def carc_info(self, code: str) -> CarcInfo | None:
        """The CARC's row, or ``None`` for a code the table does not know."""
        return self._carc_infos.get(str(code).strip().upper())

    @cached_property
    def _carc_infos(self) -> dict[str, CarcInfo]:
        # Built once: a million claims' adjustments look codes up row by row, and a pandas
        # .loc per lookup cost 25 s of a million-claim report.
        return {
            str(key): CarcInfo(
                code=str(key),
                description=row["description"],
                category=row["category"],
                default_group=row["default_group"],
                is_denial=bool(row["is_denial"]),
                appealable=bool(row["appealable"]),
                rarc_required=bool(row["rarc_required"]),
            )
            for key, row in self.carc.iterrows()
        }

    def carc_category(self, code: str) -> str:
        """Root-cause category of a CARC; ``other`` for an unknown code."""
        info = self.carc_info(code)
        return info.category if info else "other"

    def is_denial_carc(self, code: str, group_code: str) -> bool:
        """Whether an adjustment means a denial rather than a patient share or contractual cut.

        PR-1/2/3 and CO-45 are the ordinary price of a paid claim; an unknown CARC under CO or PI
        is treated as a denial so that a code missing from the table is never silently ignored.
        """
        info = self.carc_info(code)
        if info is None:
            return group_code.upper() in {"CO", "PI", "OA"}
        return info.is_denial

    def denial_mask(self, carcs: pd.Series, groups: pd.Series) -> np.ndarray:
        """:meth:`is_denial_carc` of each row of two aligned columns, each distinct (CARC, group)
        pair looked up once (a million claims' adjustments hold a few dozen pairs)."""
        rows = pd.DataFrame(
            {"carc": carcs.to_numpy(dtype=object), "group": groups.to_numpy(dtype=object)}
        )
        pairs = rows.drop_duplicates()
        pairs["is_denial"] = [
            self.is_denial_carc(str(c), str(g))
            for c, g in zip(pairs["carc"], pairs["group"], strict=True)
        ]
        return rows.merge(pairs, how="left", on=["carc", "group"])["is_denial"].to_numpy(bool)

    def payer_type_for_indicator(self, sbr09: str | None) -> str:
        """Payer type from the 837's claim filing indicator (SBR09); ``other`` when unknown."""
        if not sbr09:
            return "other"
        key = str(sbr09).strip().upper()
        if key in self.claim_filing_indicators.index:
            return str(self.claim_filing_indicators.loc[key, "payer_type"])
        return "other"

    def timely_filing_days(self, payer_type: str) -> int:
        return int(self.payer_type_defaults.loc[payer_type, "timely_filing_days"])

    def appeal_window_days(self, payer_type: str) -> int:
        return int(self.payer_type_defaults.loc[payer_type, "appeal_window_days"])

    def category_fix(self, category: str) -> str:
        if category in self.reason_categories.index:
            return str(self.reason_categories.loc[category, "suggested_fix"])
        return ""

    def category_label(self, category: str) -> str:
        if category in self.reason_categories.index:
            return str(self.reason_categories.loc[category, "label"])
        return category.replace("_", " ").capitalize()


@lru_cache(maxsize=1)
def code_tables() -> CodeTables:
    """Load every code table from ``features/data`` (cached: they do not change at run time)."""
    carc = _read_table("carc.csv")
    for column in ("is_denial", "appealable", "rarc_required"):
        carc[column] = _as_bool(carc[column])
    carc["carc"] = carc["carc"].str.strip().str.upper()
    carc = carc.set_index("carc", verify_integrity=True)

    categories = _read_table("reason_categories.csv")
    for column in ("preventable", "clinical", "hard_by_default"):
        categories[column] = _as_bool(categories[column])
    categories["recovery_when_worked"] = categories["recovery_when_worked"].astype(float)
    categories = categories.set_index("category", verify_integrity=True)

    indicators = _read_table("claim_filing_indicators.csv").set_index("code", verify_integrity=True)

    defaults = _read_table("payer_type_defaults.csv")
    for column in ("timely_filing_days", "appeal_window_days"):
        defaults[column] = defaults[column].astype(int)
    defaults = defaults.set_index("payer_type", verify_integrity=True)

    unknown = set(carc["category"]) - set(DENIAL_CATEGORIES) - set(NON_DENIAL_CATEGORIES)
    if unknown:
        raise ValueError(f"carc.csv names categories missing from reason_categories: {unknown}")
    return CodeTables(
        carc=carc,
        reason_categories=categories,
        claim_filing_indicators=indicators,
        payer_type_defaults=defaults,
    )


@lru_cache(maxsize=1)
def _icd10cm() -> ModuleType:
    """The ICD-10-CM code set (the ``simple-icd-10-cm`` package), loaded on first use.

    Importing it parses CMS's tabular list (about 2 s and 180 MB), so only a process that words
    a diagnosis pays for it.
    """
    import simple_icd_10_cm

    return simple_icd_10_cm


def preload_code_sets() -> None:
    """Load the ICD-10-CM code set now (a server's start-up) rather than in the first
    explanation that names a diagnosis."""
    _icd10cm()


@lru_cache(maxsize=4096)
def diagnosis_description(code: str) -> str | None:
    """The ICD-10-CM description of a diagnosis code as a claim writes it (``G43909``, with or
    without its dot); ``None`` for a code the code set does not hold.
    """
    codes = _icd10cm()
    key = code.strip().upper()
    if not codes.is_valid_item(key):
        return None
    return str(codes.get_description(key))
