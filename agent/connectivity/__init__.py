"""``sensor-sso-agent check-connectivity``: can this appliance reach Entra ID and Graph?

* ``check``: the checks in order (DNS, TCP, TLS, discovery, JWKS, token endpoint, Graph), one
  line each with the fix on failure;
* ``probes``: the network probing underneath (DNS, TCP, TLS, CONNECT through the proxy).

Must not import ``aiohttp.web``, ``agent.web``, ``agent.signin`` or ``agent.sessions``.
"""
