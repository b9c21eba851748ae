"""The HTTP edge: the app factory, routes, thin handlers (parse, call, respond), pages.

* ``app``: the application and its background work; ``server``: the listener and front door
  (``aiohttp_private``: the one place aiohttp's private attributes are read);
* ``check``: ``/auth/check``, the hot path (nginx asks it before every console request);
* ``handlers``, ``local``, ``frontchannel``, ``refusals``: the routes; ``finish``: the end of
  every sign-in (SSO and local); ``pages``: templates;
* ``health``: ``/healthz``, ``/readyz`` and the readings the metrics and ``status`` show;
* ``middlewares``, ``host``, ``peer``, ``keys``: request ids, host names, the caller, app keys.

Must not import ``agent.devidp``: the local provider is for tests, ``demo`` and rehearsals.
"""
