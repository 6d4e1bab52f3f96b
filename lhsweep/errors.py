"""The error hierarchy: every error lhsweep reports on purpose derives from LhsweepError."""

from __future__ import annotations


class LhsweepError(Exception):
    """Base of all errors lhsweep raises on purpose; str() is a one-line message."""


class ConfigError(LhsweepError):
    """A configuration file or value is wrong; names the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class HostReadError(LhsweepError):
    """A part of the host could not be read (names the path)."""


class RuntimeQueryError(LhsweepError):
    """The container runtime could not be asked or answered garbage."""


class LockBusyError(LhsweepError):
    """Another lhsweep sweep already holds the sweep lock."""


class PrivilegeError(LhsweepError):
    """lhsweep lacks a privilege it needs (it runs as a user other than root); says which."""


class StateError(LhsweepError):
    """The state directory or the state file cannot be used (names the path and why)."""
