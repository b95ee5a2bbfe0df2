"""Learning a model's gazetteer from its training examples (served by :mod:`pipelines.engine.gazetteer`).

A tagger can miss a string its training data tagged dozens of times when the context is new. The
gazetteer holds each entity string of the training examples whose annotators gave it one label in at
least ``min_precision`` of the places it occurs (tagged or not) and at least ``min_count`` times, so
strings that are entities only sometimes ("patient", "cell") never enter it. Strings are compared
case-insensitively on the model's pieces, as the engine matches them.

A model may also name open vocabularies (model.json ``gazetteer_lexicons``: files of names and the
label they get, e.g. WordNet's organism names for the species model, :mod:`.wordnet`). Each name, in
its plural forms and with its words joined by spaces or hyphens, enters the gazetteer unless the
training examples contradict it: where it occurs there, annotators must have tagged it with that
label in at least ``LEXICON_MIN_SHARE`` of its occurrences. Its precision is that share, or
``LEXICON_PRIOR`` for a name the examples never show.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from clinlake.pipelines.engine.gazetteer import Gazetteer, Term, is_upper, key
from clinlake.pipelines.engine.ner.crf import iob_spans
from clinlake.pipelines.engine.pieces import CORPUS_PIECE
from clinlake.pipelines.resources import package_resource
from clinlake.pipelines.training.ner.corpus import Example
from clinlake.pipelines.training.ner.wordnet import read_lexicon_file

Terms = dict[tuple[str, ...], Term]
MAX_TOKENS = 6
MIN_PRECISION, MIN_COUNT, MIN_CHARS = 0.9, 2, 3
LEXICON_MIN_SHARE = 0.5  # a lexicon name the annotators left untagged more often than not stays out
LEXICON_PRIOR = 0.5  # the precision (match confidence) of a lexicon name the training examples never show

# English plural endings of a name's last word (irregular forms first); a form that does not
# exist only costs a dictionary entry.
_IRREGULAR = (("mouse", "mice"), ("louse", "lice"), ("goose", "geese"), ("foot", "feet"), ("tooth", "teeth"),
              ("woman", "women"), ("man", "men"), ("ox", "oxen"))
_LATIN = (("us", "i"), ("um", "a"), ("on", "a"), ("is", "es"), ("a", "ae"))


@dataclass(frozen=True)
class Lexicon:
    """An open vocabulary for a model's gazetteer: names, the label they get, where they come from."""
    label: str
    names: tuple[str, ...]
    source: str
    notice: tuple[str, ...] = ()  # the file's comment lines (provenance, licence), copied into gazetteer.tsv


def read_lexicons(meta: dict, key: str = "gazetteer_lexicons") -> tuple[Lexicon, ...]:
    """The lexicons a model.json names (``gazetteer_lexicons``: a list of ``file``, a path in the package
    such as ``conf/lexicons/wordnet_organisms.txt``, and ``label``), or the list under ``key`` of
    another record (the gazetteer channels' training record keeps its own as ``lexicons``)."""
    lexicons = []
    for spec in meta.get(key) or ():
        if not isinstance(spec, dict) or set(spec) != {"file", "label"} or not all(spec.values()):
            raise ValueError(f"each of {key} needs exactly 'file' and 'label', not {spec!r}")
        names, notice = read_lexicon_file(package_resource(spec["file"]))
        lexicons.append(Lexicon(spec["label"], tuple(names), spec["file"], tuple(notice)))
    return tuple(lexicons)


def plural_forms(word: str) -> set[str]:
    """``word`` and its likely English (and Latin) plurals."""
    lower = word.lower()
    forms = {word}
    for singular, plural in _IRREGULAR:
        if lower.endswith(singular):
            forms.add(word[:len(word) - len(singular)] + plural)
    for singular, plural in _LATIN:
        if lower.endswith(singular) and len(lower) > len(singular) + 2:
            forms.add(word[:len(word) - len(singular)] + plural)
    if re.search(r"(s|x|z|ch|sh)$", lower):
        forms.add(word + "es")
    elif re.search(r"[^aeiou]y$", lower):
        forms.add(word[:-1] + "ies")
    else:
        forms.add(word + "s")
    return forms


def name_variants(name: str) -> set[tuple[str, ...]]:
    """The piece keys of a name as it may be written: its words joined by spaces, or by hyphens where
    every word is letters only ("guinea pig", "guinea-pig"), and its last word in its plural forms,
    except in a name that starts with a capital ("Salmo gairdneri", "Atlantic salmon": scientific
    and proper names are written in the singular)."""
    words = name.split()
    forms = {words[-1]} if words[0][:1].isupper() else plural_forms(words[-1])
    joiners = (" ", "-") if all(word.isalpha() for word in words) else (" ",)
    found = set()
    for form in forms:
        for joiner in joiners:
            pieces = CORPUS_PIECE.findall(joiner.join([*words[:-1], form]))
            if len("".join(pieces)) >= MIN_CHARS:
                found.add(tuple(pieces))
    return found


def lexicon_terms(lexicon: Lexicon, examples: Sequence[Example], tagged: Mapping[tuple[tuple[str, ...], str], int]
                  ) -> Terms:
    """The lexicon's names the examples do not contradict (see the module doc), keyed as matched."""
    written = {}
    for name in lexicon.names:
        for pieces in name_variants(name):
            written.setdefault(key(pieces), pieces)
    seen, not_upper = _count_occurrences([tokens for tokens, _ in examples], set(written))
    terms: Terms = {}
    for k, pieces in written.items():
        share = tagged.get((k, lexicon.label), 0) / seen[k] if seen[k] else None
        if share is None or share >= LEXICON_MIN_SHARE:
            upper = is_upper(pieces) and (not seen[k] or k not in not_upper)
            terms[k] = Term(lexicon.label, LEXICON_PRIOR if share is None else round(share, 4), upper_only=upper)
    return terms


def _count_occurrences(sentences: Sequence[Sequence[str]], keys: set[tuple[str, ...]]) -> tuple[Counter, set]:
    """How often each key occurs (case-insensitively), and the keys seen in some form not all upper case."""
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for k in keys:
        by_first.setdefault(k[0], []).append(k)
    counts: Counter = Counter()
    not_upper: set[tuple[str, ...]] = set()
    for tokens in sentences:
        folded = key(tokens)
        for position, token in enumerate(folded):
            for k in by_first.get(token, ()):
                if folded[position:position + len(k)] == k:
                    counts[k] += 1
                    if not is_upper(tokens[position:position + len(k)]):
                        not_upper.add(k)
    return counts, not_upper


def learn_gazetteer(examples: Sequence[Example], *, min_precision: float = MIN_PRECISION,
                    min_count: int = MIN_COUNT, min_chars: int = MIN_CHARS, lexicons: Sequence[Lexicon] = ()) -> Terms:
    """The gazetteer of ``examples`` (pieces and IOB2 tags) and of ``lexicons``, see the module doc (a
    string learned from the examples keeps the examples' label and precision; where lexicons share a
    name, the first one's label counts)."""
    tagged: Counter = Counter()
    for tokens, tags in examples:
        for start, end, label in iob_spans(tags):
            if end - start <= MAX_TOKENS:
                tagged[(key(tokens[start:end]), label)] += 1
    keys = {k for k, _ in tagged if len("".join(k)) >= min_chars and any(c.isalpha() for c in "".join(k))}
    seen, not_upper = _count_occurrences([tokens for tokens, _ in examples], keys)
    best: dict[tuple[str, ...], tuple[int, str]] = {}
    for (k, label), count in sorted(tagged.items()):
        if k in keys and count > best.get(k, (0, ""))[0]:
            best[k] = (count, label)
    learned = {k: Term(label, round(count / seen[k], 4), upper_only=k not in not_upper)
               for k, (count, label) in sorted(best.items()) if count >= min_count and count >= min_precision * seen[k]}
    extra: Terms = {}
    for lexicon in lexicons:
        for k, term in lexicon_terms(lexicon, examples, tagged).items():
            extra.setdefault(k, term)
    return {**{k: extra[k] for k in sorted(extra) if k not in learned}, **learned}


def with_gazetteer(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[tuple[int, int, str]]],
                   gazetteer: Mapping[tuple[str, ...], Term]) -> list[list[tuple[int, int, str]]]:
    """Each sentence's spans plus the gazetteer's matches that overlap none of them."""
    index = Gazetteer(gazetteer)
    return [sorted([*found, *(span for span, _ in index.matches(tokens, found))])
            for tokens, found in zip(sentences, spans, strict=True)]


def write_gazetteer(path: Path, gazetteer: Mapping[tuple[str, ...], Term], *, source: str,
                    lexicons: Sequence[Lexicon] = ()) -> None:
    """``gazetteer.tsv`` (format: :mod:`pipelines.engine.gazetteer`), headed by what it was learned from."""
    lines = [f"# learned from {source}: entity strings tagged with one label in at least {MIN_PRECISION:.0%} of "
             f"their occurrences and at least {MIN_COUNT} times (pipelines/training/ner/gazetteer.py)",
             *lexicon_header_lines(lexicons), TERM_LINES_HEADER]
    write_terms(path, lines, gazetteer)


def lexicon_header_lines(lexicons: Sequence[Lexicon]) -> list[str]:
    """A term file's header lines for the lexicons whose names it holds, each with its file's notice."""
    return [f"# plus the names of {lexicon.source} as {lexicon.label} (plural and hyphenated forms), except "
            f"those tagged in under {LEXICON_MIN_SHARE:.0%} of their occurrences there (precision "
            f"{LEXICON_PRIOR} where they never occur); that file's notice:\n"
            + "\n".join(f"#   {line}" for line in lexicon.notice) for lexicon in lexicons]


#: The column line above a term list's rows (format: :mod:`pipelines.engine.gazetteer`).
TERM_LINES_HEADER = "# pieces<TAB>label<TAB>share of occurrences tagged[<TAB>upper: upper case in every occurrence]"


def write_terms(path: Path, header: Sequence[str], terms: Mapping[tuple[str, ...], Term]) -> None:
    """Write ``header`` lines, then one ``pieces<TAB>LABEL<TAB>PRECISION[<TAB>upper]`` row per term: the
    file :func:`pipelines.engine.gazetteer.read_gazetteer` reads (the step's list and the channels')."""
    rows = [f"{' '.join(k)}\t{t.label}\t{t.precision}" + ("\tupper" if t.upper_only else "") for k, t in terms.items()]
    path.write_text("\n".join([*header, *rows]) + "\n", encoding="utf-8")
