"""Child process for the ledger crash test: claim, "execute", complete — pausing where told.

Usage: ledger_child.py STATE_DIR REQUEST_ID MARKER_FILE PAUSE_AT
PAUSE_AT is "before_claim", "after_execute" or "never". Progress is reported
one word per line on stdout ("opened", "claim <status>", "executed",
"completed", "paused"); at the pause point the child blocks on stdin, so the
test can SIGKILL it there. Executing means appending one line to MARKER_FILE
(fsynced), standing in for the exchange call the ledger must never repeat.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import structlog

from router.ledger import Ledger


def say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


def pause(here: str, pause_at: str) -> None:
    if here == pause_at:
        say("paused")
        sys.stdin.readline()  # blocks until the test kills us (or closes stdin)


def execute(marker: Path, request_id: str) -> None:
    with marker.open("a") as out:
        out.write(f"executed {request_id} pid={os.getpid()}\n")
        out.flush()
        os.fsync(out.fileno())


def main(argv: list[str]) -> int:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the protocol
    state_dir, request_id, marker, pause_at = Path(argv[0]), argv[1], Path(argv[2]), argv[3]
    with Ledger.open(state_dir) as ledger:
        say("opened")
        pause("before_claim", pause_at)
        claim = ledger.claim(request_id, "crash-test", b'{"v":1}', now_ns=time.time_ns())
        say(f"claim {claim.status}")
        if claim.status != "new":
            return 0
        execute(marker, request_id)
        say("executed")
        pause("after_execute", pause_at)
        ledger.complete(request_id, b'{"v":1,"status":"filled"}', now_ns=time.time_ns())
        say("completed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
