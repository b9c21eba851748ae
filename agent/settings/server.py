"""``[server]``: where the agent listens, where a signed-in user lands, who the proxies are."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..clientaddr import trusted_proxies_setting
from ..urlpaths import is_local_path
from .model import ServerSettings
from .problems import Problems

SERVER_KEYS = {"listen", "tls_cert_file", "tls_key_file", "post_login_path", "sensor_name",
               "access_contact", "trust_forwarded_for", "sensor_version_file",
               "trusted_proxies", "admin_socket"}
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


def build_server(p: Problems, s: Mapping[str, Any]) -> ServerSettings:
    d = ServerSettings()
    host, port = d.listen_host, d.listen_port
    listen = p.get(s, "server", "listen", str, None)
    if listen is not None:
        m = re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\d{1,5})$", listen)
        if not m or not 0 < int(m.group(2)) < 65536:
            p.problem("server.listen", listen, "must be host:port, e.g. 127.0.0.1:8080")
        else:
            host, port = m.group(1).strip("[]"), int(m.group(2))
    cert = p.file(s, "server", "tls_cert_file")
    key = p.file(s, "server", "tls_key_file")
    if (cert is None) != (key is None):
        p.problem("server.tls_cert_file", None,
                  "tls_cert_file and tls_key_file must be set together")
    version_file = p.get(s, "server", "sensor_version_file", str, None)
    path = p.get(s, "server", "post_login_path", str, d.post_login_path)
    if not is_local_path(path):
        p.problem("server.post_login_path", path, "must be a path on this sensor, like /")
    return ServerSettings(
        listen_host=host, listen_port=port, tls_cert_file=cert, tls_key_file=key,
        post_login_path=path,
        sensor_name=p.get(s, "server", "sensor_name", str, d.sensor_name),
        access_contact=p.get(s, "server", "access_contact", str, d.access_contact),
        trusted_proxies=trusted_proxies_setting(p, s),
        trust_forwarded_for=p.get(s, "server", "trust_forwarded_for", bool, None),
        sensor_version_file=Path(version_file) if version_file else None,
        admin_socket=_admin_socket_path(p, s, d.admin_socket),
    )


def _admin_socket_path(p: Problems, s: Mapping[str, Any], default: Path) -> Path:
    """An absolute path short enough for a Unix socket address (the `sessions` commands)."""
    value = p.get(s, "server", "admin_socket", str, str(default))
    if not value.startswith("/") or len(value.encode()) > _MAX_SOCKET_PATH:
        p.problem("server.admin_socket", value,
                  f"must be an absolute path of at most {_MAX_SOCKET_PATH} bytes")
        return default
    return Path(value)
