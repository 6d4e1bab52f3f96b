"""Command line: lhsweep scan | sweep | status | check-config | daemon."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from lhsweep import __version__
from lhsweep.config import DEFAULT_PATH, Config, load, render
from lhsweep.errors import ConfigError, LhsweepError
from lhsweep.host import HostRoot
from lhsweep.model import ActionResult, SweepReport
from lhsweep.render import render_text, report_to_dict

EXIT_OK, EXIT_ACTION_FAILED, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78

EPILOG = """\
exit status:
  0   done (nothing failed; busy, unknown and skipped entries are not failures)
  1   a removal failed, or another sweep holds the lock, or the host could not be read
  2   usage error
  78  configuration error (the message names the file and the key)
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog="lhsweep",
        description="Find and remove the dm devices, /dev/longhorn nodes and NVMe-oF controllers "
        "that crashed Longhorn V2 instance-managers left behind, and nothing else.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lhsweep {__version__}")
    parser.add_argument("--config", default=DEFAULT_PATH, metavar="PATH",
                        help=f"configuration file (default {DEFAULT_PATH}; missing means defaults)")
    parser.add_argument("--host-root", default="/", metavar="DIR",
                        help="read the host below DIR, e.g. /host in a container (default /)")
    parser.add_argument("--log-target", choices=("auto", "journal", "stderr"), default="auto",
                        help="where the daemon logs (default: journal when its socket exists)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    scan = sub.add_parser("scan", help="show every device with its verdict; change nothing")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    sweep = sub.add_parser("sweep", help="remove the stale devices once, then exit")
    sweep.add_argument("--dry-run", action="store_true", help="plan and re-check, remove nothing")
    sweep.add_argument("--json", action="store_true", help="machine-readable output")
    status = sub.add_parser("status", help="show the daemon's last sweep")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    check = sub.add_parser("check-config", help="validate the configuration, print it in effect")
    check.add_argument("--defaults", action="store_true", help="print the built-in defaults")
    sub.add_parser("daemon", help="run as the long-running host service (systemd Type=notify)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `lhsweep` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"lhsweep: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LhsweepError as exc:
        print(f"lhsweep: {exc}", file=sys.stderr)
        return EXIT_ACTION_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "daemon":
        from lhsweep.daemon import run  # noqa: PLC0415 - the daemon's imports only when needed

        return run(args.config, args.host_root, args.log_target)
    if args.command == "status":
        return _status(args)
    if args.command == "check-config":
        config = Config() if args.defaults else load(args.config)
        sys.stdout.write(render(config))
        return EXIT_OK
    config = load(args.config)
    host = HostRoot(args.host_root)
    if args.command == "scan":
        from lhsweep.sweep import scan  # noqa: PLC0415 - keeps check-config free of gRPC

        return _print_report(scan(config, host), args.json)
    return _sweep(config, host, args)


def _sweep(config: Config, host: HostRoot, args: argparse.Namespace) -> int:
    from lhsweep.sweep import run_sweep  # noqa: PLC0415 - keeps check-config free of gRPC
    from lhsweep.tools import ToolRunner  # noqa: PLC0415

    runner = ToolRunner(config.sweep_action_timeout)
    report = run_sweep(config, host, dry_run=args.dry_run or config.sweep_dry_run, runner=runner)
    _journal(report, args.log_target)
    return _print_report(report, args.json)


def _journal(report: SweepReport, log_target: str) -> None:
    """Rule log-every-decision for one-shot sweeps: to journald too (stderr only when asked for)."""
    from lhsweep.journal import DecisionLog, open_journal  # noqa: PLC0415
    from lhsweep.state import summary_line  # noqa: PLC0415

    journal = open_journal(log_target)
    if journal.to_journal or log_target == "stderr":
        DecisionLog(journal).log_report(report, 1, "one-shot " + summary_line(report, 1))


def _print_report(report: SweepReport, as_json: bool) -> int:
    if as_json:
        json.dump(report_to_dict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    failed = any(o.result is ActionResult.FAILED for o in report.outcomes)
    return EXIT_ACTION_FAILED if failed else EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from lhsweep.state import read_state, render_status  # noqa: PLC0415

    config = load(args.config)
    state = read_state(config.state_dir)
    if state is None:
        print(f"lhsweep: no sweep recorded in {config.state_dir} (is the daemon running?)",
              file=sys.stderr)
        return EXIT_ACTION_FAILED
    sys.stdout.write(render_status(state, args.json))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
