"""CoNLL-style NER corpora: ``token<TAB>IOB2-tag`` lines, a blank line between sentences.

The format of the MTL-Bioinformatics-2016 splits under ``../shared/data/ner/``; read by
training (:mod:`clinlake.pipelines.training.ner`) and evaluation (:mod:`clinlake.pipelines.evaluation.ner`).
"""
from __future__ import annotations

from pathlib import Path

Sentence = tuple[list[str], list[str]]  # tokens, IOB2 tags


def read_conll(path: str | Path) -> list[Sentence]:
    """token<TAB>tag lines, blank line between sentences; extra columns are ignored."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{path}:{number}: expected token<TAB>tag")
            tokens.append(fields[0])
            tags.append(fields[1] if fields[1] else "O")
    if tokens:
        sentences.append((tokens, tags))
    return sentences
