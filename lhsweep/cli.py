"""Command line: lhsweep scan | sweep | status | check-config | daemon."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from lhsweep import __version__
from lhsweep.config import DEFAULT_PATH, Config, load, render
from lhsweep.errors import LhsweepError
from lhsweep.host import HostRoot
from lhsweep.model import ActionResult, SweepReport
from lhsweep.render import render_text, report_to_dict

# Besides these, an error that ends a command exits with its own status (LhsweepError.exit_status).
EXIT_OK, EXIT_ACTION_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
exit status:
  0   done (nothing failed; busy, unknown and skipped entries are not failures)
  1   a removal failed, another sweep holds the lock, parts of the host could not be
      read (the report lists them as problems), or status found no sweep recorded
  2   usage error
  73  the state directory or state file cannot be used (the message names it)
  77  lhsweep lacks a privilege it needs (not run as root; the message says which)
  78  configuration error (the message names the file and the key)
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands; global options go before or after the command."""
    parser = argparse.ArgumentParser(
        prog="lhsweep",
        description="Find and remove the dm devices, /dev/longhorn nodes and NVMe-oF controllers "
        "that crashed Longhorn V2 instance-managers left behind, and nothing else.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lhsweep {__version__}")
    _global_options(parser, DEFAULT_PATH, "/", "auto")
    # After the command the same options default to "not given", so they never undo a value
    # given before it.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS, argparse.SUPPRESS, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    scan = sub.add_parser("scan", parents=[common], help="show every device with its verdict; change nothing")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    sweep = sub.add_parser("sweep", parents=[common], help="remove the stale devices once, then exit")
    sweep.add_argument("--dry-run", action="store_true", help="plan and re-check, remove nothing")
    sweep.add_argument("--json", action="store_true", help="machine-readable output")
    status = sub.add_parser("status", parents=[common], help="show the daemon's last sweep")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    check = sub.add_parser("check-config", parents=[common],
                           help="validate the configuration, print it in effect")
    check.add_argument("--defaults", action="store_true", help="print the built-in defaults")
    sub.add_parser("daemon", parents=[common],
                   help="run as the long-running host service (systemd Type=notify)")
    return parser


def _global_options(parser: argparse.ArgumentParser, config: str, host_root: str,
                    log_target: str) -> None:
    parser.add_argument("--config", default=config, metavar="PATH",
                        help=f"configuration file (default {DEFAULT_PATH}; missing means defaults)")
    parser.add_argument("--host-root", default=host_root, metavar="DIR",
                        help="read the host below DIR, e.g. /host in a container (default /)")
    parser.add_argument("--log-target", choices=("auto", "journal", "stderr"), default=log_target,
                        help="where the daemon logs (default: journal when its socket exists)")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse the command line; an unknown option is named before a missing command is."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("a COMMAND is required (scan, sweep, status, check-config or daemon)")
    if args.command in ("scan", "sweep", "daemon") and not os.path.isdir(args.host_root):
        # Else every host path would read as absent: an empty host, nothing said.
        found = "not a directory" if os.path.exists(args.host_root) else "no such directory"
        parser.error(f"--host-root {args.host_root}: {found}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `lhsweep` command; returns the exit status."""
    args = parse_args(argv)
    try:
        return _dispatch(args)
    except LhsweepError as exc:
        print(exc.stderr_line(), file=sys.stderr)
        return exc.exit_status


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
    """Rule log-every-decision for one-shot sweeps: decisions go to journald too, as they are taken
    (stderr only when asked for)."""
    from lhsweep.journal import DecisionLog, open_journal  # noqa: PLC0415
    from lhsweep.progress import LoggedProgress, Progress  # noqa: PLC0415
    from lhsweep.state import summary_line  # noqa: PLC0415
    from lhsweep.sweep import run_sweep  # noqa: PLC0415 - keeps check-config free of gRPC
    from lhsweep.tools import ToolRunner  # noqa: PLC0415

    journal = open_journal(args.log_target)
    log = DecisionLog(journal) if journal.to_journal or args.log_target == "stderr" else None
    dry_run = args.dry_run or config.sweep_dry_run
    progress = LoggedProgress(log, dry_run) if log else Progress()
    runner = ToolRunner(config.sweep_action_timeout)
    report = run_sweep(config, host, dry_run=dry_run, runner=runner, progress=progress)
    if log:
        log.log_summary(report, 1, "one-shot " + summary_line(report, 1))
    return _print_report(report, args.json)


def _print_report(report: SweepReport, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(json.dumps(report_to_dict(report), indent=2) + "\n")  # one write
    else:
        sys.stdout.write(render_text(report))
    from lhsweep.sweep import read_incomplete  # noqa: PLC0415 - keeps check-config free of gRPC

    failed = any(o.result is ActionResult.FAILED for o in report.outcomes)
    return EXIT_ACTION_FAILED if failed or read_incomplete(report) else EXIT_OK


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
