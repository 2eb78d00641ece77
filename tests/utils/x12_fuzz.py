"""Seeded X12 mutations for fuzzing ingest, and the claim count a mutated file holds.

A case is drawn from its seed alone (:func:`draw_case`): a base file (our writer's 837P and
835s, and the public samples), one to three text mutations (separators swapped, a segment
dropped or repeated, an oversized element, wrong SE01/GE01/IEA01 counts, junk characters), an
encoding (UTF-8, with a byte order mark, or UTF-16 either way round, with or without one) and
sometimes a byte mutation (truncation, binary junk). Same seed, same bytes.

:func:`claims_held` counts the CLM and CLP segments a file holds by a plain scan, written here
apart from the reader's own count: the report must account for each of them as ingested,
quarantined or a duplicate.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from features.x12 import write_835, write_837p
from tests.unit.test_x12_roundtrip import make_dataset

SAMPLES = Path(__file__).parents[2].parent / "shared" / "x12-samples"


@dataclass(frozen=True)
class Case:
    seed: int
    base: str
    steps: tuple[str, ...]
    data: bytes
    encoding: str

    @property
    def name(self) -> str:
        """A file name that says what was done: seed, base, steps."""
        stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(self.base).stem)[:24]
        return f"{self.seed:05d}-{stem}-{'+'.join(self.steps)}{Path(self.base).suffix or '.x12'}"


def base_files(folder: Path) -> dict[str, str]:
    """``{name: text}``: our writer's 837P and 835 files (written under ``folder``) and every
    public sample there is, sorted by name so that a seed always draws the same one."""
    dataset = make_dataset()
    paths = write_837p(dataset, folder) + write_835(dataset, folder)
    bases = {f"generated/{p.name}": p.read_text() for p in paths}
    if SAMPLES.is_dir():
        for path in sorted(SAMPLES.glob("83*/*")):
            raw = path.read_bytes()
            if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                text = raw.decode("utf-16")
            elif raw.startswith(b"\xef\xbb\xbf"):
                text = raw.decode("utf-8-sig")
            else:
                text = raw.decode("latin-1")
            bases[f"samples/{path.relative_to(SAMPLES)}"] = text
    return dict(sorted(bases.items()))


# -- text mutations ------------------------------------------------------------------------------
def _separators(text: str) -> tuple[str, str, str]:
    """Element, sub-element and segment separator as the ISA states them."""
    body = text.lstrip("\ufeff \r\n\t")
    if not body.startswith("ISA") or len(body) < 106:
        return "*", ":", "~"
    return body[3], body[104], body[105]


def _segments(text: str) -> tuple[list[str], str]:
    term = _separators(text)[2]
    return text.split(term), term


def swap_separators(text: str, rng: random.Random) -> str:
    ele, sub, term = _separators(text)
    a, b = rng.choice([(ele, term), (ele, sub), (sub, term)])
    return text.translate({ord(a): b, ord(b): a})


def drop_segment(text: str, rng: random.Random) -> str:
    parts, term = _segments(text)
    if len(parts) > 1:
        del parts[rng.randrange(len(parts))]
    return term.join(parts)


def repeat_segment(text: str, rng: random.Random) -> str:
    parts, term = _segments(text)
    i = rng.randrange(len(parts))
    parts[i:i] = [parts[i]] * rng.choice([1, 2, 50])
    return term.join(parts)


def oversized_element(text: str, rng: random.Random) -> str:
    parts, term = _segments(text)
    ele = _separators(text)[0]
    i = rng.randrange(1, len(parts)) if len(parts) > 1 else 0
    elements = parts[i].split(ele)
    j = rng.randrange(1, len(elements)) if len(elements) > 1 else 0
    elements[j] = rng.choice("X9 ") * rng.choice([1_000, 70_000, 300_000])
    parts[i] = ele.join(elements)
    return term.join(parts)


def wrong_counts(text: str, rng: random.Random) -> str:
    ele, _, term = _separators(text)
    pattern = re.compile(rf"((?:^|{re.escape(term)})\s*(?:SE|GE|IEA){re.escape(ele)})(\d+)")
    value = rng.choice(["0", "1", "2", "999999", "-1", "12X"])
    return pattern.sub(lambda m: m.group(1) + value, text)


def junk_characters(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    junk = "".join(chr(rng.choice([0, 7, 0x1C, 0x85, 0xFEFF, 0xFFFD, 0x2028, *range(32, 127)]))
                   for _ in range(rng.randint(1, 40)))  # fmt: skip
    return text[:at] + junk + text[at:]


TEXT_MUTATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "swap": swap_separators,
    "drop": drop_segment,
    "repeat": repeat_segment,
    "oversized": oversized_element,
    "counts": wrong_counts,
    "junk": junk_characters,
}


# -- encodings and byte mutations ----------------------------------------------------------------
def encode(text: str, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["utf-8", "utf-8", "bom", "utf-16", "utf-16-le", "utf-16-be"])
    if kind == "bom":
        return kind, b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    return kind, text.encode(kind, "surrogatepass")


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def binary_junk(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    junk = rng.randbytes(rng.choice([1, 2, 7, 300, 5_000]))
    cut = rng.choice([0, 0, len(junk)])  # inserted, or written over the bytes there
    return data[:at] + junk + data[at + cut :]


BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": truncate,
    "binary": binary_junk,
}


def draw_case(seed: int, bases: dict[str, str], base: str | None = None) -> Case:
    """The mutated file of ``seed``: a base, 1-3 text mutations, an encoding, maybe a byte
    mutation. ``base`` pins the base file (a regression case kept by name)."""
    rng = random.Random(seed)
    names = list(bases)
    drawn = names[rng.randrange(len(names))]
    base = base or drawn
    text = bases[base]
    steps = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        step = rng.choice(sorted(TEXT_MUTATIONS))
        text = TEXT_MUTATIONS[step](text, rng)
        steps.append(step)
    kind, data = encode(text, rng)
    steps.append(kind)
    if rng.random() < 0.4:
        step = rng.choice(sorted(BYTE_MUTATIONS))
        data = BYTE_MUTATIONS[step](data, rng)
        steps.append(step)
    return Case(seed, base, tuple(steps), data, encoding=kind)


# -- what a file holds ---------------------------------------------------------------------------
def claims_held(data: bytes, segment_id: str) -> int:
    """``segment_id`` segments (CLM, CLP) in the file: its bytes read one by one, NUL bytes
    left out (so that UTF-16 text reads as ASCII whatever its byte order, and where junk has
    shifted it), the ID followed by a separator (any character but a letter, a digit or a
    space) and not by an empty element, or by the end of the file (cut right there), wherever
    it stands, except as an element's whole value."""
    text = data.replace(b"\0", b"").decode("latin-1")
    count = 0
    for match in re.finditer(rf"{segment_id}([^A-Za-z0-9 ]|\Z)", text):
        sep, start, end = match.group(1), match.start(), match.end()
        if not sep or (text[end : end + 1] != sep and text[start - 1 : start] != sep):
            count += 1
    return count


# -- one large file in a process of its own ------------------------------------------------------
def repeated_segment(text: str, start: str, size: int) -> str:
    """``text`` with its first segment starting with ``start`` repeated until the file has
    about ``size`` characters (the terminator is '~', as our writer's)."""
    segments = text.split("~")
    i = next(k for k, segment in enumerate(segments) if segment.startswith(start))
    times = size // (len(segments[i]) + 1)
    return "~".join(segments[:i] + [segments[i]] * times + segments[i + 1 :])


# The child's peak RSS is its memory's high-water mark (VmHWM), which starts afresh with the
# program exec'd; getrusage's ru_maxrss is kept across exec, so in a child forked from a large
# pytest process it reported the parent's size (1.7 GB in the whole suite, 450 MB alone).
_CHILD = """
import json, sys
from pathlib import Path
from features.x12 import ingest_paths
path = Path(sys.argv[1])
entry = ingest_paths([path], workers=1, validation=sys.argv[2]).report[str(path)]
status = Path("/proc/self/status").read_text().splitlines()
[high_water] = [line.split()[1] for line in status if line.startswith("VmHWM:")]
print(json.dumps({
    "peak_mb": int(high_water) / 1024,
    "read": entry["claims_read"] + entry["remittances_read"],
    "ingested": entry["claims_ingested"] + entry["remittances_ingested"],
    "quarantined": entry["claims_quarantined"] + entry["remittances_quarantined"],
    "reasons": [reason[:110] for reason in entry["quarantine_reasons"]],
}))
"""


def ingest_in_child(path: Path, validation: str, timeout: float) -> tuple[float, dict]:
    """Ingest one file in a fresh process: its wall time (imports and all) and what it reports,
    its own peak RSS included (its VmHWM at its end: the parent's ``RUSAGE_CHILDREN`` is the
    largest of every child it has had, and the child's own ``ru_maxrss`` counts the parent's
    memory at the fork)."""
    root = Path(__file__).resolve().parents[2]
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), validation],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return time.perf_counter() - started, json.loads(run.stdout)


class PeakMemory:
    """This process's peak RSS growth over each lap (Linux: ``VmHWM`` in ``/proc/self/status``,
    reset between laps by writing 5 to ``/proc/self/clear_refs``).

    Unlike tracemalloc it sees pyx12's and pandas' native memory as well, and costs nothing (the
    fuzzing ran three times slower traced). Each lap is the high-water mark since the lap began
    less the RSS the lap began with: what reading one file needed at its worst.
    """

    def __init__(self) -> None:
        self.laps: list[int] = []
        self._start = self._read("VmRSS")
        self._reset()

    @staticmethod
    def available() -> bool:
        return os.access("/proc/self/clear_refs", os.W_OK)

    @staticmethod
    def _read(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    @staticmethod
    def _reset() -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def lap(self) -> None:
        self.laps.append(self._read("VmHWM") - self._start)
        self._start = self._read("VmRSS")
        self._reset()
