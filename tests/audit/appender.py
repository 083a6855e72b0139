"""A separate process that appends to an audit log and prints each committed index.

Usage: python appender.py STORE STATE_DIR TAG COUNT CONCURRENCY [--wait]
COUNT 0 means forever (the crash test kills it). Each printed line is "index tag-n",
written only after `append` returned, so the parent knows which appends were acknowledged.
With --wait it prints "ready" once the log is open and starts when a line arrives on
stdin, so several appenders can be made to run at the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from bastion.audit import open_log


async def main(
    store: str, state_dir: str, tag: str, count: int, concurrency: int, wait: bool
) -> None:
    log = open_log(store, state_dir=Path(state_dir))
    if wait:
        print("ready", flush=True)
        sys.stdin.readline()
    counter = itertools.count() if count == 0 else iter(range(count))

    async def worker() -> None:
        for n in counter:
            record = {"tenant": tag, "n": n, "decision": "allow", "input_digest": f"{n:064x}"}
            index = await log.append(record)
            sys.stdout.write(f"{index} {tag}-{n}\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await log.aclose()


if __name__ == "__main__":
    store, state_dir, tag, count, concurrency = sys.argv[1:6]
    asyncio.run(main(store, state_dir, tag, int(count), int(concurrency), "--wait" in sys.argv[6:]))
