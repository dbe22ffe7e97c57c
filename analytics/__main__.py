"""``python -m analytics`` / ``cdp-relay``: command-line tools.

Commands: ``demo`` (the workload ``make demo`` runs) and ``collector`` (a local
Data Pipelines endpoint).  More tools (send one call, import a file) come with
the CLI issue.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

EXAMPLES = """examples:
  cdp-relay demo                      send a few thousand events to a local collector and report
  cdp-relay collector --port 8765     serve a local Data Pipelines endpoint on 127.0.0.1:8765
"""


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="cdp-relay",
        description="Tools for the cdp-relay analytics SDK.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["demo", "collector"], help="what to run")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    from .collector.__main__ import main as collector_main

    return collector_main(rest)


if __name__ == "__main__":
    sys.exit(main())
