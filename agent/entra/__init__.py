"""Talking to Microsoft Entra ID and Graph: the protocol, away from HTTP serving.

* ``client``: MSAL (authorization request, code redemption, refresh) off the event loop;
  ``msal_errors``: what MSAL raises, told from the agent's own bugs;
* ``discovery``: the tenant's discovery document and signing keys, cached and refreshed;
* ``tokens``: the ID token's checks (PyJWT: signature, issuer, audience, tenant, times, nonce);
* ``graph``: ``/me`` and ``checkMemberGroups``; ``outbound``, ``proxy``, ``credentials``: the way
  out (TLS, CA bundle, proxy and its login, size caps) and the client credential.

Must not import ``aiohttp.web``, ``agent.web``, ``agent.signin``, ``agent.sessions`` or
``agent.local``: Entra's answers are translated into ``agent.errors`` here, nothing more.
"""
