"""Section detection: which part of the note ("plan", "family_history", ...) an offset is in.

A heading is recognised
    * at the start of the text or of a line, or right after ``.`` ``,`` ``;`` ``?`` ``!``
      (optionally followed by spaces; MTSamples turned line breaks into commas, so
      ``...flaring up.,MEDICATIONS: , Her ...`` holds a heading), as a phrase followed by
      ``:`` that matches a known variant case- and whitespace-insensitively
      ("Vitals:" and "PAST MEDICAL HISTORY:" both count);
    * as an ALL-CAPS line without colon that is exactly a known variant ("PLAN");
    * with ``unknown_caps_headings``, as any other ALL-CAPS phrase followed by ``:``
      (2-60 characters, a word of two or more letters), named by its snake_case text:
      "OPERATIVE NOTE:" starts ``operative_note``.

Mixed-case labels that are not known variants ("Neck:") and configured subheadings
("HEENT:", "BP:") never start a section, so they stay inside the enclosing one.
A section runs from its heading to the next heading or the end of the text; text before
the first heading belongs to no section.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path

import yaml

from clinlake.pipelines.engine.types import Section
from clinlake.pipelines.resources import package_resource

__all__ = ["DEFAULT_SECTIONS", "SectionDetector", "normalize_heading", "section_at", "snake_case"]

DEFAULT_SECTIONS = package_resource("conf/sections.yaml")

_MAX_HEADING = 60
_COLON_HEADING = re.compile(
    r"(?:^|(?<=[\n\r.,;?!]))[ \t]*"
    # Bounded look-ahead: only try phrases that reach a colon within 61 characters, which
    # keeps the scan linear on long runs of heading-like text.
    r"(?=[A-Za-z0-9 \t/&'()\-]{1,61}:)"
    r"(?P<label>[A-Za-z0-9][A-Za-z0-9/&'()\-]*(?:[ \t]+[A-Za-z0-9/&'()\-]+)*)"
    r"[ \t]*:(?!//)(?!(?<=\d:)\d)"  # not a time (10:30) or a link (http://)
)
_CAPS_LINE = re.compile(r"^[ \t]*(?P<label>[A-Z][A-Z0-9/&'()\- \t]{0,59}?)[ \t]*\r?$", re.MULTILINE)
_WHITESPACE = re.compile(r"\s+")
_JOINER = re.compile(r"\s*([/&])\s*")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_TWO_LETTERS = re.compile(r"[A-Za-z]{2}")
_section_start = attrgetter("start")


def normalize_heading(phrase: str) -> str:
    """Comparison key: upper case, single spaces, no spaces around "/" or "&"."""
    return _JOINER.sub(r"\1", _WHITESPACE.sub(" ", phrase.strip())).upper()


def snake_case(phrase: str) -> str:
    """Section name for an unknown heading: "OPERATIVE NOTE" -> "operative_note"."""
    return _NON_ALNUM.sub("_", phrase.lower()).strip("_")


def _is_caps_phrase(phrase: str) -> bool:
    return (
        2 <= len(phrase) <= _MAX_HEADING
        and phrase == phrase.upper()
        and _TWO_LETTERS.search(phrase) is not None
    )


class SectionDetector:
    """Finds section headings in a note and maps them to canonical section names."""

    def __init__(
        self,
        headings: Mapping[str, Iterable[str]],
        *,
        unknown_caps_headings: bool = True,
        subheadings: Iterable[str] = (),
    ) -> None:
        """
        headings: canonical name -> heading variants; the name itself ("_" as space) is
            a variant too. When two names share a variant the first one wins.
        unknown_caps_headings: let unlisted ALL-CAPS "PHRASE:" headings start sections.
        subheadings: labels that never start a section (exam systems, vital fields).
        """
        self.unknown_caps_headings = unknown_caps_headings
        self._variants: dict[str, str] = {}
        for name, variants in headings.items():
            for variant in (str(name).replace("_", " "), *(variants or ())):
                key = normalize_heading(str(variant))
                if key:
                    self._variants.setdefault(key, str(name))
        self._subheadings = frozenset(normalize_heading(str(s)) for s in subheadings) - set(self._variants)

    @classmethod
    def from_file(
        cls, path: str | Path = DEFAULT_SECTIONS, *, unknown_caps_headings: bool = True
    ) -> SectionDetector:
        """Build from YAML: ``sections`` (name -> variants) and optional ``subheadings``.

        A file that is just the name -> variants mapping is accepted too.
        """
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if isinstance(data.get("sections"), Mapping):
            return cls(
                data["sections"],
                unknown_caps_headings=unknown_caps_headings,
                subheadings=data.get("subheadings") or (),
            )
        return cls(data, unknown_caps_headings=unknown_caps_headings)

    @property
    def names(self) -> frozenset[str]:
        """Canonical section names this detector knows (unknown caps headings aside)."""
        return frozenset(self._variants.values())

    def canonical(self, phrase: str) -> str | None:
        """Canonical name of a known heading variant, else None."""
        return self._variants.get(normalize_heading(phrase))

    def is_heading_label(self, phrase: str) -> bool:
        """Whether ``phrase`` is a known heading variant or subheading label (e.g. "MEDICATIONS",
        "NEUROLOGIC"), whatever punctuation surrounds it in the note."""
        key = normalize_heading(phrase)
        return key in self._variants or key in self._subheadings

    def detect(self, text: str) -> list[Section]:
        """Sections of text in order; each spans its heading up to the next heading."""
        if not isinstance(text, str) or not text:
            return []
        found = self._headings(text)
        starts = sorted(found)
        sections = []
        for k, start in enumerate(starts):
            name, heading_end = found[start]
            end = starts[k + 1] if k + 1 < len(starts) else len(text)
            sections.append(Section(name, start, end, heading_end))
        return sections

    def _headings(self, text: str) -> dict[int, tuple[str, int]]:
        """Heading start offset -> (section name, heading end)."""
        found: dict[int, tuple[str, int]] = {}
        for m in _COLON_HEADING.finditer(text):
            name = self._name_for(m.group("label"))
            if name:
                found.setdefault(m.start("label"), (name, m.end()))
        for m in _CAPS_LINE.finditer(text):
            name = self.canonical(m.group("label"))
            if name:
                found.setdefault(m.start("label"), (name, m.end("label")))
        return found

    def _name_for(self, label: str) -> str | None:
        key = normalize_heading(label)
        if key in self._subheadings:
            return None
        known = self._variants.get(key)
        if known:
            return known
        if self.unknown_caps_headings and _is_caps_phrase(label):
            return snake_case(label) or None
        return None


def section_at(sections: Sequence[Section], offset: int) -> str | None:
    """Name of the section covering offset (sections sorted, non-overlapping), else None."""
    i = bisect_right(sections, offset, key=_section_start) - 1
    if i >= 0 and offset < sections[i].end:
        return sections[i].name
    return None
