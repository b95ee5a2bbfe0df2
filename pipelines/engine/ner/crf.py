"""Linear-chain CRF decoding of the NER taggers: Viterbi, marginals (forward-backward), IOB spans.

numpy only. :class:`CrfDecoder` is the batched decoder the serving model uses; :func:`viterbi`
and :func:`marginals` are the one-sequence references it is tested against.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

def viterbi(emissions: np.ndarray, start: np.ndarray, end: np.ndarray, trans: np.ndarray) -> list[int]:
    """Best tag path for one sequence. emissions [T, K]; trans[i, j] = score of i → j."""
    length = emissions.shape[0]
    if length == 0:
        return []
    score = start + emissions[0]
    back = np.zeros((length, emissions.shape[1]), dtype=np.int64)
    for t in range(1, length):
        total = score[:, None] + trans
        back[t] = total.argmax(axis=0)
        score = total.max(axis=0) + emissions[t]
    path = [int((score + end).argmax())]
    for t in range(length - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def marginals(emissions: np.ndarray, start: np.ndarray, end: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Per-token tag posteriors [T, K] of the linear-chain CRF (forward-backward in log space)."""
    length, tags = emissions.shape
    alpha = np.empty((length, tags))
    beta = np.empty((length, tags))
    alpha[0] = start + emissions[0]
    for t in range(1, length):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + trans, axis=0) + emissions[t]
    beta[-1] = end
    for t in range(length - 2, -1, -1):
        beta[t] = _logsumexp(trans + (emissions[t + 1] + beta[t + 1])[None, :], axis=1)
    log_z = _logsumexp(alpha[-1] + end, axis=0)
    return np.exp(alpha + beta - log_z)


FORBIDDEN = -1000.0  # transition scores at or below this are IOB constraints (the trainer folds in -10000)


class CrfDecoder:
    """Batched Viterbi and marginals of one linear-chain CRF, set up once per model.

    Padded batches [B, T, K] are decoded one NumPy step per position for the whole batch
    (decoding would otherwise cost more than the network). What keeps a step cheap:

    * the IOB structure: a tag whose only allowed predecessors are itself and one other (I-X
      follows only B-X or I-X) is scored from those two instead of a max over every tag, so a
      33-tag model does about half the work; forbidden moves could never win a max;
    * tags are kept internally with those "pair" tags last, so each part is a slice, and the
      maximum is read at the argmax through one flat index;
    * no per-step masking: the recursions run over the padding, and each sentence is read
      back from its own last position (backtracking, backward pass) instead.

    Ties go to the lower original tag index within a pair (as :func:`viterbi` does); among the
    other tags to the lower internal index (exact ties of float sums do not happen in practice)."""

    def __init__(self, start: np.ndarray, end: np.ndarray, trans: np.ndarray, dtype=np.float32) -> None:
        self.dtype = np.dtype(dtype)
        start, end, trans = (np.asarray(x, self.dtype) for x in (start, end, trans))
        tags = len(start)
        allowed = [np.flatnonzero(trans[:, k] > FORBIDDEN) for k in range(tags)]
        pairs = [k for k in range(tags) if len(allowed[k]) == 2 and k in allowed[k]]
        self.dense = np.array([k for k in range(tags) if k not in pairs], dtype=np.int64)
        self.pairs = np.array(pairs, dtype=np.int64)
        self.order = np.concatenate([self.dense, self.pairs])  # internal position -> tag
        internal = self.internal = np.argsort(self.order)  # tag -> internal position
        n_dense = self.n_dense = len(self.dense)
        inner = trans[np.ix_(self.order, self.order)]  # [from, to], internal order
        self.start, self.end = start[self.order], end[self.order]
        self.into_dense = np.ascontiguousarray(inner[:, :n_dense].T)[None]  # [1, to, from]
        others = [int(allowed[k][allowed[k] != k][0]) for k in pairs]
        self.pair_other = internal[np.array(others, dtype=np.int64)] if pairs else np.zeros(0, dtype=np.int64)
        self.pair_self = np.arange(n_dense, tags)
        self.pair_other_trans = inner[self.pair_other, self.pair_self]
        self.pair_self_trans = inner[self.pair_self, self.pair_self]
        self.self_first = np.array([k < o for k, o in zip(pairs, others)], dtype=bool)  # wins a tie
        # probability space for the marginals; forbidden moves are exactly 0
        self.step_trans = np.exp(inner - inner.max())
        self.step_trans_t = np.ascontiguousarray(self.step_trans.T)
        self.start_prob = np.exp(self.start - self.start.max())
        self.end_prob = _normalised(np.exp(self.end - self.end.max()))

    def paths(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Best tag path of each sentence, padded [B, T] (entries past a sentence's end are junk)."""
        batch, steps, tags = np.shape(emissions)
        if steps == 0:
            return np.zeros((batch, 0), dtype=np.int64)
        return self.order[self._paths(self._internal(emissions), lengths)]

    def confidences(self, emissions: np.ndarray, lengths: Sequence[int], paths: np.ndarray) -> np.ndarray:
        """Posterior probability [B, T] of the tag each of ``paths`` [B, T] chose (padded)."""
        posteriors = self._posteriors(self._internal(emissions), lengths)
        return np.take_along_axis(posteriors, self.internal[paths][:, :, None], axis=2)[:, :, 0]

    def posteriors(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Per-token tag posteriors [B, T, K] (rows past a sentence's end are junk)."""
        return self._posteriors(self._internal(emissions), lengths)[:, :, self.internal]

    def _internal(self, emissions: np.ndarray) -> np.ndarray:
        return np.asarray(emissions, self.dtype)[:, :, self.order]

    @staticmethod
    def _ending(lengths: Sequence[int], steps: int) -> list[np.ndarray]:
        """The sentences whose last position is t, for each t."""
        last = np.asarray(lengths, dtype=np.int64) - 1
        by_end = np.argsort(last, kind="stable")
        bounds = np.searchsorted(last[by_end], np.arange(steps + 1))
        return [by_end[bounds[t]:bounds[t + 1]] for t in range(steps)]

    def _paths(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        batch, steps, tags = emissions.shape
        n_dense, ending = self.n_dense, self._ending(lengths, steps)
        others, own = self.pair_other, self.pair_self
        back = np.empty((steps, batch, tags), dtype=np.int8 if tags < 128 else np.int64)
        total = np.empty((batch, n_dense, tags), dtype=self.dtype)
        flat = total.reshape(-1)
        offsets = (np.arange(batch * n_dense) * tags).reshape(batch, n_dense)
        score, step = self.start + emissions[:, 0], np.empty((batch, tags), dtype=self.dtype)
        final = np.zeros((batch, tags), dtype=self.dtype)
        final[ending[0]] = score[ending[0]]
        for t in range(1, steps):
            np.add(score[:, None, :], self.into_dense, out=total)
            best = total.argmax(axis=2)
            back[t, :, :n_dense] = best
            step[:, :n_dense] = flat[offsets + best]
            if len(own):
                via_other = score[:, others] + self.pair_other_trans
                via_self = score[:, n_dense:] + self.pair_self_trans
                keep_self = np.where(self.self_first, via_self >= via_other, via_self > via_other)
                back[t, :, n_dense:] = np.where(keep_self, own, others)
                np.maximum(via_self, via_other, out=step[:, n_dense:])
            step += emissions[:, t]
            score, step = step, score
            if len(ending[t]):
                final[ending[t]] = score[ending[t]]
        last_tags = (final + self.end).argmax(axis=1)
        paths = np.zeros((batch, steps), dtype=np.int64)
        rows = np.arange(batch)
        for t in range(steps - 1, -1, -1):
            paths[ending[t], t] = last_tags[ending[t]]
            if t:
                paths[:, t - 1] = back[t, rows, paths[:, t]]
        return paths

    def _posteriors(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Forward-backward in probability space, renormalised at every step: a [B, K] x [K, K]
        matrix product per position instead of a log-sum-exp over [B, K, K] (several times
        faster with many tags); the per-step scale factors cancel in the final normalisation."""
        batch, steps, tags = emissions.shape
        ending = self._ending(lengths, steps)
        scores = np.exp(emissions - emissions.max(axis=2, keepdims=True))
        step_trans, step_trans_t, last = self.step_trans, self.step_trans_t, self.end_prob
        alpha = np.empty((batch, steps, tags), dtype=self.dtype)
        beta = np.empty((batch, steps, tags), dtype=self.dtype)
        if steps == 0:
            return alpha
        alpha[:, 0] = _normalised(self.start_prob * scores[:, 0])
        for t in range(1, steps):
            alpha[:, t] = _normalised((alpha[:, t - 1] @ step_trans) * scores[:, t])
        beta[:, -1] = last
        for t in range(steps - 2, -1, -1):
            beta[:, t] = _normalised((scores[:, t + 1] * beta[:, t + 1]) @ step_trans_t)
            beta[ending[t], t] = last
        return _normalised(alpha * beta)


def viterbi_batch(emissions: np.ndarray, lengths: Sequence[int], start: np.ndarray, end: np.ndarray,
                  trans: np.ndarray) -> list[list[int]]:
    """:func:`viterbi` for a padded batch [B, T, K] at once (:class:`CrfDecoder`, in the
    emissions' float precision)."""
    emissions = np.asarray(emissions)
    paths = CrfDecoder(start, end, trans, dtype=emissions.dtype).paths(emissions, lengths)
    return [paths[b, :n].tolist() for b, n in enumerate(lengths)]


def marginals_batch(emissions: np.ndarray, lengths: Sequence[int], start: np.ndarray, end: np.ndarray,
                    trans: np.ndarray) -> np.ndarray:
    """:func:`marginals` for a padded batch: posteriors [B, T, K] (rows past a sentence's end are junk)."""
    emissions = np.asarray(emissions)
    return CrfDecoder(start, end, trans, dtype=emissions.dtype).posteriors(emissions, lengths)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=-1, keepdims=True)


def iob_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(first, last+1, type) entity spans of IOB2 tags, conlleval-style repair: an I- that
    does not continue an entity of its type starts one; B- always starts one."""
    spans: list[tuple[int, int, str]] = []
    current: list = []  # [start, type] of the open entity
    for i, tag in enumerate(tags):
        if tag == "O":  # most tags: what the general case does for O, without splitting it
            if current:
                spans.append((current[0], i, current[1]))
                current = []
            continue
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and current and current[1] == kind:
            continue
        if current:
            spans.append((current[0], i, current[1]))
            current = []
        if prefix in ("B", "I") and kind:
            current = [i, kind]
    if current:
        spans.append((current[0], len(tags), current[1]))
    return spans
