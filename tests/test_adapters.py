"""The adapters for private library internals (brainot.model.pot_simplex, brainot.scoring.coco_internals) against
the real libraries: the installed versions are the ones they were written for (pyproject.toml's pins), and they
give what the libraries' public API gives."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import ot
import pytest

from brainot.config import REPO
from brainot.model import pot_simplex
from brainot.scoring import coco_internals
from brainot.scoring.image_scores import bleu

# tokenized candidates and references, as pycocoevalcap's scorers take them; lengths chosen so that the closest
# reference length is sometimes shorter, sometimes longer than the candidate, and once a tie
GTS = {
    1: ["a man rides a horse on the beach", "a person riding a brown horse", "horse and rider by the sea"],
    2: ["a kitchen with a stove and a sink", "an empty kitchen"],
    3: ["a red sign on a street corner", "a stop sign next to a road", "street sign"],
    4: ["two dogs play in the snow", "dogs running through snow"],
}
RES = {1: ["a man riding a horse"], 2: ["a kitchen with a white stove and a sink and a window"],
       3: ["a sign on the street"], 4: ["two dogs in snow"]}


def pinned(package: str) -> str:
    """The ``==`` pin of ``package`` in pyproject.toml's dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project.get("optional-dependencies", {}).values()
                                              for r in group]
    pins = [m.group(1) for r in requirements if (m := re.fullmatch(rf"{package}\s*==\s*(\S+)", r.strip(), re.I))]
    assert len(pins) == 1, f"pyproject.toml: expected one '{package}==VERSION' pin, found {pins}"
    return pins[0]


@pytest.mark.parametrize("package, module", [("pot", pot_simplex), ("pycocoevalcap", coco_internals)])
def test_the_installed_library_is_the_version_its_adapter_was_written_against(package, module):
    version = pinned(package)
    assert importlib.metadata.version(package) == version
    assert f"{'POT' if package == 'pot' else package} {version}" in module.__doc__


# ---------------------------------------------------------------- POT


@pytest.mark.parametrize("n, m, seed", [(5, 5, 0), (7, 4, 1), (17, 17, 2)])
def test_network_simplex_gives_ot_emds_plan(n, m, seed):
    # Dyadic weights of exactly equal sums: ot.emd rescales b to a's sum, which would move the plan by an ulp
    # otherwise (the callers' extended problems balance their masses themselves).
    rng = np.random.default_rng(seed)
    a_int, b_int = rng.integers(1, 9, n), rng.integers(1, 9, m)
    a, b = a_int * b_int.sum() / 1024.0, b_int * a_int.sum() / 1024.0
    assert a.sum() == b.sum()
    M = rng.uniform(0, 1, (n, m))
    G = pot_simplex.network_simplex(a, b, M, 100_000)
    np.testing.assert_array_equal(G, ot.emd(a, b, M, numItermax=100_000))
    np.testing.assert_allclose(G.sum(1), a, rtol=1e-12)
    np.testing.assert_allclose(G.sum(0), b, rtol=1e-12)


def test_network_simplex_failure_carries_pots_message():
    rng = np.random.default_rng(3)
    a = b = np.full(6, 1 / 6)
    M = rng.uniform(0, 1, (6, 6))
    with pytest.warns(UserWarning) as warned:
        ot.emd(a, b, M, numItermax=1)
    with pytest.raises(pot_simplex.SimplexFailure) as err, pytest.warns(UserWarning, match="numItermax"):
        pot_simplex.network_simplex(a, b, M, 1)
    assert str(err.value) == str(warned[0].message) and "numItermax" in str(err.value)


# ---------------------------------------------------------------- pycocoevalcap: BLEU


def test_bleu_statistics_give_the_public_scorers_corpus_and_per_image_bleu():
    from pycocoevalcap.bleu.bleu import Bleu

    corpus, per_image = Bleu(4).compute_score(GTS, RES, verbose=0)
    stats = np.array([[t, r, *g, *c] for t, r, g, c in coco_internals.bleu_statistics(RES, GTS, 4)])
    assert stats.shape == (len(RES), 10)
    assert [row[0] for row in stats] == [len(RES[k][0].split()) for k in RES]   # candidate lengths
    np.testing.assert_allclose(bleu(stats.sum(0)), corpus, rtol=1e-12)
    np.testing.assert_allclose(bleu(stats), np.array(per_image).T, rtol=1e-12)


def test_bleu_statistics_follow_the_order_of_the_candidates():
    order = [3, 1, 4, 2]
    forward = coco_internals.bleu_statistics({k: RES[k] for k in order}, GTS, 4)
    by_key = dict(zip(order, forward))
    assert [by_key[k] for k in RES] == coco_internals.bleu_statistics(RES, GTS, 4)


# ---------------------------------------------------------------- pycocoevalcap: METEOR


def test_meteor_pid_names_the_jvm_that_answers_and_stop_meteor_ends_it():
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    pid = coco_internals.meteor_pid(scorer)
    try:
        score, scores = scorer.compute_score(GTS, RES)
        assert 0 < score < 1 and len(scores) == len(RES)
        assert "meteor-1.5.jar" in open(f"/proc/{pid}/cmdline").read().split("\0")
    finally:
        coco_internals.stop_meteor(scorer)
    with pytest.raises(ProcessLookupError):   # killed and reaped
        os.kill(pid, 0)


def test_abandon_meteor_after_a_jvm_death_lets_the_scorer_be_collected():
    # In a subprocess: without abandon_meteor, Meteor.__del__ waits forever on the lock that the failed
    # compute_score left held, and the interpreter never exits.
    script = textwrap.dedent(f"""
        import os, signal
        from pycocoevalcap.meteor.meteor import Meteor
        from brainot.scoring import coco_internals
        scorer = Meteor()
        pid = coco_internals.meteor_pid(scorer)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            scorer.compute_score({GTS!r}, {RES!r})
        except Exception as exc:
            print("failed:", type(exc).__name__)
        else:
            raise SystemExit("compute_score answered without its JVM")
        coco_internals.abandon_meteor(scorer)
        del scorer
        print("collected")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("failed:") and out.stdout.splitlines()[-1] == "collected"
