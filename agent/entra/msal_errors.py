"""What MSAL raises, told apart: the way to Entra ID failing (``transport_errors``), MSAL
failing to read Entra ID's answer (``raised_by_msal``), and the agent's own bugs, which are
never passed off as either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import IdentityProviderUnavailable
from .outbound import MAX_BODY, ResponseTooLarge


@contextmanager
def transport_errors(request: str, answer: str = "token") -> Iterator[None]:
    """What the way to Entra ID raised during ``request``, as an
    ``IdentityProviderUnavailable``: it says nothing about the user."""
    import requests

    try:
        yield
    except requests.Timeout:
        raise IdentityProviderUnavailable(
            "idp_timeout", f"Entra ID did not answer {request} in time",
            dependency="Entra ID") from None
    except ResponseTooLarge:
        raise IdentityProviderUnavailable(
            "idp_response_too_large", f"Entra ID's {answer} answer is larger than "
            f"{MAX_BODY // 1024} KiB", dependency="Entra ID") from None
    except requests.RequestException as exc:
        raise IdentityProviderUnavailable(
            "idp_unreachable", f"cannot reach Entra ID: {type(exc).__name__}",
            dependency="Entra ID") from None


# What MSAL raises when it cannot read what Entra ID answered (an ID token without dots or
# not a string, a field of the wrong type) - when MSAL's own code raised it (raised_by_msal).
MSAL_READING_ERRORS = (RuntimeError, KeyError, ValueError, TypeError, AttributeError,
                       IndexError)
_AGENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raised_by_msal(exc: BaseException) -> bool:
    """Did MSAL's code raise ``exc`` (reading an answer), rather than the agent's own code
    that MSAL called (the HTTP client: a bug there must not pass for a malformed token)?
    The innermost frame in either package decides; standard library frames are skipped."""
    import msal

    msal_dir = os.path.dirname(os.path.abspath(msal.__file__))
    files = []
    tb = exc.__traceback__
    while tb is not None:
        files.append(os.path.abspath(tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    for path in reversed(files):
        if path.startswith(msal_dir + os.sep):
            return True
        if path.startswith(_AGENT_DIR + os.sep):
            return False
    return False
