"""Dictionary NER: user vocabularies matched on token sequences, longest match first.

Terms are tokenised with the same tokenizer as the notes and compared case-insensitively
(``str.casefold``), so "Chest  Pain", "chest pain" and "CHEST PAIN" all match the term
"chest pain", whatever the whitespace between the words. A match never starts or ends
inside a token and never crosses a sentence boundary.

Lexicon files are UTF-8 text, one term per line; ``#`` starts a comment line. A line may
carry its label after a tab (``term<TAB>LABEL``); otherwise the label configured for the
lexicon is used. When the same term appears in several lexicons, the first configured
lexicon wins, as earlier stages win everywhere in the pipeline.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from clinlake.pipelines.engine.types import Entity, Sentence, Token

Tokenize = Callable[[str], list[Token]]


class LexiconError(ValueError):
    """A lexicon file is missing or malformed (the message names file and line)."""


@dataclass(frozen=True, slots=True)
class Lexicon:
    name: str
    version: str  # first 8 hex of the file's sha256: changes whenever the file does
    terms: tuple[tuple[str, str], ...]  # (term, label)


def read_lexicon(path: Path, *, name: str, default_label: str | None) -> Lexicon:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LexiconError(f"lexicon {name!r}: file not found: {path}") from None
    terms: list[tuple[str, str]] = []
    for line_no, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        term, _, label = stripped.partition("\t")
        label = label.strip() or (default_label or "")
        if not label:
            raise LexiconError(f"{path}:{line_no}: no label (add '<TAB>LABEL' or set 'label' for lexicon {name!r})")
        terms.append((term.strip(), label))
    if not terms:
        raise LexiconError(f"lexicon {name!r} ({path}) has no terms")
    return Lexicon(name=name, version=hashlib.sha256(data).hexdigest()[:8], terms=tuple(terms))


_END = "\0end"  # trie key marking a complete term; tokens never equal it


class DictionaryNer:
    """Longest-match dictionary tagger over one or more lexicons."""

    def __init__(self, lexicons: Sequence[Lexicon], tokenize: Tokenize) -> None:
        self.lexicons = tuple(lexicons)
        self.name = "dictionary:" + "+".join(f"{lex.name}@{lex.version}" for lex in self.lexicons)
        self._trie: dict = {}
        for lexicon in self.lexicons:
            source = f"dictionary:{lexicon.name}@{lexicon.version}"
            for term, label in lexicon.terms:
                self._add(tuple(t.text.casefold() for t in tokenize(term)), label, source)

    def _add(self, key: tuple[str, ...], label: str, source: str) -> None:
        if not key:
            return
        node = self._trie
        for token in key:
            node = node.setdefault(token, {})
        node.setdefault(_END, (label, source))  # setdefault: the first lexicon wins

    def find(self, text: str, sentences: Iterable[Sentence]) -> list[Entity]:
        entities: list[Entity] = []
        for sentence in sentences:
            entities.extend(self._find_in(text, sentence))
        return entities

    def _find_in(self, text: str, sentence: Sentence) -> Iterable[Entity]:
        tokens = sentence.tokens
        keys = [t.text.casefold() for t in tokens]
        i = 0
        while i < len(tokens):
            node = self._trie
            best: tuple[int, tuple[str, str]] | None = None
            j = i
            while j < len(tokens) and keys[j] in node:
                node = node[keys[j]]
                j += 1
                if _END in node:
                    best = (j, node[_END])
            if best is None:
                i += 1
                continue
            stop, (label, source) = best
            start, end = tokens[i].start, tokens[stop - 1].end
            yield Entity(start=start, end=end, text=text[start:end], label=label, confidence=1.0,
                         source=source, sentence_index=sentence.index)
            i = stop
