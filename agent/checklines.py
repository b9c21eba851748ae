"""The operator commands' check lines (``check-connectivity``, ``check-nginx``): one line per
check, ``OK`` / a neutral word / ``FAIL``, and under a failure the line that fixes it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

# check, where (target or file:line), ok (None: the neutral word), detail, fix
Line = tuple[str, str, bool | None, str, str]


def print_checks(lines: Iterable[Line], neutral: str, out: TextIO) -> int:
    """Print each line; the number of failed checks."""
    failed = 0
    for check, where, ok, detail, fix in lines:
        word = "OK" if ok else neutral if ok is None else "FAIL"
        print(f"{word:<5}{check:<10}{where}: {detail}", file=out)
        if ok is False:
            failed += 1
            if fix:
                print(f"{'':<5}{'fix:':<10}{fix}", file=out)
    return failed
