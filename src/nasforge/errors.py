"""Errors nasforge raises for problems a user can fix; the CLI prints them as one line."""

from __future__ import annotations


class NasforgeError(Exception):
    """A problem with input, data or environment that the user can act on."""


class ConfigError(NasforgeError):
    """A configuration value, preset, flag or name is invalid."""


class DataError(NasforgeError):
    """A data set is missing, corrupt or malformed."""


class GenomeError(NasforgeError):
    """A genome cannot be parsed, validated or built."""


class StorageError(NasforgeError):
    """A study database cannot be opened, is foreign, or does not match the configuration."""
