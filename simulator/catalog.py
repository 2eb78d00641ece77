"""The clinical side of the simulated world: procedures, diagnoses, visit templates and edits.

Everything here is plain, readable data so a reviewer can check it against the real code sets:

* :data:`PROCEDURES` - CPT/HCPCS codes the practice bills, with the family they belong to (what
  payers' authorization and coverage rules are written against), an approximate national Medicare
  allowed amount, and the flags the payers' edits look at (ordered service, sex, age band, dates
  the code was valid).
* :data:`NECESSITY_RULES` - for each group of procedures, the ICD-10-CM codes that support it
  (``core``) and the ones only lenient payers accept (``weak``). Every other diagnosis does not
  support the procedure.
* :data:`DIAGNOSIS_PROFILES` - how the practice picks a principal diagnosis for a visit.
* :data:`TEMPLATES` - the visit types of each specialty and the service lines they produce.

Payer policy (which codes need an authorization, which diagnoses a payer accepts, which code
pairs it edits...) is not here: it belongs to a world (:mod:`simulator.spec`).

Medicare rates are rounded national non-facility figures (2024-2026 physician fee schedule and
lab fee schedule scale); the practice's charge master bills :data:`CHARGE_MULTIPLIER` times them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CHARGE_MULTIPLIER = 2.5
"""Billed charge over the Medicare rate (the reference says 2-3x)."""

PROFESSIONAL_COMPONENT_SHARE = 0.3
"""Share of a global imaging fee paid for the reading alone (modifier 26)."""

TELEPHONE_CODES_DELETED = dt.date(2025, 1, 1)
"""CPT deleted 99441-99443 (telephone E/M) on 1 January 2025; 98008-98015 replaced them."""


@dataclass(frozen=True)
class Procedure:
    """One billable CPT/HCPCS code."""

    code: str
    description: str
    family: str
    medicare_rate: float
    ordered: bool = False
    """An ordered service whoever renders it: the claim must name the ordering provider. Imaging
    and therapy need one only when a radiologist or therapist renders them (see
    ``simulator.world.ORDER_TAKING_SPECIALTIES``)."""
    needs_em_modifier_25: bool = False
    """A same-day E/M with this procedure must carry modifier 25."""
    sex: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    """Last valid day is the day before this date."""
    unlisted: bool = False
    lateral: bool = False
    """Bilateral anatomy: the practice adds LT or RT."""


def _p(code: str, description: str, family: str, rate: float, **flags: object) -> Procedure:
    return Procedure(code, description, family, rate, **flags)  # type: ignore[arg-type]


_DELETED = TELEPHONE_CODES_DELETED
PROCEDURES: tuple[Procedure, ...] = (
    # Office E/M, new and established (em_* families are what modifier 25 attaches to).
    _p("99202", "Office visit, new patient, straightforward MDM", "em_new", 73.0),
    _p("99203", "Office visit, new patient, low MDM", "em_new", 112.0),
    _p("99204", "Office visit, new patient, moderate MDM", "em_new", 168.0),
    _p("99205", "Office visit, new patient, high MDM", "em_new", 222.0),
    _p("99211", "Office visit, established patient, minimal", "em_established", 23.0),
    _p("99212", "Office visit, established patient, straightforward MDM", "em_established", 57.0),
    _p("99213", "Office visit, established patient, low MDM", "em_established", 92.0),
    _p("99214", "Office visit, established patient, moderate MDM", "em_established", 139.16),
    _p("99215", "Office visit, established patient, high MDM", "em_established", 185.0),
    # Preventive medicine by age band; Medicare covers the annual wellness visit instead.
    _p("99392", "Preventive visit, established, age 1-4", "preventive", 98.0, min_age=1, max_age=4),
    _p(
        "99393",
        "Preventive visit, established, age 5-11",
        "preventive",
        104.0,
        min_age=5,
        max_age=11,
    ),
    _p(
        "99394",
        "Preventive visit, established, age 12-17",
        "preventive",
        113.0,
        min_age=12,
        max_age=17,
    ),
    _p(
        "99395",
        "Preventive visit, established, age 18-39",
        "preventive",
        118.0,
        min_age=18,
        max_age=39,
    ),
    _p(
        "99396",
        "Preventive visit, established, age 40-64",
        "preventive",
        126.0,
        min_age=40,
        max_age=64,
    ),
    _p("99397", "Preventive visit, established, age 65+", "preventive", 136.0, min_age=65),
    _p("G0439", "Annual wellness visit, subsequent", "wellness_visit", 131.0),
    # Telephone E/M: deleted codes and their replacements.
    _p("99442", "Telephone E/M, 11-20 minutes", "telephone_em", 56.0, valid_until=_DELETED),
    _p("99443", "Telephone E/M, 21-30 minutes", "telephone_em", 80.0, valid_until=_DELETED),
    _p(
        "98013",
        "Audio-only visit, established patient, low MDM",
        "telephone_em",
        60.0,
        valid_from=_DELETED,
    ),
    _p(
        "98014",
        "Audio-only visit, established patient, moderate MDM",
        "telephone_em",
        95.0,
        valid_from=_DELETED,
    ),
    # Laboratory.
    _p("36415", "Routine venipuncture", "lab", 3.0),
    _p("80053", "Comprehensive metabolic panel", "lab", 10.6),
    _p("85025", "Complete blood count with automated differential", "lab", 7.8),
    _p("83036", "Hemoglobin A1c", "lab", 9.7),
    _p("80061", "Lipid panel", "lab", 13.4),
    _p("84443", "Thyroid stimulating hormone", "lab", 16.8),
    _p(
        "81162",
        "BRCA1/BRCA2 full sequence and duplication/deletion analysis",
        "genetic",
        1800.0,
        ordered=True,
    ),
    _p(
        "81479",
        "Unlisted molecular pathology procedure",
        "genetic",
        600.0,
        ordered=True,
        unlisted=True,
    ),
    # Screening with a sex-specific code.
    _p(
        "G0101",
        "Cervical or vaginal cancer screening; pelvic and breast exam",
        "screening",
        42.0,
        sex="F",
    ),
    _p(
        "Q0091",
        "Screening Pap smear; obtaining, preparing and conveyance",
        "screening",
        45.0,
        sex="F",
    ),
    _p(
        "G0102", "Prostate cancer screening; digital rectal examination", "screening", 23.0, sex="M"
    ),
    # Injections, drugs, vaccines, infusion.
    _p(
        "20610",
        "Arthrocentesis or injection, major joint",
        "joint_injection",
        62.0,
        needs_em_modifier_25=True,
        lateral=True,
    ),
    _p("J3301", "Injection, triamcinolone acetonide, per 10 mg", "drug", 1.8),
    _p("J1030", "Injection, methylprednisolone acetate, 40 mg", "drug", 4.5),
    _p("J1885", "Injection, ketorolac tromethamine, per 15 mg", "drug", 0.4),
    _p(
        "96372",
        "Therapeutic injection, subcutaneous or intramuscular",
        "injection",
        15.0,
        needs_em_modifier_25=True,
    ),
    _p("90686", "Influenza vaccine, quadrivalent, preservative free, IM", "vaccine", 20.0),
    _p(
        "90471",
        "Immunization administration, first vaccine",
        "vaccine",
        23.0,
        needs_em_modifier_25=True,
    ),
    _p("96365", "IV infusion for therapy, initial, up to 1 hour", "infusion", 72.0),
    _p("J1745", "Injection, infliximab, excludes biosimilar, 10 mg", "specialty_drug", 45.0),
    # Cardiology.
    _p("93000", "Electrocardiogram, 12 leads, with interpretation and report", "ecg", 16.0),
    _p("93306", "Transthoracic echocardiography, complete, with Doppler", "cardiac_imaging", 200.0),
    _p("93350", "Stress echocardiography", "cardiac_imaging", 230.0),
    _p("78452", "Myocardial perfusion imaging, SPECT, multiple studies", "cardiac_imaging", 420.0),
    _p(
        "93015",
        "Cardiovascular stress test with supervision, interpretation and report",
        "stress_test",
        72.0,
    ),
    # Imaging.
    _p("70551", "MRI brain without contrast", "advanced_imaging", 225.0),
    _p("70553", "MRI brain without and with contrast", "advanced_imaging", 350.0),
    _p("72148", "MRI lumbar spine without contrast", "advanced_imaging", 225.0),
    _p(
        "73721",
        "MRI lower extremity joint without contrast",
        "advanced_imaging",
        225.0,
        lateral=True,
    ),
    _p("74177", "CT abdomen and pelvis with contrast", "advanced_imaging", 340.0),
    _p("71250", "CT thorax without contrast", "advanced_imaging", 140.0),
    _p("71046", "Radiologic exam, chest, 2 views", "basic_imaging", 32.0),
    _p("73562", "Radiologic exam, knee, 3 views", "basic_imaging", 38.0, lateral=True),
    # Orthopaedic surgery (professional fees).
    _p(
        "29881",
        "Knee arthroscopy with medial or lateral meniscectomy",
        "ortho_surgery",
        480.0,
        lateral=True,
    ),
    _p(
        "29877",
        "Knee arthroscopy, debridement/shaving of articular cartilage",
        "ortho_surgery",
        440.0,
        lateral=True,
    ),
    _p("27447", "Total knee arthroplasty", "ortho_surgery", 1320.0, lateral=True),
    _p(
        "20999",
        "Unlisted procedure, musculoskeletal system, general",
        "ortho_surgery",
        300.0,
        unlisted=True,
    ),
    # Sleep medicine and equipment.
    _p("95810", "Polysomnography, 4 or more parameters, attended", "sleep_study", 560.0),
    _p("95806", "Home sleep study, unattended", "sleep_study", 165.0),
    _p("E0601", "Continuous positive airway pressure (CPAP) device", "dme", 85.0, ordered=True),
    # Physical therapy.
    _p("97161", "Physical therapy evaluation, low complexity", "physical_therapy", 100.0),
    _p("97162", "Physical therapy evaluation, moderate complexity", "physical_therapy", 100.0),
    _p("97110", "Therapeutic exercises, each 15 minutes", "physical_therapy", 29.0),
    _p("97140", "Manual therapy techniques, each 15 minutes", "physical_therapy", 27.0),
    _p("97530", "Therapeutic activities, each 15 minutes", "physical_therapy", 35.0),
)

PROCEDURE_FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(p.family for p in PROCEDURES))
EM_FAMILIES: frozenset[str] = frozenset({"em_new", "em_established"})

NDC_OF_CODE: dict[str, tuple[str, str, float]] = {
    "J3301": ("00003029305", "ML", 0.25),  # triamcinolone 40 mg/mL: 0.25 mL per 10 mg unit
    "J1030": ("00009030602", "ML", 1.0),  # methylprednisolone acetate 40 mg/mL
    "J1885": ("00409379501", "ML", 0.5),  # ketorolac 30 mg/mL: 0.5 mL per 15 mg unit
    "J1745": ("57894003001", "UN", 0.1),  # infliximab 100 mg vial: a tenth per 10 mg unit
}
"""Drug codes' 11-digit NDC (as billed in 2410 LIN*N4), its unit and the quantity per HCPCS unit.
The NDCs merely look real."""

NCCI_BYPASS_MODIFIERS: frozenset[str] = frozenset({"59", "XE", "XP", "XS", "XU"})


@dataclass(frozen=True)
class NecessityRule:
    """Diagnoses that support a group of procedures (simplified LCD/NCD coverage articles)."""

    core: tuple[str, ...]
    weak: tuple[str, ...]
    """Accepted only by payers lenient for this group (symptom-only or screening diagnoses)."""
    repeat_interval_days: int | None = None
    """A second service in this group for the patient within this many days is 'too frequent'."""


NECESSITY_RULES: dict[str, NecessityRule] = {
    "mri_brain": NecessityRule(("G43909", "G40909", "R569", "G459"), ("R519", "R42"), 180),
    "mri_lumbar": NecessityRule(("M5416", "M5417", "M48061", "M5116"), ("M5450", "M5459"), 180),
    "mri_knee": NecessityRule(("M23221", "M23222", "M1711", "M1712"), ("M25561", "M25562"), 180),
    "ct_abdomen": NecessityRule(("R1031", "K5792", "N200"), ("R109", "R1084"), 180),
    "ct_chest": NecessityRule(("R911", "R918", "J449"), ("R059", "R0602"), 180),
    "cardiac_imaging": NecessityRule(
        ("I2510", "I509", "I4891", "R079", "R0789"), ("R002", "R0602", "R5383"), 180
    ),
    "sleep": NecessityRule(("G4733", "G4730"), ("R0683", "G4700"), 365),
    "infusion": NecessityRule(("M0579", "K5090", "L400"), ("M069",)),
    "knee_surgery": NecessityRule(("M23221", "M23222", "M1711", "M1712"), ("M25561", "M25562")),
    "genetic": NecessityRule(("Z1501", "Z803"), ("Z800", "Z8042"), 3650),
    "hba1c": NecessityRule(("E119", "E1165", "R7303"), ("Z0000", "R5383"), 80),
    "physical_therapy": NecessityRule(
        ("M5450", "M5416", "M1711", "M1712", "M25511", "M6281", "M23221"), ("R262", "Z9181")
    ),
    "joint_injection": NecessityRule(("M1711", "M1712", "M19011", "M25561", "M25562"), ("M79604",)),
}

NECESSITY_GROUP_OF_CODE: dict[str, str] = {
    "70551": "mri_brain",
    "70553": "mri_brain",
    "72148": "mri_lumbar",
    "73721": "mri_knee",
    "74177": "ct_abdomen",
    "71250": "ct_chest",
    "93306": "cardiac_imaging",
    "93350": "cardiac_imaging",
    "78452": "cardiac_imaging",
    "95810": "sleep",
    "95806": "sleep",
    "E0601": "sleep",
    "96365": "infusion",
    "J1745": "infusion",
    "29881": "knee_surgery",
    "29877": "knee_surgery",
    "27447": "knee_surgery",
    "81162": "genetic",
    "81479": "genetic",
    "83036": "hba1c",
    "97161": "physical_therapy",
    "97162": "physical_therapy",
    "97110": "physical_therapy",
    "97140": "physical_therapy",
    "97530": "physical_therapy",
    "20610": "joint_injection",
}

UNRELATED_DIAGNOSES: tuple[str, ...] = ("J069", "I10", "K219", "F419", "E785", "N390")
"""Diagnoses that support none of the ruled procedures (a wrong or missing diagnosis link)."""


DIAGNOSIS_PROFILES: dict[str, tuple[tuple[str, float], ...]] = {
    "primary_care": (
        ("I10", 14),
        ("E119", 8),
        ("E785", 7),
        ("J069", 8),
        ("M5450", 5),
        ("J209", 4),
        ("F419", 5),
        ("F32A", 4),
        ("K219", 4),
        ("E039", 4),
        ("N390", 3),
        ("R519", 3),
        ("J0190", 3),
        ("J029", 3),
        ("E1165", 3),
        ("M25561", 3),
        ("R079", 2),
        ("E669", 4),
        ("D649", 2),
        ("R5383", 3),
        ("R509", 1),
        ("G4733", 2),
    ),
    "chronic_care": (("E785", 30), ("I10", 30), ("E039", 15), ("R5383", 10), ("D649", 15)),
    "cardiology": (
        ("I10", 25),
        ("I2510", 20),
        ("I4891", 15),
        ("I509", 10),
        ("R079", 10),
        ("R002", 10),
        ("E785", 10),
    ),
    "orthopaedics": (
        ("M1711", 20),
        ("M1712", 15),
        ("M25561", 15),
        ("M25511", 10),
        ("M5450", 15),
        ("M23221", 10),
        ("M19011", 15),
    ),
    "neurology": (
        ("G43909", 30),
        ("G40909", 15),
        ("R519", 15),
        ("G4733", 20),
        ("R42", 10),
        ("G459", 10),
    ),
    "acute_pain": (("M5450", 40), ("M25561", 20), ("M25511", 20), ("R519", 20)),
    "immunization": (("Z23", 1),),
    "preventive": (("Z0000", 7), ("Z0001", 3)),
    "chest_xray": (("R059", 40), ("R0602", 30), ("J189", 30)),
}

COMORBIDITIES: tuple[str, ...] = (
    "I10",
    "E119",
    "E785",
    "E669",
    "K219",
    "F419",
    "Z7984",
    "E039",
    "F32A",
    "M5450",
)

SCREENING_DIAGNOSIS: dict[str, str] = {"G0101": "Z01419", "Q0091": "Z124", "G0102": "Z125"}


@dataclass(frozen=True)
class LineSpec:
    """One service line a visit template may produce.

    ``codes`` are alternatives (one is picked per claim, by ``weights``); a code starting with
    ``@`` is resolved from the patient and date (E/M level mix, preventive age band, ...).
    """

    codes: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    units: tuple[int, int] = (1, 1)
    probability: float = 1.0


def _line(
    *codes: str,
    weights: tuple[float, ...] | None = None,
    units: tuple[int, int] = (1, 1),
    p: float = 1.0,
) -> LineSpec:
    return LineSpec(codes, weights, units, p)


@dataclass(frozen=True)
class VisitTemplate:
    """A kind of visit: its service lines, the diagnosis it is billed with, where it happens."""

    name: str
    specialty: str
    weight: float
    lines: tuple[LineSpec, ...]
    diagnosis: str
    """A key of :data:`DIAGNOSIS_PROFILES` or of :data:`NECESSITY_RULES`."""
    places: tuple[tuple[str, float], ...] = (("11", 1.0),)


EM_ESTABLISHED_MIX: tuple[tuple[str, float], ...] = (
    ("99211", 2.6),
    ("99212", 2.8),
    ("99213", 43.2),
    ("99214", 48.4),
    ("99215", 2.9),
)
"""Established office visits by level (Medicare family medicine, per the reference)."""
EM_NEW_MIX: tuple[tuple[str, float], ...] = (
    ("99202", 8.0),
    ("99203", 42.0),
    ("99204", 40.0),
    ("99205", 10.0),
)

_OFFICE_OR_TELEHEALTH = (("11", 0.93), ("02", 0.03), ("10", 0.03), ("12", 0.01))
_EST = _line("@em_established")
_NEW = _line("@em_new")


def _primary_care(specialty: str, labs: float, infusion: float) -> tuple[VisitTemplate, ...]:
    t = VisitTemplate
    return (
        t("office_visit", specialty, 0.45, (_EST,), "primary_care", _OFFICE_OR_TELEHEALTH),
        t("new_patient_visit", specialty, 0.06, (_NEW,), "primary_care"),
        t(
            "visit_with_labs",
            specialty,
            labs,
            (
                _EST,
                _line("36415", p=0.9),
                _line("80053", p=0.6),
                _line("85025", p=0.5),
                _line("80061", p=0.4),
                _line("84443", p=0.25),
            ),
            "chronic_care",
        ),
        t(
            "diabetes_visit",
            specialty,
            0.04,
            (_EST, _line("36415", p=0.9), _line("83036"), _line("80053", p=0.5)),
            "hba1c",
        ),
        t("visit_with_ecg", specialty, 0.04, (_EST, _line("93000")), "cardiology"),
        t(
            "joint_injection_visit",
            specialty,
            0.03,
            (_EST, _line("20610"), _line("J3301", units=(4, 4))),
            "joint_injection",
        ),
        t(
            "preventive_visit",
            specialty,
            0.08,
            (
                _line("@preventive"),
                _line("36415", p=0.4),
                _line("80053", p=0.35),
                _line("80061", p=0.35),
            ),
            "preventive",
        ),
        t(
            "telephone_visit",
            specialty,
            0.04,
            (_line("@telephone"),),
            "primary_care",
            (("10", 0.6), ("02", 0.37), ("11", 0.03)),
        ),
        t(
            "visit_with_vaccine",
            specialty,
            0.05,
            (_EST, _line("90686"), _line("90471")),
            "immunization",
        ),
        t(
            "cancer_screening",
            specialty,
            0.03,
            (_line("@screening"), _line("@pap", p=0.7)),
            "screening",
        ),
        t(
            "visit_with_injection",
            specialty,
            0.02,
            (_EST, _line("96372"), _line("J1885", units=(2, 2))),
            "acute_pain",
        ),
        t(
            "infusion",
            specialty,
            infusion,
            (_line("96365"), _line("J1745", units=(30, 50)), _line("96372", p=0.15)),
            "infusion",
        ),
        t(
            "genetic_test",
            specialty,
            infusion / 2,
            (_line("81162", "81479", weights=(0.6, 0.4)),),
            "genetic",
            (("81", 0.7), ("11", 0.3)),  # mostly sent out to the practice's reference lab
        ),
    )


TEMPLATES: tuple[VisitTemplate, ...] = (
    *_primary_care("family_medicine", labs=0.10, infusion=0.0),
    *_primary_care("internal_medicine", labs=0.12, infusion=0.02),
    VisitTemplate("office_visit", "cardiology", 0.30, (_EST,), "cardiology"),
    VisitTemplate("new_patient_visit", "cardiology", 0.10, (_NEW,), "cardiology"),
    VisitTemplate("visit_with_ecg", "cardiology", 0.20, (_EST, _line("93000")), "cardiology"),
    VisitTemplate("echocardiogram", "cardiology", 0.17, (_line("93306"),), "cardiac_imaging"),
    VisitTemplate("stress_echo", "cardiology", 0.08, (_line("93350"),), "cardiac_imaging"),
    VisitTemplate(
        "nuclear_stress_test",
        "cardiology",
        0.07,
        (_line("78452"), _line("93015", p=0.8)),
        "cardiac_imaging",
        (("11", 0.7), ("22", 0.3)),
    ),
    VisitTemplate("visit_with_echo", "cardiology", 0.08, (_EST, _line("93306")), "cardiac_imaging"),
    VisitTemplate("office_visit", "orthopaedics", 0.30, (_EST,), "orthopaedics"),
    VisitTemplate("new_patient_visit", "orthopaedics", 0.12, (_NEW,), "orthopaedics"),
    VisitTemplate("visit_with_xray", "orthopaedics", 0.15, (_EST, _line("73562")), "orthopaedics"),
    VisitTemplate(
        "joint_injection_visit",
        "orthopaedics",
        0.21,
        (_EST, _line("20610"), _line("J1030", units=(1, 2))),
        "joint_injection",
    ),
    VisitTemplate(
        "knee_arthroscopy",
        "orthopaedics",
        0.12,
        (_line("29881"), _line("29877", p=0.2)),
        "knee_surgery",
        (("24", 0.7), ("22", 0.3)),
    ),
    VisitTemplate(
        "knee_replacement",
        "orthopaedics",
        0.08,
        (_line("27447"),),
        "knee_surgery",
        (("21", 0.8), ("22", 0.2)),
    ),
    VisitTemplate(
        "unlisted_procedure",
        "orthopaedics",
        0.02,
        (_line("20999"),),
        "orthopaedics",
        (("22", 1.0),),
    ),
    VisitTemplate("office_visit", "neurology", 0.42, (_EST,), "neurology"),
    VisitTemplate("new_patient_visit", "neurology", 0.12, (_NEW,), "neurology"),
    VisitTemplate("polysomnography", "neurology", 0.16, (_line("95810"),), "sleep"),
    VisitTemplate("home_sleep_test", "neurology", 0.10, (_line("95806"),), "sleep", (("12", 1.0),)),
    VisitTemplate("cpap_supply", "neurology", 0.06, (_line("E0601"),), "sleep"),
    VisitTemplate(
        "mri_brain",
        "radiology",
        0.12,
        (_line("70551", "70553", weights=(0.55, 0.45)),),
        "mri_brain",
        (("11", 0.6), ("22", 0.4)),
    ),
    VisitTemplate(
        "mri_lumbar", "radiology", 0.15, (_line("72148"),), "mri_lumbar", (("11", 0.6), ("22", 0.4))
    ),
    VisitTemplate(
        "mri_knee", "radiology", 0.12, (_line("73721"),), "mri_knee", (("11", 0.6), ("22", 0.4))
    ),
    VisitTemplate(
        "ct_abdomen", "radiology", 0.12, (_line("74177"),), "ct_abdomen", (("11", 0.6), ("22", 0.4))
    ),
    VisitTemplate(
        "ct_chest", "radiology", 0.10, (_line("71250"),), "ct_chest", (("11", 0.6), ("22", 0.4))
    ),
    VisitTemplate(
        "chest_xray", "radiology", 0.20, (_line("71046"),), "chest_xray", (("11", 0.6), ("22", 0.4))
    ),
    VisitTemplate(
        "knee_xray",
        "radiology",
        0.09,
        (_line("73562"),),
        "orthopaedics",
        (("11", 0.6), ("22", 0.4)),
    ),
    # Physical therapy visits come in episodes: an evaluation, then treatment visits.
    VisitTemplate(
        "pt_evaluation",
        "physical_therapy",
        0.0,
        (_line("97161", "97162", weights=(0.6, 0.4)), _line("97110", units=(1, 2))),
        "physical_therapy",
    ),
    VisitTemplate(
        "pt_treatment",
        "physical_therapy",
        1.0,
        (
            _line("97110", units=(2, 3)),
            _line("97140", units=(1, 2), p=0.7),
            _line("97530", units=(1, 2), p=0.45),
        ),
        "physical_therapy",
    ),
)
