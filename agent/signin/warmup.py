"""MSAL warm-up: build the MSAL application in the background when a sign-in is likely.

The sign-in page asks for it (``prepare``), so that the first sign-in's start does not wait
for MSAL's discovery fetch; MSAL and requests are imported then, not at start (about 8 MiB
of an idle agent). The background future is kept until it is done (the event loop holds
tasks weakly); what it raises is retrieved and dropped: the sign-in's start builds the
application again and says what failed.
"""

from __future__ import annotations

import asyncio

from .identity import IdentityProvider


class MsalWarmUp:
    def __init__(self, idp: IdentityProvider) -> None:
        self.idp = idp
        self._warming: asyncio.Future[object] | None = None

    def prepare(self) -> None:
        """Start building the MSAL application unless it is built, being built, or there is
        no tenant to build it for (SSO off, discovery not loaded)."""
        if self.idp.client.loaded or self._warming is not None or \
                self.idp.settings.sso_off or not self.idp.tenant.ready:
            return
        self._warming = asyncio.ensure_future(asyncio.to_thread(self.idp.client.app))
        self._warming.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[object]) -> None:
        self._warming = None
        if not task.cancelled():
            task.exception()  # retrieved: start() builds it again and says what failed
