"""A patient's key across payers and member IDs, derived without keeping the name.

An 837 names the patient (2010BA or 2010CA NM1) but carries no identifier of the patient that
survives a change of payer: the member ID is the payer's. A practice links such claims by name,
birth date and sex, as payers match members. :func:`patient_key` hashes those fields at the
edge (X12 ingest, the simulator), so the data set keeps a key and never the name. The key is
for linking claims only (did the member ID or payer change since the patient's last claim?);
it is never a model feature, and like every identifier it is never logged.

The X12 writer (:mod:`features.x12.writer`) has no names to write: it names each patient after
a hash of the key. Ingesting its files hashes that name again, so the keys that come back are
new ones; claims that shared a key (with the same birth date and sex) still share one.
"""

from __future__ import annotations

import hashlib
import unicodedata

_PERSON = b"denial-risk:pt1"
"""Domain-separates these hashes from any other use of the same fields."""


_NOT_ALNUM = {code: None for code in range(128) if not chr(code).isalnum()}
"""ASCII punctuation and spaces, deleted by ``str.translate``."""


def _normal(text: str | None) -> str:
    # Case, accents, spaces and punctuation vary between systems for the same person.
    if not text:
        return ""
    if not text.isascii():  # most names are ASCII already: folding them costs more than the rest
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text.upper().translate(_NOT_ALNUM)


def patient_key(
    last_name: str | None,
    first_name: str | None,
    birth_date: str | None,
    sex: str | None,
) -> str | None:
    """16 hex characters from the normalised name, birth date (``CCYYMMDD`` or ISO) and sex;
    ``None`` when there is neither a last name nor a birth date to key on."""
    last, first = _normal(last_name), _normal(first_name)
    # ASCII digits and sex only: a damaged file's DMG can hold any character (issue 20's
    # fuzzing, seed 2513: a sex of 'Ê' made the ASCII encoding below raise out of ingest).
    born = "".join(ch for ch in (birth_date or "") if ch in "0123456789")[:8]
    if not last and not born:
        return None
    text = "|".join((last, first, born, _normal(sex)[:1]))
    return hashlib.blake2b(text.encode("ascii"), digest_size=8, person=_PERSON).hexdigest()
