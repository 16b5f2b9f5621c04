"""Reading a labelling off CTC's per-frame posteriors: best path, and prefix beam search.

Both take one utterance's (T, K) log-posteriors (output 0 the blank, ``nn.ctc.BLANK``) and
return label ids.

* ``greedy``: the most probable output at each frame, repeats merged, blanks dropped. That is
  the labelling of the single most probable *path*, which need not be the most probable
  *labelling*: many paths read the same labels, and CTC sums them.
* ``prefix_beam_search`` (Graves 2012 section 7.5; Hannun et al. 2014): keeps the ``beam``
  most probable label prefixes, each with the probability of its paths ending in a blank and
  of those ending in its last label, so that paths that merge into the same prefix add up. A
  repeated label needs a blank between its two copies: extending "a" by "a" only continues
  the paths that end in a blank.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..nn.ctc import BLANK


def greedy(log_probs: np.ndarray) -> list[int]:
    """The best path's labelling of (T, K) log-posteriors."""
    best = np.argmax(log_probs, axis=1)
    return [int(k) for i, k in enumerate(best) if k != BLANK and (i == 0 or best[i - 1] != k)]


def prefix_beam_search(log_probs: np.ndarray, beam: int) -> list[int]:
    """The most probable labelling of (T, K) log-posteriors that a beam of ``beam`` prefixes
    finds (beam 1 follows the single best prefix at each frame)."""
    # A prefix's (log p ending in blank, log p ending in its last label).
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}
    for frame in np.asarray(log_probs, dtype=np.float64):
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-np.inf, -np.inf])
        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            entry = grown[prefix]
            entry[0] = np.logaddexp(entry[0], total + frame[BLANK])
            if prefix:  # the last label again, merged into it
                entry[1] = np.logaddexp(entry[1], p_label + frame[prefix[-1]])
            for k in range(len(frame)):
                if k == BLANK:
                    continue
                longer = grown[prefix + (k,)]
                # A repeat of the last label only extends the paths that ended in a blank.
                source = p_blank if prefix and prefix[-1] == k else total
                longer[1] = np.logaddexp(longer[1], source + frame[k])
        ranked = sorted(grown.items(), key=lambda kv: -np.logaddexp(*kv[1]))
        beams = {prefix: (p[0], p[1]) for prefix, p in ranked[:beam]}
    best = max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))
    return list(best[0])
