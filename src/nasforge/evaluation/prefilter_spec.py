"""The pre-filter setting ``PROXY:M[:K]`` (``--prefilter``, ``prefilter:`` in a config): its
parsed form and the check of its values, kept out of the strategies so that reading a config
imports no strategy module (``nasforge.strategies.prefilter`` does the filtering)."""

from __future__ import annotations

from dataclasses import dataclass

from nasforge.errors import ConfigError

__all__ = ["PrefilterSpec", "parse_prefilter"]


@dataclass(frozen=True)
class PrefilterSpec:
    """Score ``proposals`` candidates with ``proxy`` and train the best ``keep``."""

    proxy: str
    proposals: int
    keep: int = 1

    def __str__(self) -> str:
        return f"{self.proxy}:{self.proposals}:{self.keep}"


def parse_prefilter(spec: str | PrefilterSpec, source: str = "prefilter") -> PrefilterSpec:
    """Parse ``PROXY:M`` or ``PROXY:M:K``; a ``ConfigError`` names ``source`` and the problem."""
    if isinstance(spec, PrefilterSpec):
        parsed = spec
    else:
        if not isinstance(spec, str):
            raise ConfigError(f"{source}: expected 'PROXY:M' or 'PROXY:M:K', got {spec!r}")
        parts = spec.strip().split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{source}: expected 'PROXY:M' or 'PROXY:M:K', got {spec!r}")
        try:
            numbers = [int(p) for p in parts[1:]]
        except ValueError:
            raise ConfigError(f"{source}: M and K must be integers, got {spec!r}") from None
        parsed = PrefilterSpec(parts[0], numbers[0], numbers[1] if len(numbers) == 2 else 1)
    from nasforge.evaluation.proxies import PROXIES

    if parsed.proxy not in PROXIES:
        raise ConfigError(f"{source}: unknown proxy {parsed.proxy!r}; "
                          f"known: {', '.join(PROXIES.names())}")
    if parsed.proposals < 1 or not 1 <= parsed.keep <= parsed.proposals:
        raise ConfigError(f"{source}: need M >= 1 and 1 <= K <= M, got {parsed}")
    return parsed
