"""One configuration for a whole fleet: named ``[[setting]]`` blocks and their apply scopes.

Like the portal's SSO sensor settings, each block has a ``name``, an application (its
``[setting.entra]`` keys overlay the shared ``[entra]``), role → groups (``[setting.roles]``,
replacing ``[roles]``) and an apply scope: ``sites``, optionally narrowed to ``zones`` and
``sensors``. The ``[sensor]`` table says who this sensor is (``name``, ``site``, ``zone``).

A block applies when every scope list it gives contains this sensor's value. Among those that
apply, the most specific wins: sensor beats zone beats site. Two at the same level is a
configuration error naming both. None applies → SSO is off for this sensor (the sign-in page
says so). A file without ``[[setting]]`` blocks is the single-setting form and works as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import FleetChoice, SensorIdentity
from .problems import Problem, unknown
from .values import shown

SETTING_KEYS = {"name", "sites", "zones", "sensors", "entra", "roles"}
SENSOR_KEYS = {"name", "site", "zone"}
LEVELS = ("sensor", "zone", "site")  # most specific first
_SCOPE_OF = {"sensor": "sensors", "zone": "zones", "site": "sites"}

SINGLE = FleetChoice(setting=None, level="single",
                     why="single-setting form: [entra] and [roles] apply to this sensor")


def noted(key: str, value: object, why: str) -> Problem:
    """A problem about ``key``; a credential in ``value`` is masked (``values.shown``)."""
    return (key, shown(key, value), why)


def _strings(value: object) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def sensor_identity(data: Mapping[str, Any], problems: list[Problem]) -> SensorIdentity:
    raw = data.get("sensor", {})
    if not isinstance(raw, Mapping):
        problems.append(noted("sensor", raw, "must be a table ([sensor])"))
        return SensorIdentity()
    values: dict[str, str | None] = {}
    for key, value in raw.items():
        if key not in SENSOR_KEYS:
            problems.append(noted(f"sensor.{key}", value, unknown("key", key, SENSOR_KEYS)))
        elif not isinstance(value, str) or not value.strip():
            problems.append(noted(f"sensor.{key}", value, "must be a non-empty string"))
        else:
            values[key] = value.strip()
    return SensorIdentity(**values)


def _level(block: Mapping[str, Any]) -> str | None:
    for level in LEVELS:
        if block.get(_SCOPE_OF[level]):
            return level
    return None


def _applies(block: Mapping[str, Any], sensor: SensorIdentity) -> bool:
    for level in LEVELS:
        wanted = block.get(_SCOPE_OF[level])
        if wanted and getattr(sensor, "name" if level == "sensor" else level) not in wanted:
            return False
    return True


def check_blocks(blocks: object, problems: list[Problem]) -> list[Mapping[str, Any]]:
    """Shape checks of every ``[[setting]]`` block (all of them, applicable or not)."""
    if not isinstance(blocks, list) or not all(isinstance(b, Mapping) for b in blocks):
        problems.append(noted("setting", blocks, "must be [[setting]] tables"))
        return []
    seen: set[str] = set()
    good: list[Mapping[str, Any]] = []
    for index, block in enumerate(blocks):
        name = block.get("name")
        label = f"setting[{name!r}]" if isinstance(name, str) else f"setting[{index}]"
        ok = True
        if not isinstance(name, str) or not name.strip():
            problems.append(noted(f"{label}.name", name, "required: a name for this setting"))
            ok = False
        elif name in seen:
            problems.append(noted(f"{label}.name", name, "two settings have this name"))
            ok = False
        else:
            seen.add(name)
        for key in block:
            if key not in SETTING_KEYS:
                problems.append(noted(f"{label}.{key}", block[key],
                                      unknown("key", key, SETTING_KEYS)))
                ok = False
        for scope in ("sites", "zones", "sensors"):
            if scope in block and _strings(block[scope]) is None:
                problems.append(noted(f"{label}.{scope}", block[scope],
                                 "must be a list of names"))
                ok = False
        if not block.get("sites"):
            problems.append((f"{label}.sites", "", "required: the sites this setting applies "
                             "to (narrow with zones and sensors)"))
            ok = False
        for table in ("entra", "roles"):
            if table in block and not isinstance(block[table], Mapping):
                problems.append(noted(f"{label}.{table}", block[table],
                                 f"must be a table ([setting.{table}])"))
                ok = False
        if ok:
            good.append(block)
    return good


def choose(blocks: list[Mapping[str, Any]], sensor: SensorIdentity,
           problems: list[Problem]) -> tuple[Mapping[str, Any] | None, FleetChoice]:
    """The block that applies to ``sensor`` (sensor beats zone beats site)."""
    applying = [b for b in blocks if _applies(b, sensor)]
    for level in LEVELS:
        here = [b for b in applying if _level(b) == level]
        if len(here) > 1:
            names = [str(b["name"]) for b in here]
            problems.append(("setting", ", ".join(repr(n) for n in names),
                             f"settings {' and '.join(repr(n) for n in names)} both apply to "
                             f"this sensor at the {level} level; narrow one of them"))
            return None, FleetChoice(None, None, "conflict")
        if here:
            block = here[0]
            scope = _SCOPE_OF[level]
            value = sensor.name if level == "sensor" else getattr(sensor, level)
            others = tuple(str(b["name"]) for b in applying if b is not block)
            why = f"{scope} contains {value!r} (this sensor's {level})"
            if others:
                why += "; it is more specific than " + ", ".join(repr(o) for o in others)
            return block, FleetChoice(str(block["name"]), level, why)
    return None, FleetChoice(
        None, None, f"no setting applies to sensor {sensor.name!r} (site {sensor.site!r}, "
        f"zone {sensor.zone!r})", known=known_scopes(blocks))


def known_scopes(blocks: list[Mapping[str, Any]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(scope, names) for sites, zones and sensors, as the blocks name them, sorted."""
    out = []
    for scope in ("sites", "zones", "sensors"):
        names = sorted({str(n) for b in blocks for n in (b.get(scope) or ())})
        out.append((scope, tuple(names)))
    return tuple(out)


def effective_mapping(data: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], FleetChoice, SensorIdentity, list[Problem]]:
    """The single-setting mapping this sensor runs with, the choice, and fleet problems."""
    problems: list[Problem] = []
    sensor = sensor_identity(data, problems)
    rest = {k: v for k, v in data.items() if k not in ("setting", "sensor")}
    if "setting" not in data:
        return rest, SINGLE, sensor, problems
    blocks = check_blocks(data["setting"], problems)
    if not (sensor.site or sensor.zone or sensor.name):
        problems.append(("sensor", "", "required with [[setting]] blocks: this sensor's "
                         "name, site and zone"))
        return rest, FleetChoice(None, None, "no [sensor] identity"), sensor, problems
    block, choice = choose(blocks, sensor, problems)
    if block is not None:
        entra = dict(rest.get("entra", {}) if isinstance(rest.get("entra"), Mapping) else {})
        entra.update(block.get("entra", {}))
        rest["entra"] = entra
        if "roles" in block:
            rest["roles"] = dict(block["roles"])
    return rest, choice, sensor, problems
