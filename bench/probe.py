"""Event-loop stall probe: ``python -m bench.probe URL`` GETs URL every 5 ms until SIGTERM,
then prints one JSON line with the latency percentiles (ms). Its own process, so the
benchmark's own event loop (which runs the identity provider) does not colour the figures."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import time
from urllib.parse import urlsplit


def main() -> None:
    url = urlsplit(sys.argv[1])
    host = url.hostname or "127.0.0.1"
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    conn = http.client.HTTPConnection(host, url.port, timeout=10)
    samples: list[float] = []
    errors = 0
    while not stop:
        t0 = time.perf_counter()
        try:
            conn.request("GET", url.path)
            conn.getresponse().read()
            samples.append((time.perf_counter() - t0) * 1000)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, url.port, timeout=10)
        time.sleep(0.005)
    samples.sort()

    def pct(p: float) -> float | None:
        return round(samples[min(len(samples) - 1, int(p * len(samples)))], 2) if samples else None

    print(json.dumps({"samples": len(samples), "errors": errors, "p50_ms": pct(0.5),
                      "p99_ms": pct(0.99), "max_ms": round(samples[-1], 2) if samples else None}))


if __name__ == "__main__":
    main()
