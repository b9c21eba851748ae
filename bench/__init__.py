"""The agent's benchmark: ``python -m bench`` (full, a few minutes) or ``python -m bench --smoke``.

Everything runs on loopback in one go: the local identity provider (in this process), the agent
(``python -m agent serve`` in its own process, so its CPU time and RSS are its own), a bare
aiohttp handler as the ceiling (its own process), and ``wrk`` as the load client (an aiohttp
load client when ``wrk`` is absent). Figures are compared as ratios within one run; the JSON
goes to ``bench/results/latest.json``. See docs/performance.md.
"""
