"""Run by test_fork.py in a fresh interpreter: use an Engine, fork, use it again in the child.

Airflow's workers fork after the parent may have used the engine (and so started the runtime's
threads). The child must be able to run a sync with the very same Engine object.

usage: python _fork_scenario.py PROJECT_YML WAREHOUSE_DB EMULATOR_URL ROWS_TO_CHANGE TIMEOUT

Exit codes: 0 ok, 2 parent's own run failed, 3 child's run wrong, 4 child raised,
5 child hung (killed), 6 parent's engine unusable after the fork, other: child died of a signal.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

import sluicegate

from _support import EmulatorClient, change_rows


def child(engine: sluicegate.Engine, warehouse: str, emulator: EmulatorClient, changed: int) -> int:
    change_rows(warehouse, changed)  # type: ignore[arg-type]
    emulator.reset()
    run = engine.sync(1)
    stats = emulator.stats()
    problems = []
    if run["status"] != "completed":
        problems.append(f"status {run['status']}: {run['error_message']}")
    if run["succeeded"]["changes"] != changed or run["succeeded"]["adds"] != 0:
        problems.append(f"succeeded {run['succeeded']}, expected {changed} changes")
    if stats["records_accepted"] != changed:
        problems.append(
            f"emulator accepted {stats['records_accepted']} records, expected {changed}"
        )
    for problem in problems:
        print(f"child: {problem}", file=sys.stderr)
    return 3 if problems else 0


def main() -> int:
    project, warehouse, url, changed_text, timeout_text = sys.argv[1:6]
    changed, timeout = int(changed_text), float(timeout_text)
    emulator = EmulatorClient(url)

    engine = sluicegate.Engine(project)
    first = engine.sync(1)
    if first["status"] != "completed":
        print(f"parent: first run {first['status']}: {first['error_message']}", file=sys.stderr)
        return 2

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            code = child(engine, warehouse, emulator, changed)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print(f"parent: child hung for {timeout}s and was killed", file=sys.stderr)
            return 5
        time.sleep(0.05)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"parent: child exited with {code}", file=sys.stderr)
        return code if code > 0 else 100 - code

    # The parent keeps working with its engine after the fork, and sees the child's run.
    try:
        latest = engine.list_runs(1, limit=1)[0]
        assert latest["id"] != first["id"] and latest["status"] == "completed", latest
        assert engine.get_run(latest["id"])["succeeded"]["changes"] == changed
    except BaseException:
        traceback.print_exc()
        return 6
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
