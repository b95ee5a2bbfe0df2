"""The tiny local training files and notes of the Spark NLP interop tests (no downloads)."""
from __future__ import annotations

import re
from pathlib import Path

# The user's own NER model learns DISEASE chunks from these (brackets mark the chunks).
TRAIN = [
    "The patient denies [chest pain] .",
    "She has [diabetes] .",
    "She has [hypertension] and [diabetes] .",
    "[Pneumonia] is possible .",
    "Possible [pneumonia] .",
    "No evidence of [pulmonary embolism] .",
    "Mother had [breast cancer] .",
    "Father with [coronary artery disease] .",
    "Return if [chest pain] develops .",
    "He reports [chest pain] and [fever] .",
    "Nothing clinical here at all .",
    "The patient is seen today .",
]
POS = {".": ".", "the": "DT", "a": "DT", "has": "VBZ", "had": "VBD", "is": "VBZ", "denies": "VBZ",
       "reports": "VBZ", "with": "IN", "of": "IN", "if": "IN", "and": "CC", "she": "PRP", "he": "PRP",
       "no": "DT", "possible": "JJ", "here": "RB", "at": "IN", "all": "DT", "today": "NN"}

NOTES = {
    "t1": "HISTORY OF PRESENT ILLNESS: The patient denies chest pain. She has diabetes.",
    "t2": "ASSESSMENT: Possible pneumonia. No evidence of pulmonary embolism.",
    "t3": "FAMILY HISTORY: Mother had breast cancer.",
    "t4": "PLAN: Return if chest pain develops.",
    "t5": "Nothing clinical here at all.",
}


def tagged(sentence: str) -> list[tuple[str, str, str]]:
    """(token, POS, IOB label) of a TRAIN sentence."""
    out: list[tuple[str, str, str]] = []
    for inside, outside in re.findall(r"\[([^\]]+)\]|(\S+)", sentence):
        words = (inside or outside).split()
        for i, word in enumerate(words):
            label = "O" if outside else ("B-DISEASE" if i == 0 else "I-DISEASE")
            out.append((word, POS.get(word.lower(), "NN"), label))
    return out


def vocabulary() -> list[str]:
    words = {w.lower() for s in TRAIN for w, _, _ in tagged(s)}
    words |= {w.lower() for t in NOTES.values() for w in re.findall(r"\w+", t)}
    return sorted(words)


def vector(word: str) -> tuple[float, float]:
    """A deterministic 2-d vector per word, so pooled chunk vectors can be predicted."""
    index = vocabulary().index(word.lower())
    return round(0.01 * (index + 1), 2), round(1 - 0.01 * (index + 1), 2)


def write_training_files(work: Path) -> None:
    (work / "vectors.txt").write_text("".join(f"{w} {vector(w)[0]} {vector(w)[1]}\n" for w in vocabulary()))
    (work / "pos.txt").write_text("".join(" ".join(f"{w}|{p}" for w, p, _ in tagged(s)) + "\n" for s in TRAIN))
    conll = ["-DOCSTART- -X- -X- O", ""]
    for sentence in TRAIN:
        conll += [f"{w} {p} {p} {label}" for w, p, label in tagged(sentence)] + [""]
    (work / "ner.conll").write_text("\n".join(conll) + "\n")
