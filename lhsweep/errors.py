"""The error hierarchy: every error lhsweep reports on purpose derives from LhsweepError."""

from __future__ import annotations


class LhsweepError(Exception):
    """Base of all errors lhsweep raises on purpose; str() is a one-line message."""

    # The exit status of a command this error ends (sysexits.h where one fits), and what its
    # line on stderr says before the message: "lhsweep: <label><message>".
    exit_status = 1
    label = ""

    def stderr_line(self) -> str:
        """The one line a command that this error ends prints on stderr."""
        return f"lhsweep: {self.label}{self}"


class ConfigError(LhsweepError):
    """A configuration file or value is wrong; names the file and the key."""

    exit_status = 78  # EX_CONFIG; systemd's RestartPreventExitStatus= names it
    label = "configuration error: "

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

    exit_status = 77  # EX_NOPERM
    label = "missing privilege: "


class StateError(LhsweepError):
    """The state directory or the state file cannot be used (names the path and why)."""

    exit_status = 73  # EX_CANTCREAT
