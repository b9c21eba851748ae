"""``sensor-sso-agent check-nginx``: is the agent really in front of the console?

The agent is only as safe as the few nginx lines that send every console request through
``/auth/check``; ``nginx -t`` and ``check-config`` pass when they are missing. This package
looks at nginx from the outside, as ``nginx -T`` and a browser see it:

* ``nginxconf``: ``nginx -T`` output into one tree of directives with file:line, includes
  resolved;
* ``static``: the wiring rules (upstream once, sensor-sso.conf in the console's server,
  auth_request and sensor-sso-auth.conf in every console location or the public marker,
  internal check locations, no client-set ``X-Auth-Request-*``);
* ``live``: anonymous and forged-header requests to the console URL, ``/auth/check`` from
  outside, ``/login``;
* ``cli``: the command and its report.

Must not import ``aiohttp.web``, ``agent.web``, ``agent.signin``, ``agent.sessions``,
``agent.entra``, ``agent.settings``, ``agent.local`` or ``agent.devidp``: it judges the
wiring only from nginx's configuration and its answers, never from the agent's own code.
"""
