"""PHEE (pharmacovigilance event extraction, Sun et al. 2022, MIT) as BRAT documents.

PHEE ships JSON lines: one sentence of a drug-safety case report per line (``context``) with
events (``Adverse_event`` / ``Potential_therapeutic_event``) whose arguments carry the text and
character ``start`` of each mention (``"text": [["insulin"]], "start": [[154]]``: a list of
mentions, each a list of fragments). Written as one ``<id>.txt`` + ``<id>.ann`` pair per
sentence so the clinical trainer and ``clinlake evaluate brat`` read it like MACCROBAT and Chia.

Text-bound types (a mention in several events is written once per type):

    Drug            Treatment.Drug            the drug of any event
    Adverse_effect  Effect of Adverse_event   the adverse effect
    Therapeutic_effect  Effect of Potential_therapeutic_event
    Indication      Treatment.Disorder        what the drug was given for
    Dosage, Route, Duration, Frequency        Treatment.Dosage / .Route / .Duration / .Freq

    clinlake corpora phee-to-brat [--shared ../shared] [--out build/brat/PHEE]   (:func:`convert`)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from clinlake.pipelines.corpora.brat import AnnDocument, TextBound, format_ann

#: (event argument, sub-argument or None) → BRAT type; Effect depends on the event type.
ARGUMENT_TYPES: dict[tuple[str, str | None], str] = {
    ("Treatment", "Drug"): "Drug",
    ("Treatment", "Disorder"): "Indication",
    ("Treatment", "Dosage"): "Dosage",
    ("Treatment", "Route"): "Route",
    ("Treatment", "Duration"): "Duration",
    ("Treatment", "Freq"): "Frequency",
}
EFFECT_TYPES = {"Adverse_event": "Adverse_effect", "Potential_therapeutic_event": "Therapeutic_effect"}
SPLITS = {"train": "train.json", "devel": "devel.json"}


def _mentions(argument: dict) -> Iterator[tuple[tuple[int, int], ...]]:
    """Fragments (start, end) of each mention of an event argument."""
    for texts, starts in zip(argument.get("text") or [], argument.get("start") or []):
        yield tuple((start, start + len(text)) for text, start in zip(texts, starts))


def sentence_entities(record: dict) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
    """(type, fragments) of one PHEE record, in first-seen order, without duplicates."""
    found: dict[tuple[str, tuple[tuple[int, int], ...]], None] = {}
    for annotation in record.get("annotations") or []:
        for event in annotation.get("events") or []:
            effect = EFFECT_TYPES.get(event.get("event_type"))
            if effect and isinstance(event.get("Effect"), dict):
                for spans in _mentions(event["Effect"]):
                    found.setdefault((effect, spans), None)
            for (role, sub), kind in ARGUMENT_TYPES.items():
                argument = event.get(role)
                if isinstance(argument, dict) and isinstance(argument.get(sub), dict):
                    for spans in _mentions(argument[sub]):
                        found.setdefault((kind, spans), None)
    return list(found)


def to_ann(record: dict) -> AnnDocument:
    text = record["context"]
    lines = []
    for n, (kind, spans) in enumerate(sentence_entities(record), start=1):
        if any(not (0 <= s < e <= len(text)) for s, e in spans):
            raise ValueError(f"PHEE record {record.get('id')}: a mention falls outside its sentence")
        lines.append(TextBound(f"T{n}", kind, spans, " ".join(text[s:e] for s, e in spans)))
    return AnnDocument(lines, ["\n"] * len(lines))


def write_split(records: Iterable[dict], out: Path) -> int:
    """One .txt/.ann pair per record under ``out`` (created); returns the number written."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for record in records:
        name = str(record["id"]).replace("/", "_")
        (out / f"{name}.txt").write_text(record["context"], encoding="utf-8", newline="")
        (out / f"{name}.ann").write_text(format_ann(to_ann(record)), encoding="utf-8", newline="")
        count += 1
    return count


def read_records(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def ensure_brat(shared_phee: Path, out: Path, split: str) -> Path:
    """``out/<split>`` as BRAT, converted from ``shared_phee/<split>.json`` when missing or older."""
    source, target = shared_phee / SPLITS[split], out / split
    marker = target / ".converted"
    if not marker.exists() or marker.stat().st_mtime < source.stat().st_mtime:
        write_split(read_records(source), target)
        marker.touch()
    return target


class ConvertedSplit(NamedTuple):
    split: str
    path: Path
    documents: int


def convert(shared_phee: Path, out: Path) -> list[ConvertedSplit]:
    """Every PHEE split as BRAT under ``out/<split>`` (:func:`ensure_brat`), with its document count."""
    converted = []
    for split in SPLITS:
        path = ensure_brat(shared_phee, out, split)
        converted.append(ConvertedSplit(split, path, sum(1 for _ in path.glob("*.txt"))))
    return converted
