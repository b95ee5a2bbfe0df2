"""Clinical sentence splitting and tokenisation.

Both work on the original note text and never alter it: every token and sentence is an
offset span (``start`` inclusive, ``end`` exclusive) with ``text[start:end]`` equal to
its text. Every non-whitespace character (``not ch.isspace()``) belongs to exactly one
token, and every token to exactly one sentence.

Tokens
    * runs of letters/digits (any script, combining accents included) are one word:
      ``COVID19``, ``5mg``, ``Müller``;
    * every other non-space character is a token of its own (``COVID-19`` is
      ``COVID`` ``-`` ``19``; ``°``, ``–``, ``•`` are one token each), except:
    * abbreviations from ``conf/abbreviations.yaml`` and any dotted run of single
      letters (``b.i.d.``, ``U.S.``, ``p.o``) stay one token, period included, also
      at the end of a sentence (``10 mg.``); ``before_number`` entries only before a
      number (``No. 2`` is one token, the answer ``No.`` is ``No`` ``.``);
    * numbers keep their internal punctuation: decimals ``3.5`` ``.5``, thousands
      ``1,000``, ratios/fractions/dates ``120/80`` ``98.6/37`` ``12/05/2020``;
    * a possessive/contraction ``'s`` (or ``’s``) is its own token: ``patient's`` is
      ``patient`` ``'s``; other apostrophes are plain punctuation (``don't`` is
      ``don`` ``'`` ``t``);
    * percentages are the number and a separate ``%`` token (``5`` ``%``), like
      units, so entity rules see the bare number.

Sentences (spans trimmed to their first and last token, never empty, in order)
    * after ``.`` ``?`` ``!`` (the last of a run such as ``?!`` or ``...``) followed by
      whitespace and an uppercase letter, digit, list marker, opening bracket/quote,
      or the end of the text; closing brackets/quotes glued to it stay in the sentence;
    * not after a ``non_final`` abbreviation (``Dr. Smith``); after any other listed or
      dotted abbreviation (``b.i.d.``, ``mg.``) only before whitespace + uppercase;
      not after the ``.`` of a list marker that opens the sentence (``1.  She``);
    * after ``.,``: MTSamples replaced line breaks with commas, so ``up.,MEDICATIONS``
      ends a sentence unless a lowercase word follows (``Inc., and``); the commas
      stay with the sentence they close;
    * at a blank line, always; at a single line break only before a list marker
      (``-`` ``*`` ``•`` ``1.`` ``2)`` ``a)``) or when the line before or after is an
      ALL-CAPS heading line; a wrapped line does not split. Line breaks are ``\\n``,
      ``\\r`` and ``\\r\\n``; other vertical space (``\\f``, U+2028) is plain whitespace;
    * around ALL-CAPS headings followed by ``:`` (``HISTORY OF PRESENT ILLNESS:``,
      ``2-D ECHO:``) at a line start or after ``. , ; ? !``: the heading, with the
      quirk commas after it (``MEDICATIONS: ,``), is a sentence of its own;
    * before a capitalised label such as ``Vitals:`` or ``Neck:`` at a line start or
      after ``. , ; ? !``; the label stays with its text (``Neck:  Supple.``).
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

import yaml

from clinlake.pipelines.engine.types import Sentence, Token
from clinlake.pipelines.resources import package_resource

__all__ = ["DEFAULT_ABBREVIATIONS", "TextSplitter"]

DEFAULT_ABBREVIATIONS = package_resource("conf/abbreviations.yaml")

# Token kinds: the names of the alternatives in the token regex (``Match.lastgroup``).
NON_FINAL = "nonfinal"  # listed abbreviation that never ends a sentence (Dr.)
NUMBERED = "numbered"  # listed abbreviation only before a number (No. 2)
ABBREV = "abbrev"  # listed abbreviation that may end a sentence (b.i.d.)
DOTTED = "dotted"  # unlisted dotted single letters (U.S.), treated like ABBREV
NUMBER = "number"
CLITIC = "clitic"
WORD = "word"
TERMINAL = "terminal"  # . ? !
PUNCT = "punct"  # any other single non-space character

_LETTER = r"[^\W\d_]"
_ALNUM = r"[^\W_]"
_EDGE_BEFORE = rf"(?<!{_ALNUM})"  # not glued to a letter/digit on the left
_EDGE_AFTER = rf"(?!{_ALNUM})"
_LEADING_ALNUM = re.compile(r"[^\W_]*")
# Combining marks (decomposed accents) continue a word instead of splitting it.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"

_NUMBER = (
    r"\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)+"  # ratios, fractions, dates: 120/80, 98.6/37
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)"  # thousands: 1,000 and 12,500.5
    r"|\d+(?:\.\d+)+"  # decimals and dotted dates: 3.5, 12.05.2020
    r"|(?<![^\s(\[])\.\d+"  # leading-dot decimal after space/bracket: .5
)

_TERMINALS = frozenset(".?!")
_CLOSERS = frozenset(")]}\"'’”»")
_OPENERS = frozenset("([{\"'‘“«")
_BULLETS = "-*•‣◦▪·–—+"

# A list item at the start of a line (or of the next sentence): "-", "•", "1.", "2)", "a)".
_LIST_MARKER = re.compile(rf"(?:[{re.escape(_BULLETS)}]|\(?\d{{1,3}}[.)]|\(?[A-Za-z]\))(?=\s|$)")
# A sentence that so far holds nothing but a list marker must not end there.
_MARKER_ONLY = re.compile(rf"[{re.escape(_BULLETS)}]|\(?(?:\d{{1,3}}|[A-Za-z])\s*[.)]")

# ALL-CAPS heading ending in ":" at the start of the text/a line or right after
# ". , ; ? !" (MTSamples turned line breaks into commas). The bounded look-ahead keeps the
# scan linear on long upper-case text. "AT 10:30" (a time) and "HTTP://" are not headings.
_CAPS_PHRASE = r"[A-Z0-9][A-Z0-9/&'()\-]*(?:[ \t]+[A-Z0-9/&'()\-]+)*"
_HEADING = re.compile(
    r"(?:^|(?<=[\n\r.,;?!]))[ \t]*"
    r"(?=[A-Z0-9 \t/&'()\-]{1,61}:)"
    rf"(?P<h>{_CAPS_PHRASE})[ \t]*:(?!//)(?!(?<=\d:)\d)"
)
# A line that is nothing but an ALL-CAPS phrase, colon optional ("CHIEF COMPLAINT").
_HEADING_LINE = re.compile(rf"[ \t]*{_CAPS_PHRASE}[ \t]*:?[ \t]*")
_TWO_LETTERS = re.compile(r"[A-Z]{2}")
_HEADING_MAX = 60
# "Vitals:", "Neck:", "Blood pressure:" after a comma/period or at a line start begin a
# new sentence: in MTSamples they were lines of their own.
_LABEL = re.compile(
    r"(?:^|(?<=[\n\r.,;?!]))[ \t]*"
    r"(?P<l>[A-Z][a-z]+(?:[ \t]+[A-Za-z][a-z\-]*){0,2})[ \t]*:(?!//)(?!(?<=\d:)\d)"
)
_HSPACE = re.compile(r"[ \t]*")
_LINE_GAP = re.compile(r"[\n\r]\s*")  # a whitespace run holding a line break, from the first one
_ENDING_KINDS = frozenset({TERMINAL, ABBREV, DOTTED})


def _listed(words: Iterable[str]) -> str:
    """Case-insensitive whole-token regex for listed abbreviations.

    Plain alphanumeric entries are dropped: they are single word tokens anyway. The
    look-ahead guard (as many letters/digits as the entries start with, then their first
    punctuation character) is a cheap pre-check that keeps the long alternation from
    being tried at every word: without it the tokenizer is several times slower.
    """
    entries = sorted({w for w in words if not w.isalnum()}, key=len, reverse=True)
    if not entries:
        return r"(?!)"
    leads = [len(_LEADING_ALNUM.match(w).group()) for w in entries]  # type: ignore[union-attr]
    marks = "".join(sorted({w[lead] for w, lead in zip(entries, leads)}))
    guard = rf"(?={_ALNUM}{{{min(leads)},{max(leads)}}}[{re.escape(marks)}])"
    alternation = "|".join(re.escape(w) for w in entries)  # longest first: "p.r.n." before "p.r."
    return rf"{_EDGE_BEFORE}{guard}(?i:{alternation}){_EDGE_AFTER}"


def _clean(words: Iterable[str] | None) -> list[str]:
    """Lower-cased entries; ones holding whitespace are dropped (a token never spans a space)."""
    cleaned = (str(w).strip().lower() for w in (words or ()))
    return [w for w in cleaned if w and not any(ch.isspace() for ch in w)]


def _is_caps_heading(phrase: str) -> bool:
    """2-60 characters with at least one word of two or more letters (not "A:" or "1:")."""
    return 2 <= len(phrase) <= _HEADING_MAX and _TWO_LETTERS.search(phrase) is not None


def _count_line_breaks(text: str, start: int, end: int) -> int:
    """Line breaks in text[start:end]; "\\r\\n" counts once, other vertical space not at all."""
    gap = text[start:end]
    return gap.count("\n") + gap.count("\r") - gap.count("\r\n")


def _is_heading_line(text: str, start: int, end: int) -> bool:
    if end - start > _HEADING_MAX + 4:
        return False
    return (
        _HEADING_LINE.fullmatch(text, start, end) is not None
        and _TWO_LETTERS.search(text, start, end) is not None
    )


def _line_start(text: str, pos: int) -> int:
    """Start of the line holding pos, or -1 when it is too long to be a heading line."""
    lo = max(0, pos - _HEADING_MAX - 4)
    brk = max(text.rfind("\n", lo, pos), text.rfind("\r", lo, pos))
    if brk >= 0:
        return brk + 1
    return 0 if lo == 0 else -1


def _line_end(text: str, pos: int) -> int:
    """End of the line holding pos, or -1 when it is too long to be a heading line."""
    hi = min(len(text), pos + _HEADING_MAX + 4)
    ends = [i for i in (text.find("\n", pos, hi), text.find("\r", pos, hi)) if i >= 0]
    if ends:
        return min(ends)
    return hi if hi == len(text) else -1


class TextSplitter:
    """Rule-based clinical sentence splitter and tokenizer (pure Python, one regex pass)."""

    def __init__(
        self,
        abbreviations: Iterable[str],
        non_final_abbreviations: Iterable[str] = (),
        *,
        number_prefixes: Iterable[str] = (),
    ) -> None:
        """
        abbreviations: one-token abbreviations that may end a sentence ("b.i.d.").
        non_final_abbreviations: ones that never end a sentence ("Dr.").
        number_prefixes: abbreviations only when a number follows ("No. 2").
        All matched case-insensitively as whole tokens.
        """
        self.abbreviations = frozenset(_clean(abbreviations))
        self.non_final_abbreviations = frozenset(_clean(non_final_abbreviations))
        self.number_prefixes = frozenset(_clean(number_prefixes))
        self._token_re = self._compile_tokens()

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_ABBREVIATIONS) -> TextSplitter:
        """Build from a YAML file with lists ``abbreviations``, ``non_final``, ``before_number``."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls(
            data.get("abbreviations") or (),
            data.get("non_final") or (),
            number_prefixes=data.get("before_number") or (),
        )

    def _compile_tokens(self) -> re.Pattern[str]:
        # Alternatives are tried in order at each position, so the specific forms
        # (abbreviations, numbers) come before the generic word and single-character rules.
        # The leading (?=\S) lets the scanner skip whitespace without trying every
        # alternative at each blank (about 30% faster on notes, 40x on blank runs).
        return re.compile(
            rf"(?=\S)(?:(?P<{NUMBERED}>{_listed(self.number_prefixes)}(?=[ \t]*\(?\d))"
            rf"|(?P<{NON_FINAL}>{_listed(self.non_final_abbreviations)})"
            rf"|(?P<{ABBREV}>{_listed(self.abbreviations)})"
            rf"|(?P<{DOTTED}>{_EDGE_BEFORE}{_LETTER}(?:\.{_LETTER})+\.?{_EDGE_AFTER})"
            rf"|(?P<{NUMBER}>{_NUMBER})"
            rf"|(?P<{CLITIC}>(?<={_ALNUM})['’][sS]{_EDGE_AFTER})"
            rf"|(?P<{WORD}>{_ALNUM}+(?:[{_MARKS}]+{_ALNUM}*)*)"
            rf"|(?P<{TERMINAL}>[.?!])"
            rf"|(?P<{PUNCT}>\S))"
        )

    # ------------------------------------------------------------------ tokens

    def tokenize(self, text: str, start: int = 0, end: int | None = None) -> list[Token]:
        """Tokens of text[start:end] with offsets into text (bounds are clamped, never raise)."""
        tokens, _ = self._scan(text, start, end)
        return tokens

    def _scan(self, text: str, start: int = 0, end: int | None = None) -> tuple[list[Token], list[str]]:
        """Tokens plus the kind of each (the regex alternative that produced it)."""
        if not isinstance(text, str) or not text:
            return [], []
        size = len(text)
        start = min(max(start or 0, 0), size)
        end = size if end is None else min(max(end, 0), size)
        tokens: list[Token] = []
        kinds: list[str] = []
        add_token, add_kind = tokens.append, kinds.append  # hot loop: one pass per token
        for m in self._token_re.finditer(text, start, end):
            s, e = m.span()
            add_token(Token(s, e, m.group()))
            add_kind(m.lastgroup)  # type: ignore[arg-type]
        return tokens, kinds

    # --------------------------------------------------------------- sentences

    def split(self, text: str) -> list[Sentence]:
        """Sentences of text, in order, each with its tokens; [] for empty/blank text."""
        tokens, kinds = self._scan(text)
        if not tokens:
            return []
        starts = [t.start for t in tokens]
        breaks = _structural_breaks(text, tokens, starts)
        walker = _Walker(text, tokens, kinds, breaks)
        cuts = walker.cuts(_candidates(text, kinds, starts, breaks))
        bounds = [0, *cuts, len(tokens)]
        return [
            Sentence(idx, tokens[a].start, tokens[b - 1].end, tuple(tokens[a:b]))
            for idx, (a, b) in enumerate(zip(bounds, bounds[1:]))
        ]


def _structural_breaks(text: str, tokens: list[Token], starts: list[int]) -> set[int]:
    """Token indices that must start a sentence because of headings and field labels."""
    n = len(tokens)
    breaks: set[int] = set()
    for m in _HEADING.finditer(text):
        if not _is_caps_heading(m.group("h")):
            continue
        first = bisect_left(starts, m.start("h"))
        if first < n and starts[first] == m.start("h"):
            breaks.add(first)
        # "MEDICATIONS: , Her ...": commas standing in for line breaks stay with the heading.
        after = _skip_quirk_commas(text, tokens, bisect_left(starts, m.end()) - 1) + 1
        if after < n:
            breaks.add(after)
    for m in _LABEL.finditer(text):
        first = bisect_left(starts, m.start("l"))
        if first < n and starts[first] == m.start("l"):
            breaks.add(first)
    return breaks


def _skip_quirk_commas(text: str, tokens: list[Token], i: int) -> int:
    """Index of the last of the commas directly after token i (only spaces between), else i.

    MTSamples replaced every line break with a comma, so ".," ": ," and ": , ," close a
    sentence or heading; those commas belong to what they close, not to what follows.
    """
    n = len(tokens)
    while (
        i + 1 < n
        and tokens[i + 1].text == ","
        and _HSPACE.fullmatch(text, tokens[i].end, tokens[i + 1].start)
    ):
        i += 1
    return i


def _candidates(text: str, kinds: list[str], starts: list[int], breaks: set[int]) -> list[int]:
    """Sorted indices of the tokens after which a sentence may end.

    Only these are examined one by one, which keeps the Python-level work proportional
    to the number of sentences rather than tokens: terminal punctuation and abbreviations,
    tokens before a structural break, and tokens followed by a line break.
    """
    found = {i for i, kind in enumerate(kinds) if kind in _ENDING_KINDS}
    found.update(b - 1 for b in breaks)
    for m in _LINE_GAP.finditer(text):
        found.add(bisect_left(starts, m.start()) - 1)
    last = len(kinds) - 1
    return sorted(i for i in found if 0 <= i < last)


class _Walker:
    """Decides where sentences end, visiting candidate tokens left to right."""

    def __init__(self, text: str, tokens: list[Token], kinds: list[str], breaks: set[int]) -> None:
        self.text = text
        self.tokens = tokens
        self.kinds = kinds
        self.breaks = breaks
        self.n = len(tokens)

    def cuts(self, candidates: Iterable[int]) -> list[int]:
        """Indices of the tokens that start sentences, excluding token 0."""
        cuts: list[int] = []
        first = 0  # first token of the current sentence
        for i in candidates:
            if i < first:
                continue  # absorbed into the previous sentence (closing quote, quirk comma)
            cut = self._cut_after(first, i)
            if cut is None:
                continue
            if cut >= self.n:
                break
            cuts.append(cut)
            first = cut
        return cuts

    def _cut_after(self, first: int, i: int) -> int | None:
        """Start of the next sentence if the current one ends at token i (plus what it absorbs)."""
        tokens, text = self.tokens, self.text
        nxt = i + 1
        gap_start, gap_end = tokens[i].end, tokens[nxt].start
        if nxt in self.breaks and not self._marker_only(first, i):
            return nxt
        # Most gaps are empty or one space; only others can hold a line break.
        if gap_end - gap_start > 1 or (gap_end > gap_start and text[gap_start] != " "):
            lines = _count_line_breaks(text, gap_start, gap_end)
            if lines >= 2:
                return nxt  # a blank line always ends a sentence
            if lines == 1 and self._line_break_splits(gap_start, gap_end):
                return nxt
        kind = self.kinds[i]
        if kind == TERMINAL:
            return self._after_terminal(first, i, abbreviation=False)
        if kind == ABBREV or (kind == DOTTED and tokens[i].text.endswith(".")):
            return self._after_terminal(first, i, abbreviation=True)
        return None

    def _line_break_splits(self, gap_start: int, gap_end: int) -> bool:
        """A single line break ends a sentence before a list item or next to a heading line."""
        text = self.text
        if _LIST_MARKER.match(text, gap_end):
            return True
        line_start = _line_start(text, gap_start)
        if line_start >= 0 and _is_heading_line(text, line_start, gap_start):
            return True
        line_end = _line_end(text, gap_end)
        return line_end >= 0 and _is_heading_line(text, gap_end, line_end)

    def _marker_only(self, first: int, i: int) -> bool:
        """True while the current sentence is just a list marker such as "1." or "-"."""
        if i - first > 3:
            return False
        tokens = self.tokens
        return _MARKER_ONLY.fullmatch(self.text, tokens[first].start, tokens[i].end) is not None

    def _after_terminal(self, first: int, i: int, *, abbreviation: bool) -> int | None:
        """Decide a boundary after a "." "?" "!" token or an abbreviation ending in "."."""
        tokens, text, n = self.tokens, self.text, self.n
        nxt = i + 1
        if tokens[nxt].text in _TERMINALS and tokens[nxt].start == tokens[i].end:
            return None  # "?!" or "...": decide at the last one
        if not abbreviation and self._marker_only(first, i):
            return None  # the "." of a "1." list marker
        last = i  # closing brackets/quotes glued to the terminal stay in the sentence
        while (
            last + 1 < n
            and tokens[last + 1].text in _CLOSERS
            and tokens[last + 1].start == tokens[last].end
            and last + 1 not in self.breaks
        ):
            last += 1
        nxt = last + 1
        if nxt >= n:
            return n
        comma = _skip_quirk_commas(text, tokens, last)
        if comma > last:
            return self._after_quirk_comma(comma, abbreviation=abbreviation)
        if tokens[nxt].start == tokens[last].end:
            return None  # "file.txt", "end.Next": no whitespace, no boundary
        head = text[tokens[nxt].start]
        if abbreviation:
            return nxt if head.isupper() else None
        if head.isupper() or head.isdigit() or head in _OPENERS:
            return nxt
        return nxt if _LIST_MARKER.match(text, tokens[nxt].start) else None

    def _after_quirk_comma(self, comma: int, *, abbreviation: bool) -> int | None:
        """".," ends a sentence (MTSamples replaced line breaks with commas); the commas stay.

        After a plain period the next sentence may start with anything but a lowercase
        letter ("Inc., and" does not split). After an abbreviation ("etc., were",
        "b.i.d., Tylenol") only a glued uppercase letter or digit counts, as in ",MEDICATIONS".
        """
        tokens = self.tokens
        after = comma + 1
        if after >= self.n:
            return self.n
        head = self.text[tokens[after].start]
        if abbreviation:
            glued = tokens[after].start == tokens[comma].end
            return after if glued and (head.isupper() or head.isdigit()) else None
        return None if head.islower() else after
