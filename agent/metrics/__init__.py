"""What the agent counts about itself, for Prometheus and for ``sensor-sso-agent status``.

* ``tally``: the process-lifetime counts (``AgentMetrics``: sign-ins, refusals, ``/auth/check``
  answers and their latency, re-validations, reloads, malformed and throttled requests) and
  the last hour of sign-ins and refusals; plain integers, so counting costs next to nothing
  (``/auth/check``'s latency is two clock reads and a bucket increment per answer);
* ``labels``: the only values a label may take (methods, outcomes, the reason codes, roles,
  dependencies, tasks): never a UPN, object id, address, group id or free text;
* ``readings``: what the running application says about itself when asked (sessions by role
  and method, re-validation lag, state writable, dependencies, failing tasks, readiness);
* ``exposition``: both turned into Prometheus families with ``prometheus_client`` on a
  registry of the agent's own (never the library's global one);
* ``listener``: the ``[metrics] listen`` HTTP listener serving ``GET /metrics``;
* ``summary``: the admin socket's ``/status`` answer (``sensor-sso-agent status``, in
  ``agent/status.py``, prints it): what an operator reads at 3 a.m.

``prometheus_client`` is imported only when the listener starts: an agent without
``[metrics] listen`` never loads it.

Must not import ``agent.web``, ``agent.signin``, ``agent.sessions``, ``agent.entra`` or
``agent.local``: what the application knows arrives as ``Readings``, built by the web layer.
"""
