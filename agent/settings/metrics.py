"""``[metrics]``: where Prometheus scrapes the agent's metrics (``listen``; empty: off)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .model import MetricsSettings, ServerSettings
from .problems import Problems

METRICS_KEYS = {"listen"}
_LISTEN = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+):(\d{1,5})$")


def build_metrics(p: Problems, section: Mapping[str, Any],
                  server: ServerSettings) -> MetricsSettings:
    listen = p.get(section, "metrics", "listen", str, "").strip()
    if not listen:
        return MetricsSettings()
    m = _LISTEN.match(listen)
    if not m or not 0 < int(m.group(2)) < 65536:
        p.problem("metrics.listen", listen, 'must be host:port, e.g. "127.0.0.1:9464", or '
                  'empty (no metrics)')
        return MetricsSettings()
    host, port = m.group(1).strip("[]"), int(m.group(2))
    if port == server.listen_port and host == server.listen_host:
        p.problem("metrics.listen", listen, "must differ from server.listen: the metrics "
                  "have a listener of their own")
        return MetricsSettings()
    return MetricsSettings(listen_host=host, listen_port=port)
