"""The sensor software release this agent runs next to: SSO sign-in needs 24.1.2 or later.

``server.sensor_version_file`` names a file holding the release (``24.1.3``, or a line such as
``version=24.1.3.118``); the first dotted number in it counts. ``check-config`` only warns:
the agent itself works either way, but an older console has no SSO sign-in button to use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MINIMUM = (24, 1, 2)
MINIMUM_TEXT = ".".join(map(str, MINIMUM))
_VERSION = re.compile(r"(?<![\d.])(\d+(?:\.\d+){1,3})(?![\d])")


@dataclass(frozen=True)
class SensorVersion:
    ok: bool
    message: str


def parse_version(text: str) -> tuple[int, ...] | None:
    match = _VERSION.search(text)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def check_sensor_version(path: Path | None) -> SensorVersion:
    """What check-config says about the sensor release (``ok`` False → print a warning)."""
    if path is None:
        return SensorVersion(True, "sensor software release not checked (set "
                                   "server.sensor_version_file to the sensor's version file)")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError as exc:
        return SensorVersion(False, f"cannot read the sensor software release from {path}: "
                                    f"{exc.strerror}; SSO sign-in needs sensor software "
                                    f"{MINIMUM_TEXT} or later")
    version = parse_version(text)
    if version is None:
        return SensorVersion(False, f"{path} names no sensor software release (expected a "
                                    f"version such as {MINIMUM_TEXT}); check "
                                    "server.sensor_version_file")
    shown = ".".join(map(str, version))
    padded = version + (0,) * (len(MINIMUM) - len(version))
    if padded[:len(MINIMUM)] < MINIMUM:
        return SensorVersion(False, f"sensor software {shown} is older than {MINIMUM_TEXT}, "
                                    "the first release with SSO sign-in: the console shows no "
                                    f"SSO Sign-in button until the sensor is updated to "
                                    f"{MINIMUM_TEXT} or later")
    return SensorVersion(True, f"sensor software {shown} supports SSO sign-in "
                               f"({MINIMUM_TEXT} or later)")
