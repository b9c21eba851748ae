"""The sign-in and the re-validation of live sessions, in the product's own words.

* ``flow``: start a sign-in, finish it from the authorization response, the outcome;
* ``pending``: sign-ins started and not yet finished (state, nonce, PKCE verifier);
* ``identity``: what sign-in and re-validation both ask of Entra ID (checks, names, groups);
* ``revalidation``: the background pass that has Entra ID confirm every SSO session;
* ``health``: is Entra ID available (the agent's own probes and transport failures only),
  shared with the local sign-in and ``/readyz``; ``warmup``: MSAL built in the background.

Must not import ``aiohttp.web`` or ``agent.web``: no HTTP here; handlers parse and respond.
"""
