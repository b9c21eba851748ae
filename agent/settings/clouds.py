"""National clouds: which authority and Microsoft Graph hosts a ``cloud`` name stands for.

``cloud = "public" | "usgov" | "usgov-dod" | "china"`` picks both hosts; an explicit
``authority_host`` or ``graph_url`` in the configuration still wins. The token issuer is never
derived from here: it comes from the tenant's discovery document.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cloud:
    name: str
    authority_host: str
    graph_url: str


CLOUDS: dict[str, Cloud] = {
    "public": Cloud("public", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": Cloud("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "usgov-dod": Cloud("usgov-dod", "https://login.microsoftonline.us",
                       "https://dod-graph.microsoft.us"),
    "china": Cloud("china", "https://login.partner.microsoftonline.cn",
                   "https://microsoftgraph.chinacloudapi.cn"),
}

DEFAULT_CLOUD = "public"

