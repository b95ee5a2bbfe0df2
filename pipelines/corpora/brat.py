"""BRAT standoff (``.ann``) reading and writing, plain Python.

Offsets are Python slice offsets into the exactly-read ``.txt`` (``start`` 0-based, ``end``
exclusive), the BRAT convention and the engine's own. Read the text with
:func:`read_text_exact` (``newline=""``): Chia's files use CRLF and BRAT offsets count the
``"\\r"``.

Reading keeps every line: ``T`` (text-bound, possibly discontinuous ``start end;start end``) and
``A``/``M`` (attribute) lines are parsed, every other line (``E``, ``R``, ``*``, ``#``, blank) is
kept verbatim, so ``format_ann(parse_ann(s)) == s`` for any input.

Writing predictions (:func:`entities_to_ann`): one ``T<n><TAB><Label> <start> <end><TAB><text>``
per entity and, when it has one, ``A<n><TAB>Assertion T<n> <label>``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

Fragments = tuple[tuple[int, int], ...]  # (start, end) of each fragment of an entity, end exclusive

_TERMINATOR = re.compile(r"\r\n|\n|\r")
_ONE_LINE = str.maketrans("\r\n\t", "   ")


class Extent:
    """``start``/``end`` of something made of ``spans`` fragments: its full extent, from the
    first fragment's start to the last fragment's end (the gap between fragments included)."""

    __slots__ = ()
    spans: Fragments

    @property
    def start(self) -> int:
        return min(s for s, _ in self.spans)

    @property
    def end(self) -> int:
        return max(e for _, e in self.spans)


@dataclass(frozen=True, slots=True)
class TextBound(Extent):
    """A ``T`` line: ``spans`` are the fragments in file order (one for a contiguous span)."""

    id: str
    type: str
    spans: Fragments
    text: str

    @property
    def discontinuous(self) -> bool:
        return len(self.spans) > 1

    def format(self) -> str:
        spans = ";".join(f"{s} {e}" for s, e in self.spans)
        return f"{self.id}\t{self.type} {spans}\t{self.text}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """An ``A``/``M`` line: ``A1<TAB>Assertion T3 absent`` (``value`` None for binary attributes)."""

    id: str
    name: str
    target: str
    value: str | None = None

    def format(self) -> str:
        value = "" if self.value is None else f" {self.value}"
        return f"{self.id}\t{self.name} {self.target}{value}"


Line = Union[TextBound, Attribute, str]  # str: any other line, kept verbatim


@dataclass(slots=True)
class AnnDocument:
    lines: list[Line]
    terminators: list[str]  # the line ending after each line ("" for a last line without one)

    @property
    def entities(self) -> list[TextBound]:
        return [line for line in self.lines if isinstance(line, TextBound)]

    @property
    def attributes(self) -> list[Attribute]:
        return [line for line in self.lines if isinstance(line, Attribute)]


class BratFormatError(ValueError):
    """A malformed ``T``/``A`` line; the message names the line number, never its text."""


def parse_ann(content: str, *, source: str = "<ann>") -> AnnDocument:
    lines: list[Line] = []
    terminators: list[str] = []
    pos = 0
    number = 0
    while pos < len(content):
        number += 1
        match = _TERMINATOR.search(content, pos)
        end, nxt = (match.start(), match.end()) if match else (len(content), len(content))
        raw = content[pos:end]
        lines.append(_parse_line(raw, source, number))
        terminators.append(content[end:nxt])
        pos = nxt
    return AnnDocument(lines, terminators)


def _parse_line(raw: str, source: str, number: int) -> Line:
    if raw.startswith("T"):
        parts = raw.split("\t", 2)
        if len(parts) < 2:
            raise BratFormatError(f"{source}:{number}: text-bound line without a tab")
        head = parts[1].split(" ", 1)
        if len(head) != 2:
            raise BratFormatError(f"{source}:{number}: text-bound line without offsets")
        try:
            spans = tuple(_span(fragment) for fragment in head[1].split(";"))
        except ValueError:
            raise BratFormatError(f"{source}:{number}: bad offsets in a text-bound line") from None
        entity = TextBound(parts[0], head[0], spans, parts[2] if len(parts) > 2 else "")
        if entity.format() == raw:  # anything unusual (extra spaces, no text column) stays verbatim
            return entity
        return raw
    if raw.startswith(("A", "M")):
        parts = raw.split("\t")
        fields = parts[1].split(" ") if len(parts) == 2 else []
        if len(fields) in (2, 3) and all(fields):
            attribute = Attribute(parts[0], fields[0], fields[1], fields[2] if len(fields) == 3 else None)
            if attribute.format() == raw:
                return attribute
        return raw
    return raw


def _span(fragment: str) -> tuple[int, int]:
    start, end = fragment.split(" ")
    start_i, end_i = int(start), int(end)
    if not 0 <= start_i <= end_i:
        raise ValueError(fragment)
    return start_i, end_i


def format_ann(document: AnnDocument) -> str:
    return "".join((line if isinstance(line, str) else line.format()) + terminator
                   for line, terminator in zip(document.lines, document.terminators, strict=True))


def read_ann(path: str | Path) -> AnnDocument:
    with open(path, encoding="utf-8", newline="") as handle:
        return parse_ann(handle.read(), source=Path(path).name)


def write_ann(path: str | Path, document: AnnDocument) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(format_ann(document))


def read_text_exact(path: str | Path) -> str:
    """The ``.txt`` exactly as stored: ``newline=""`` keeps CRLF, so BRAT offsets stay right."""
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def _field_text(text: str) -> str:
    # The text column is one line: each "\r", "\n" or tab inside a span shows as a space (same length).
    return text.translate(_ONE_LINE)


def entities_to_ann(entities: Iterable, text: str) -> AnnDocument:
    """T (and, with an assertion, A) lines for engine entities (``start``, ``end``, ``label``,
    optional ``assertion`` with an ``.assertion`` label); the text column is sliced from ``text``."""
    lines: list[Line] = []
    n_attr = 0
    for n, entity in enumerate(entities, start=1):
        tid = f"T{n}"
        lines.append(TextBound(tid, entity.label, ((entity.start, entity.end),),
                               _field_text(text[entity.start:entity.end])))
        assertion = getattr(entity, "assertion", None)
        if assertion is not None:
            n_attr += 1
            label = getattr(assertion, "assertion", assertion)
            lines.append(Attribute(f"A{n_attr}", "Assertion", tid, str(label)))
    return AnnDocument(lines, ["\n"] * len(lines))


def check_offsets(document: AnnDocument, text: str) -> list[str]:
    """Ids of T lines whose text column does not match the text at their offsets
    (fragments joined by a space, each line break or tab character shown as a space)."""
    bad = []
    for entity in document.entities:
        expected = " ".join(_field_text(text[s:e]) for s, e in entity.spans)
        if entity.end > len(text) or expected != entity.text:
            bad.append(entity.id)
    return bad
