"""X12 837P/837I/835 ingestion (pyx12) and export into the claims data contract.

Public API:

- :func:`ingest_paths` / :class:`IngestResult`: read files and folders into a ClaimsDataset.
- :func:`read_claims_837`: claims, lines and diagnoses of 837 files for scoring.
- :func:`first_adjudication_outcomes`, :func:`derive_followups`: outcomes and follow-ups.
- :func:`write_837p`, :func:`write_835`: export a ClaimsDataset as valid 5010 files.
"""

from features.x12.ingest import IngestResult, ingest_paths, read_claims_837
from features.x12.outcomes import derive_followups, first_adjudication_outcomes
from features.x12.writer import write_835, write_837p

__all__ = [
    "IngestResult",
    "derive_followups",
    "first_adjudication_outcomes",
    "ingest_paths",
    "read_claims_837",
    "write_835",
    "write_837p",
]
