"""Run the checks against one server and judge each: its findings decide its status, never a guess.

A check whose control fails is a FAILURE whatever its level; an unmet expectation is a FAILURE for a MUST or
product check and a WARNING for a SHOULD (or for an expectation marked as a warning). A check that cannot
run says why (SKIPPED). The server failing at the HTTP level (refused connection, timeout) fails the check;
the sandbox failing (Keycloak, the broker) stops the run with its own error.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import httpx

from sandbox.agent.mcp_http import ProbeError
from sandbox.certify.checks import CHECKS, run_stages
from sandbox.certify.context import Check, Context, ControlFailed, Skipped
from sandbox.certify.model import CheckResult, Finding, Status
from sandbox.certify.revision import Revision, Wire
from sandbox.certify.world import World

log = logging.getLogger("sandbox.certify")


def run_checks(
    world: World,
    checks: list[Check] | None = None,
    *,
    revision: Revision | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Every check of the revision (or those of them given) against ``world.url``; results in the table's order.
    Without ``revision``, the newest one the server accepts."""
    world.wire = Wire(revision or world.newest_revision())
    chosen = [c for c in (checks if checks is not None else CHECKS) if world.wire.revision in c.spec.revisions]
    world.run_started = time.time()
    world.trusted_signer_accepted = None  # a server may be another one than last run's at the same URL
    results: dict[str, CheckResult] = {}

    def done(result: CheckResult) -> None:
        results[result.id] = result
        log.info(
            "check done",
            extra={"check": result.id, "status": result.status, "server": world.url, "seconds": result.duration},
        )
        if progress is not None:
            progress(result)

    first, alongside, in_turn, last = run_stages(chosen)
    with ThreadPoolExecutor(max_workers=max(1, len(alongside)), thread_name_prefix="certify-check") as pool:
        began = time.monotonic()
        preparing = [pool.submit(item.prepare, world) for item in chosen if item.prepare is not None]
        wait(preparing)  # side by side; one that failed (the sandbox) stops the run here, with its own error
        for future in preparing:
            future.result()
        log.info("certify prepared", extra={"server": world.url, "seconds": round(time.monotonic() - began, 3)})
        for item in first:
            done(run_check(world, item))
        waiting: list[Future[CheckResult]] = [pool.submit(run_check, world, item) for item in alongside]
        for item in in_turn:
            done(run_check(world, item))
            waiting = _report_finished(waiting, done)
        for future in waiting:
            done(future.result())
    for item in last:
        done(run_check(world, item))
    return [results[item.spec.id] for item in chosen]


def _report_finished(
    waiting: list[Future[CheckResult]], done: Callable[[CheckResult], None]
) -> list[Future[CheckResult]]:
    finished = [future for future in waiting if future.done()]
    for future in finished:
        done(future.result())
    return [future for future in waiting if future not in finished]


def run_check(world: World, item: Check) -> CheckResult:
    context = Context(world, item.spec)
    began = time.monotonic()
    timestamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status: Status
    try:
        item.run(context)
        status, message = judge(item.spec.level, context.findings)
    except Skipped as skipped:
        status, message = "SKIPPED", str(skipped)
    except ControlFailed as failed:
        context.findings.append(Finding(f"control: {failed.what}", False, failed.observed))
        status, message = "FAILURE", str(failed)
    except (httpx.HTTPError, ProbeError) as exc:
        status, message = "FAILURE", f"the check could not complete: {type(exc).__name__}: {exc}"
    finally:
        context.close()
    return CheckResult(
        item.spec,
        status,
        timestamp,
        world.known.scrub(message),
        context.findings,
        context.evidence,
        round(time.monotonic() - began, 3),
        revision=world.wire.revision,
        remarks=[world.known.scrub(remark) for remark in context.remarks],
        unexamined=[world.known.scrub(part) for part in context.unexamined],
    )


def judge(level: str, findings: list[Finding]) -> tuple[Status, str]:
    unmet = [f for f in findings if not f.met]
    hard = [f for f in unmet if not f.warning]
    if not unmet:
        return "SUCCESS", ""
    message = "; ".join(f"not met: {f.expectation}" + (f" ({f.observed})" if f.observed else "") for f in unmet)
    if hard and level != "SHOULD":
        return "FAILURE", message
    return "WARNING", message
