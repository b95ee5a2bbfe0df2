"""The two piece tokenisations every model and rule set is defined over (one definition each).

Whatever tokenizer built a :class:`~clinlake.pipelines.engine.types.Sentence`, the stages
re-split text into pieces of a fixed, documented shape, so that training and serving (and
the rules' lexicon and the notes) always see the same units:

* :data:`CORPUS_PIECE` — runs of letters/digits and single other characters (``3 . 5``,
  ``Parkinson ' s``, ``IL - 2``): how the biomedical NER corpora are tokenised, so the NER
  taggers are trained and served on it;
* :data:`WORD_PIECE` — ``\\w+`` runs and single punctuation characters (``_`` is a word
  character here): the ConText rules' literals, the assertion model's input and the lexicon
  builder match on it.
"""
from __future__ import annotations

import re

CORPUS_PIECE = re.compile(r"[^\W_]+|\S")
WORD_PIECE = re.compile(r"\w+|[^\w\s]")


def word_pieces(text: str) -> list[str]:
    """The :data:`WORD_PIECE` pieces of ``text``, in order."""
    return WORD_PIECE.findall(text)
