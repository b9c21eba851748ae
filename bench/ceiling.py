"""The ceiling: a bare aiohttp handler doing the same cookie → dict lookup as /auth/check.

``python -m bench.ceiling PORT`` with the cookie value in ``$BENCH_COOKIE``; no middleware, no
access log, two headers back, as in the issue's reference figure.
"""

from __future__ import annotations

import os
import sys

from aiohttp import web

COOKIE_NAME = "__Host-sensor_session"


def make_app(cookie: str) -> web.Application:
    sessions = {cookie: ("admin@contoso.example", "admin")}

    async def check(request: web.Request) -> web.Response:
        found = sessions.get(request.cookies.get(COOKIE_NAME, ""))
        if found is None:
            return web.Response(status=401)
        return web.Response(headers={"X-Auth-Request-User": found[0],
                                     "X-Auth-Request-Role": found[1]})

    app = web.Application()
    app.router.add_get("/auth/check", check)
    return app


def main() -> None:
    web.run_app(make_app(os.environ["BENCH_COOKIE"]), host="127.0.0.1", port=int(sys.argv[1]),
                access_log=None, print=None)


if __name__ == "__main__":
    main()
