"""Recognise template values: claim ids that sample and test files put in CLP01/CLM01, and the
stand-ins our writer puts where the guide requires a value the data set does not have."""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"(?i)^(?:[9X\-]+|0+|.*\s.*|N/?A|UNKNOWN|NONE)$")


def is_placeholder_claim_id(claim_id: object) -> bool:
    """Whether a claim id is obviously a template value (all 9s/Xs, words with spaces, 'N/A').

    Such an id cannot link a remittance to a claim, nor tell two remittances apart.
    """
    text = str(claim_id).strip() if claim_id is not None else ""
    return text == "" or bool(_PLACEHOLDER.match(text))


UNNAMED_PATIENT = ("PATIENT", "A")
"""The name (NM103, NM104) the writer gives a patient without a ``patient_key``. The reader
hashes no key from it: a claim written without a key reads back without one, instead of
sharing a key with every keyless claim of the same birth date and sex."""

UNKNOWN_OTHER_PAYER = "OTHERPAYER"
"""The 2330B payer ID (NM109, required) the writer gives another payer it knows nothing of but
its existence (``has_other_coverage`` without ``other_payer_id``); read back as no ID."""
