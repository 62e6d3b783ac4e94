"""Run by test_async_bridge.py: await the engine's async bridge, then let the interpreter exit.

Every await completes an asyncio future from one of the engine's threads; exiting right after
is the moment a runtime thread could still be inside the interpreter while it finalizes (the
crash this guards against: "Fatal Python error: PyGILState_Release ... finalizing").

usage:
  python _async_exit_scenario.py bridge PROJECT_YML COMPLETED_RUN_ID
      One fresh interpreter, without Airflow: await `get_run_async` on a completed run, then
      trigger a run, cancel it from a thread after the third read, and await `get_run_async`
      every few milliseconds until it is terminal. Exit 0 when all was as expected.
  python _async_exit_scenario.py trigger PROJECT_YML COUNT PARALLEL LOG_DIR
      Import Airflow and the trigger once, then fork COUNT children (PARALLEL at a time), each
      with a runtime of its own: trigger a run, cancel it shortly after, and iterate
      SyncRunTrigger.run() until its event; the child then exits through normal interpreter
      finalization. Prints a JSON summary: children, and the failures with their log tails.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

CANCEL_AFTER = 0.03  # seconds: long enough for several polls before the run turns terminal
POLL = 0.005


def _trigger_and_cancel(engine) -> int:  # type: ignore[no-untyped-def]
    run_id = engine.trigger(1, reason="async exit scenario")
    timer = threading.Timer(CANCEL_AFTER, engine.cancel, [run_id])
    timer.start()
    return run_id


def bridge(project: str, completed_run_id: int) -> int:
    import sluicegate

    engine = sluicegate.Engine(project)

    async def main() -> list[str]:
        problems = []
        done = await engine.get_run_async(completed_run_id)
        if done["status"] != "completed":
            problems.append(f"run {completed_run_id} read as {done['status']}")
        run_id = engine.trigger(1, reason="async exit scenario")
        loop = asyncio.get_running_loop()
        polls, cancel = 0, None
        while True:
            run = await engine.get_run_async(run_id)
            polls += 1
            if run["status"] in ("completed", "failed"):
                break
            if polls == 3:  # cancel from another thread while this loop keeps awaiting
                cancel = loop.run_in_executor(None, engine.cancel, run_id)
            await asyncio.sleep(POLL)
        await cancel
        if not (run["status"] == "failed" and run["canceled"]):
            problems.append(f"run {run_id} ended {run['status']} canceled={run['canceled']}")
        return problems

    problems = asyncio.run(main())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 3 if problems else 0


def trigger_child(project: str) -> int:
    import sluicegate
    from sluicegate.airflow.triggers.sluicegate import SyncRunTrigger

    engine = sluicegate.Engine(project)
    run_id = _trigger_and_cancel(engine)
    trigger = SyncRunTrigger(sync_run_id=run_id, poll_interval=POLL)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    payload = asyncio.run(first_event())
    ok = payload["status"] == "failed" and payload["run"]["canceled"] is True
    if not ok:
        print(f"unexpected event: {payload}", file=sys.stderr)
    return 0 if ok else 3


def trigger(project: str, count: int, parallel: int, log_dir: Path) -> int:
    os.environ["SLUICEGATE_PROJECT"] = project  # the hook's fallback: no Airflow connection
    # Everything imported once, nothing started: each child starts its own engine runtime.
    import sluicegate._core as core
    import sluicegate.airflow.triggers.sluicegate  # noqa: F401  (imports Airflow)

    assert not core.runtime_started()
    # As pre-fork servers do: the imported modules are left out of the children's collections,
    # which keeps each child's exit at a fraction of a second instead of one (Airflow's
    # module graph is large). The exit still runs atexit hooks and finalizes the interpreter.
    import gc

    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    running: dict[int, int] = {}
    statuses: dict[int, int] = {}
    started = 0
    while started < count or running:
        while started < count and len(running) < parallel:
            log = log_dir / f"child-{started}.log"
            pid = os.fork()
            if pid == 0:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = 4
                try:
                    code = trigger_child(project)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                # Leave through SystemExit: the interpreter finalizes as after any script.
                raise SystemExit(code)
            running[pid] = started
            started += 1
        pid, status = os.wait()
        statuses[running.pop(pid)] = os.waitstatus_to_exitcode(status)

    failures = []
    for i, code in sorted(statuses.items()):
        text = (log_dir / f"child-{i}.log").read_text(errors="replace")
        if code != 0 or "PyGILState" in text or "Fatal Python error" in text:
            failures.append({"child": i, "exit": code, "log": text[-1500:]})
    print(json.dumps({"children": len(statuses), "failures": failures}))
    return 0


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "bridge":
        sys.exit(bridge(args[0], int(args[1])))
    if mode == "trigger":
        sys.exit(trigger(args[0], int(args[1]), int(args[2]), Path(args[3])))
    sys.exit(f"unknown mode {mode!r}")
