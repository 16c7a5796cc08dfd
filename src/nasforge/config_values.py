"""Checks of a config mapping's sections and values: allowed keys, typed values, durations
(``90m``, ``1h30m``) and budgets. Every error is a ``ConfigError`` naming the source and the
key. Used by :mod:`nasforge.config` and the fidelity study's config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget

__all__ = ["parse_duration"]


def _check_keys(section: str, data: Any, allowed: set[str], source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{section}' must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"{section}.{unknown[0]}" if section else unknown[0]
        raise ConfigError(
            f"{source}: unknown key '{where}'; allowed in {section or 'top level'}: "
            f"{', '.join(sorted(allowed))}"
        )
    return dict(data)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}


def _typed(section: str, key: str, value: Any, kind: str, source: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    types = _TYPES[kind]
    if isinstance(value, bool) and kind != "bool" or not isinstance(value, types):
        raise ConfigError(
            f"{source}: '{section}.{key}' must be {kind}{' or null' if optional else ''}, "
            f"got {value!r}"
        )
    return float(value) if kind == "float" else value


_DURATION_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds from a number or a text such as ``300``, ``300s``, ``90m``, ``23h``, ``1d`` or
    ``1h30m``; raises ``ConfigError`` naming the text otherwise (or for a value <= 0)."""
    if isinstance(text, bool):
        raise ConfigError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        import re

        raw = str(text).strip().lower()
        parts = re.fullmatch(r"((?:\d+(?:\.\d+)?[smhd]?)+)", raw.replace(" ", ""))
        pieces = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", raw.replace(" ", "")) if parts else []
        if not pieces or sum(1 for _, unit in pieces if not unit) > (1 if len(pieces) == 1 else 0):
            raise ConfigError(f"not a duration: {text!r} (use seconds or e.g. 90m, 23h, 1d, 1h30m)")
        seconds = sum(float(value) * _DURATION_UNITS[unit or "s"] for value, unit in pieces)
    if not seconds > 0:
        raise ConfigError(f"a duration must be positive, got {text!r}")
    return seconds


def _duration(section: str, key: str, value: Any, source: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: '{section}.{key}': {exc}") from None


def _budget(section: str, data: Any, source: str, base: Budget | None = None) -> Budget:
    raw = _check_keys(section, data, {f.name for f in dataclasses.fields(Budget)}, source)
    merged = (base or Budget()).to_dict()
    merged.update(raw)
    try:
        return Budget.from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {section}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {section}: {exc}") from None
