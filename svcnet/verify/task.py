"""The playbook's `verify` task: run the check suite for one host and turn it into an Outcome."""

from __future__ import annotations

import contextlib
import io
import threading

from svcnet.playbook import recap
from svcnet.playbook.runner import Outcome, TaskContext
from svcnet.verify.context import OUTSIDE_AUTO, OUTSIDE_MODES, VerifyContext
from svcnet.verify.suite import Recorder, pytest_args, run_suite

# pytest is not thread-safe (it swaps sys.stdout and fds): the runner's hosts verify one at a time.
_PYTEST_LOCK = threading.Lock()
MAX_REPORTED = 5


def verify(ctx: TaskContext) -> Outcome:
    """Run every check that concerns the host; OK, or FAILED naming the failing checks."""
    if ctx.options.check:  # the node may not be in the desired state: --check changed nothing
        return Outcome(recap.SKIPPED, "verify is skipped in check mode")
    outside = str((ctx.task.options or {}).get("outside", OUTSIDE_AUTO))
    if outside not in OUTSIDE_MODES:
        return Outcome(recap.FAILED, f"verify: outside must be one of {', '.join(OUTSIDE_MODES)}, not {outside!r}")
    gateways = {ctx.host: ctx.gateway}  # the runner's, closed by the runner: the checks reach this host only
    try:
        vctx = VerifyContext(ctx.cluster, ctx.inventory, gateways.__getitem__, [ctx.host], outside, ctx.run_id)
    except ValueError as exc:
        return Outcome(recap.FAILED, str(exc))
    recorder = Recorder()
    out = io.StringIO()
    with _PYTEST_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = run_suite(vctx, pytest_args(verbose=False), [recorder])
    if code == 0:
        return Outcome(recap.OK, f"{len(recorder.passed)} checks passed, {len(recorder.skipped)} skipped")
    if code == 1 and recorder.failed:
        shown = [msg.splitlines()[0] if msg else name for name, msg in recorder.failed[:MAX_REPORTED]]
        more = len(recorder.failed) - len(shown)
        msg = (f"{len(recorder.failed)} check(s) failed: {', '.join(n for n, _ in recorder.failed)}\n"
               + "\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))
        return Outcome(recap.FAILED, msg)
    tail = " / ".join(out.getvalue().strip().splitlines()[-3:])
    return Outcome(recap.FAILED, f"verify could not run (pytest exit code {code}): {tail}")
