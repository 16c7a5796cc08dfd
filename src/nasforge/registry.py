"""One small registry type: names to factories (spaces, strategies, executors, proxies, ...).

A :class:`Registry` maps a name to an entry (usually a class or a factory function). It gives
the three things every registry of nasforge needs and used to write out by hand:

- an unknown name is one :class:`~nasforge.errors.ConfigError` listing the known names;
- :meth:`Registry.make` checks the settings against the factory's signature
  (:func:`inspect.signature` ``.bind``) *before* calling it, so an unknown or missing setting
  is a ``ConfigError`` naming the key, while an exception raised *inside* the factory (a
  ``TypeError`` from a bug included) propagates unchanged, with its traceback;
- contract tests iterate :meth:`Registry.names`, so a new entry is tested without a new test
  (timm's pattern).

Registries are module-level objects filled at import time by decorators; registering a name
again replaces the entry (a re-imported module registers its new classes).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, Iterator, TypeVar, overload

from nasforge.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")
R = TypeVar("R")


class Registry(Generic[T]):
    """Named entries of one kind (e.g. ``"space"``), in registration order.

    Args:
        kind: what an entry is, for messages (``"unknown space 'x'; known: ..."``).
        sort_names: whether :meth:`names` (and the known names in messages) are sorted
            alphabetically (default) or kept in registration order.
    """

    def __init__(self, kind: str, sort_names: bool = True) -> None:
        self.kind = kind
        self.sort_names = sort_names
        self._entries: dict[str, T] = {}

    # ------------------------------------------------------------------ filling
    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> Any:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers
        the decorated class or function and returns it unchanged.

        Raises:
            ConfigError: ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if entry is not None:
            self._entries[name] = entry
            return entry

        def decorator(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return decorator

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        """The registered names (sorted, or in registration order if ``sort_names`` is off)."""
        return sorted(self._entries) if self.sort_names else list(self._entries)

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises:
            ConfigError: no entry has that name; the message lists the known names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in the order of :meth:`names`."""
        return [(n, self._entries[n]) for n in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    # ------------------------------------------------------------------ making
    def check_settings(self, name: str, *args: Any, **settings: Any) -> None:
        """Check that ``entry(*args, **settings)`` matches the entry's signature, without
        calling it. ``args`` are the positional arguments the caller supplies (e.g. a
        strategy's space, budget, problem and seed); ``settings`` the user's keywords.

        Raises:
            ConfigError: unknown name; a setting the factory does not take (named, with the
                settings it takes); a required setting missing; any other mismatch.
        """
        factory = self.get(name)
        try:
            signature = inspect.signature(factory)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # a builtin without a signature: nothing to check
            return
        params = list(signature.parameters.values())
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        taken_by_args = {p.name for p in positional[: len(args)]}
        known = [
            p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in taken_by_args
        ]
        where = f"{self.kind} {name!r}"
        if not takes_any:
            unknown = [key for key in settings if key not in known]
            if unknown:
                raise ConfigError(
                    f"bad settings for {where}: unknown setting {unknown[0]!r}; "
                    f"known: {', '.join(known) if known else '(none)'}"
                )
        try:
            signature.bind(*args, **settings)
        except TypeError as exc:
            raise ConfigError(f"bad settings for {where}: {exc}") from None

    def make(self: Registry[Callable[..., R]], name: str, *args: Any, **settings: Any) -> R:
        """``entry(*args, **settings)`` after :meth:`check_settings`.

        Raises:
            ConfigError: as :meth:`check_settings`.
            Exception: whatever the factory itself raises, unchanged (a ``TypeError`` inside a
                constructor is a bug to see with its traceback, not "bad settings").
        """
        self.check_settings(name, *args, **settings)
        return self.get(name)(*args, **settings)
