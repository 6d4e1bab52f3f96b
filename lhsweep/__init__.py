"""lhsweep: removes what crashed Longhorn V2 instance-managers leave on the host."""

__version__ = "0.1.0"
