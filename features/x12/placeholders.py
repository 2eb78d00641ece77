"""Recognise template claim ids that sample and test files put in CLP01/CLM01."""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"(?i)^(?:[9X\-]+|0+|.*\s.*|N/?A|UNKNOWN|NONE)$")


def is_placeholder_claim_id(claim_id: object) -> bool:
    """Whether a claim id is obviously a template value (all 9s/Xs, words with spaces, 'N/A').

    Such an id cannot link a remittance to a claim, nor tell two remittances apart.
    """
    text = str(claim_id).strip() if claim_id is not None else ""
    return text == "" or bool(_PLACEHOLDER.match(text))
