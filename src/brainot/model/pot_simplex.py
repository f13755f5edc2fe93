"""POT's compiled network simplex, called directly: the only module that imports POT's private ``ot.lp.emd_wrap``.

Written against POT 0.9.7.post1 (the pin in pyproject.toml; ``tests/test_adapters.py`` checks that the installed
POT is that version and that :func:`network_simplex` gives ``ot.emd``'s plan). ``emd_wrap`` is the Cython module
behind ``ot.emd``: not part of POT's documented API, so its signature (``emd_c(a, b, M, max_iter, numThreads,
...)`` returning ``(G, cost, u, v, result_code)``) may change in any release, and a POT upgrade must re-check
this module.

Why the private API: :func:`brainot.model.ot.partial_wasserstein_exact` solves one small LP per sample (one demo
encoder solves 17,920 of 16 x 16 tokens), and for such a problem ``ot.emd``'s per-call backend dispatch, input
checks and dual post-processing take most of the time (0.17 ms of 0.2 ms on the demo machine); the simplex is
the same compiled code either way, so the plans are ``ot.emd``'s.
"""

from __future__ import annotations

import numpy as np
from ot.lp.emd_wrap import check_result, emd_c


class SimplexFailure(RuntimeError):
    """The network simplex stopped without an optimal plan; the message is POT's (``check_result``)."""


def network_simplex(a: np.ndarray, b: np.ndarray, M: np.ndarray, max_iter: int) -> np.ndarray:
    """The optimal plan of the balanced problem ``min <G, M> s.t. G 1 = a, G^T 1 = b, G >= 0``, as ``ot.emd``.

    a (n,), b (m,) float64 weights, all positive (``ot.emd`` drops zero-weight points before the simplex; a caller
    that wants its plans drops them too), with equal sums; M (n, m) float64 costs. Returns G (n, m) float64.
    Runs single-threaded, at most ``max_iter`` pivots. Raises :class:`SimplexFailure` when the simplex does not
    reach the optimum (pivot limit, infeasible or unbounded problem); POT's ``check_result`` also issues its
    message as a ``UserWarning``, as ``ot.emd`` does.
    """
    G, _cost, _u, _v, code = emd_c(a, b, np.ascontiguousarray(M), max_iter, 1)
    failure = check_result(code)   # None when the simplex reached the optimum
    if failure is not None:
        raise SimplexFailure(failure)
    return G
