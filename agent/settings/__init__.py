"""Settings: the configuration file, validated once and frozen.

* ``model``: the frozen dataclasses (``Settings`` and one per section) with every default;
* ``problems``: the problem collector and its checks (types, durations, GUIDs, URLs, files);
* ``server``, ``entra``, ``roles``, ``session``, ``local``, ``metrics``: one builder per
  section;
* ``fleet``: ``[[setting]]`` blocks and ``[sensor]``: which setting applies to this sensor;
* ``clouds``: the authority and Graph hosts of each national cloud;
* ``checks``: the example's placeholders (refused) and warnings (printed, not fatal);
* ``values``: durations, listen addresses, GUIDs and masked URLs as the file writes them;
* ``loader``: ``load_settings`` / ``settings_from_mapping``, every problem in one ConfigError.

Import from here; the names below are the package's interface. Must not import ``aiohttp``,
``agent.web``, ``agent.signin``, ``agent.sessions`` or ``agent.local``: settings are read
before anything runs.
"""

from .checks import config_warnings, entra_notes, placeholder_problems
from .loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    default_config_path,
    load_or_report,
    load_settings,
    problem_lines,
    settings_from_mapping,
)
from .model import (
    EntraSettings,
    FleetChoice,
    LocalSettings,
    MetricsSettings,
    SensorIdentity,
    ServerSettings,
    SessionSettings,
    Settings,
)
from .values import format_duration, listen_text, mask_credentials, parse_duration

__all__ = [
    "CONFIG_ENV", "DEFAULT_CONFIG_PATH", "EntraSettings", "FleetChoice", "LocalSettings",
    "MetricsSettings", "SensorIdentity", "ServerSettings", "SessionSettings", "Settings",
    "config_warnings", "default_config_path", "entra_notes", "format_duration", "listen_text",
    "load_or_report", "load_settings", "mask_credentials", "parse_duration",
    "placeholder_problems", "problem_lines", "settings_from_mapping",
]
