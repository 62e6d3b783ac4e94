"""Entry point of the ``sluicegate`` console script and of ``python -m sluicegate``.

The command line itself is implemented in Rust (clap) and shared with the standalone binary;
this module only hands ``sys.argv`` over to it.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    # Python installs its own SIGINT handler, which only sets a flag that is checked between
    # bytecodes; while the Rust CLI runs no bytecode executes, so Ctrl-C would be ignored.
    # Restore the default so Ctrl-C stops the command (the CLI may install its own handler).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Python ignores SIGPIPE; a native CLI should die quietly when its pipe closes
    # (`sluicegate runs | head`) instead of reporting a write error.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    from sluicegate._load import load_core

    argv = list(sys.argv)
    if not argv or argv[0].endswith("__main__.py"):
        argv[:1] = ["sluicegate"]  # `python -m sluicegate`: show a usable program name
    sys.exit(load_core().cli_main(argv))


if __name__ == "__main__":
    main()
