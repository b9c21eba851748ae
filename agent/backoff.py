"""A delay that doubles with each consecutive failure, up to a cap.

``doubling(1, first, cap)`` is ``first``, ``doubling(2, ...)`` twice that, and so on, never
more than ``cap``; no failure yet (``failures <= 0``) is no delay. Used by the local accounts'
lockouts (agent/local/throttle.py), re-validation's retries (agent/signin/revalidation.py) and
the retries of loading the tenant's metadata (agent/web/app.py).
"""

from __future__ import annotations

_MAX_DOUBLINGS = 30  # 2**30 × any sensible first delay is past every cap; keeps the float small


def doubling(failures: int, first: float, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures."""
    if failures <= 0:
        return 0.0
    return min(cap, first * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
