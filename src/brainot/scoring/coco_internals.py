"""pycocoevalcap internals that brainot needs: the only module that reaches past pycocoevalcap's public scorers.

Written against pycocoevalcap 1.2 (the pin in pyproject.toml; ``tests/test_adapters.py`` checks that the installed
pycocoevalcap is that version and that these functions agree with its public ``Bleu`` and ``Meteor`` scorers).
None of what is used here is documented API, so a pycocoevalcap upgrade must re-check this module:

* BLEU: ``BleuScorer.ctest`` (each candidate's cooked counts: ``testlen``, ``reflen``, ``guess``, ``correct``) and
  ``BleuScorer._single_reflen``. ``Bleu.compute_score`` returns only corpus BLEU and per-image BLEU values, and a
  corpus BLEU of a resample of the images (the bootstrap, :mod:`brainot.tables.bootstrap`) is not a function of
  those: it needs each image's sufficient statistics, summed.
* METEOR: ``Meteor.meteor_p`` (the JVM's ``Popen``) and ``Meteor.lock``. ``Meteor.compute_score`` holds the lock
  while it talks to the JVM and does not release it when the JVM dies mid-answer, and ``Meteor.__del__`` then
  waits on it forever; the public API has no way to stop the JVM or name its process.
"""

from __future__ import annotations


# ---------------------------------------------------------------- BLEU

def bleu_statistics(res: dict, gts: dict, n: int) -> list[tuple[int, int, list[int], list[int]]]:
    """Per-candidate BLEU sufficient statistics, in ``res``'s key order, as ``Bleu(n).compute_score`` counts them.

    res: key -> [candidate], gts: key -> [references] (tokenized strings, the dicts pycocoevalcap's scorers
    take). Returns one ``(testlen, reflen, guess, correct)`` per candidate: its length, the reference length
    ``compute_score(option='closest')`` adds up (the reference length closest to ``testlen``, the shorter on a
    tie), and per order 1..n the candidate's n-grams and its clipped matches (lists of n ints).
    """
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=n)
    for key in res:
        scorer += (res[key][0], gts[key])
    return [(comps["testlen"], scorer._single_reflen(comps["reflen"], "closest", comps["testlen"]),
             list(comps["guess"]), list(comps["correct"])) for comps in scorer.ctest]


# ---------------------------------------------------------------- METEOR

def meteor_pid(scorer) -> int:
    """The process id of a pycocoevalcap ``Meteor``'s JVM."""
    return scorer.meteor_p.pid


def abandon_meteor(scorer) -> None:
    """Kill a ``Meteor``'s JVM after a failed ``compute_score`` and free the lock that call may have left held,
    so that the scorer's ``__del__`` (which takes the lock) does not hang."""
    scorer.meteor_p.kill()
    if scorer.lock.locked():
        scorer.lock.release()


def stop_meteor(scorer) -> None:
    """Kill a ``Meteor``'s JVM and wait for it to exit."""
    scorer.meteor_p.kill()
    scorer.meteor_p.wait()
