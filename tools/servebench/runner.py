"""Runs one run of one level, in this process or split over several worker processes, with progress.

With `processes` > 1 the run's concurrency (or request rate) is shared out, every process starts at the same
CLOCK_MONOTONIC instant, each keeps its cool-down going until every process's measured requests are done, and
the parent merges their records: one run, measured by several cores.
"""

import asyncio
import contextlib
import gc
import multiprocessing
import queue
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field, replace

from .client import CANCELLED, Client, RequestFactory, RequestRecord, Target, now
from .load import COOLDOWN, MEASURED, Control, RunPlan, run_plan

START_DELAY_PROCESSES = 1.5  # seconds for worker processes to start before the run's common start
POLL_SECONDS = 0.02
# In every X-Request-Id, so two sweeps against one server never send the same id.
RUN_TOKEN = secrets.token_hex(3)


@dataclass
class Settings:
    """What every request of the sweep shares. `api_key` is never written to a report."""
    url: str
    model: str
    max_tokens: int
    prompt_tokens: int
    timeout: float
    api_key: str = ""
    endpoint: str = "/v1/chat/completions"
    extra_body: dict = field(default_factory=dict)

    def client(self, run_seed: int, run_tag: str) -> Client:
        target = Target.from_url(self.url, self.endpoint)
        factory = RequestFactory(target, self.model, max_tokens=self.max_tokens, prompt_tokens=self.prompt_tokens,
                                 api_key=self.api_key, extra_body=self.extra_body)
        return Client(target, factory, timeout=self.timeout, run_seed=run_seed, run_tag=run_tag)


def event_loop_factory():
    """uvloop's loop when it is installed, else asyncio's; returns (factory, name)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


class Progress:
    """Counts what a run has done so far, for the progress line and its ETA."""

    FIELDS = ("started", "measured_done", "errors", "token_chunks", "finished")

    def __init__(self) -> None:
        self.started = self.measured_done = self.errors = self.token_chunks = self.finished = 0

    def update_from(self, records: list[RequestRecord]) -> None:
        measured = [record for record in records if record.phase == MEASURED]
        self.started = len(records)
        self.measured_done = sum(1 for record in measured if record.end)
        self.errors = sum(1 for record in measured if record.error_kind and record.error_kind != CANCELLED)
        self.token_chunks = sum(len(record.token_times) for record in records)
        # Warm-up and measured requests that ended: how far through its planned requests a closed-loop run is.
        self.finished = sum(1 for record in records if record.end and record.phase != COOLDOWN)


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def split_plan(plan: RunPlan, processes: int) -> list[RunPlan]:
    """This run's share for each worker process; request indices interleave so they stay unique."""
    if processes <= 1:
        return [plan]
    if plan.mode == "concurrency":
        processes = min(processes, plan.concurrency)
        workers = _shares(plan.concurrency, processes)
        warmups = _shares(plan.warmup_requests, processes)
        measured = _shares(plan.measured_requests, processes)
        # Each share starts its workers at rate / processes, offset so that together they start at `rate`.
        spawn = plan.spawn_rate / processes
        return [replace(plan, concurrency=workers[index], warmup_requests=warmups[index],
                        measured_requests=measured[index], index_offset=index, index_stride=processes,
                        spawn_rate=spawn, start_at=plan.start_at + (index / plan.spawn_rate if spawn else 0.0))
                for index in range(processes)]
    return [replace(plan, rate=plan.rate / processes, seed=plan.seed * 1009 + index, index_offset=index,
                    index_stride=processes)
            for index in range(processes)]


@contextlib.contextmanager
def collector_paused():
    """No cyclic garbage collection while requests are in flight: a collection walks every live record and
    stalls the event loop for milliseconds, which would show as the server's latency. A run's requests make
    next to no reference cycles; what they do make is collected when the run ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


async def _run_local(plan: RunPlan, settings: Settings, control: Control, on_tick
                     ) -> tuple[list[RequestRecord], bool]:
    records: list[RequestRecord] = []
    client = settings.client(plan.seed, f"sb{RUN_TOKEN}-{plan.seed}")
    with collector_paused():
        task = asyncio.ensure_future(run_plan(plan, client, control, records))
        progress = Progress()
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            progress.update_from(records)
            on_tick(progress)
    return records, task.result()


# ------------------------------------------------------------------------------------------ worker processes
_STATE_FIELDS = tuple(name for name in RequestRecord.__slots__ if name != "_done")


def _record_state(record: RequestRecord) -> tuple:
    return tuple(getattr(record, name) for name in _STATE_FIELDS)


def _record_from_state(state: tuple) -> RequestRecord:
    record = RequestRecord(0, "", 0.0)
    for name, value in zip(_STATE_FIELDS, state):
        setattr(record, name, value)
    return record


class _SharedControl(Control):
    """A worker process's view: stop when the parent says so (or on its own SIGINT or SIGTERM, which a terminal
    or systemd sends to every process of servebench), and keep the cool-down going until the shared count of
    processes with measured requests pending reaches zero."""

    def __init__(self, stop, pending) -> None:
        super().__init__()
        self.shared_stop, self.pending = stop, pending

    async def wait_measured(self, local_done: asyncio.Event) -> None:
        counted = False
        while not self.stopping:
            if self.shared_stop.is_set():
                self.stop_event.set()
                break
            if local_done.is_set() and not counted:
                with self.pending.get_lock():
                    self.pending.value -= 1
                counted = True
            if counted and self.pending.value <= 0:
                break
            await asyncio.sleep(POLL_SECONDS)


def _worker_main(plan: RunPlan, settings: Settings, stop, pending, counters, results, slot: int) -> None:
    factory, _ = event_loop_factory()

    async def main() -> tuple[list[RequestRecord], bool]:
        control = _SharedControl(stop, pending)
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(stop_signal, control.stop_event.set)
        records: list[RequestRecord] = []
        client = settings.client(plan.seed, f"sb{RUN_TOKEN}-{plan.seed}p{slot}")
        task = asyncio.ensure_future(run_plan(plan, client, control, records))
        progress = Progress()
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            progress.update_from(records)
            width = len(Progress.FIELDS)
            counters[slot * width:(slot + 1) * width] = [getattr(progress, name) for name in Progress.FIELDS]
        return records, task.result()

    with asyncio.Runner(loop_factory=factory) as runner, collector_paused():
        records, complete = runner.run(main())
    results.put((slot, complete, [_record_state(record) for record in records]))


async def _run_processes(plans: list[RunPlan], settings: Settings, control: Control, on_tick,
                         deadline: float) -> tuple[list[RequestRecord], bool]:
    context = multiprocessing.get_context("spawn")
    stop, pending = context.Event(), context.Value("i", len(plans))
    width = len(Progress.FIELDS)
    counters = context.Array("d", width * len(plans), lock=False)
    results = context.Queue()
    workers = [context.Process(target=_worker_main, args=(plan, settings, stop, pending, counters, results, slot),
                               daemon=True)
               for slot, plan in enumerate(plans)]
    for worker in workers:
        worker.start()
    collected: dict[int, tuple[bool, list]] = {}
    progress = Progress()
    loop = asyncio.get_running_loop()
    try:
        while len(collected) < len(plans):
            if control.stopping:
                stop.set()
            try:
                slot, complete, states = await loop.run_in_executor(None, results.get, True, 1.0)
                collected[slot] = complete, states
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers) and results.empty():
                    break
                if time.monotonic() > deadline:
                    stop.set()
            for column, name in enumerate(Progress.FIELDS):
                setattr(progress, name, int(sum(counters[slot * width + column] for slot in range(len(plans)))))
            on_tick(progress)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    missing = [slot for slot in range(len(plans)) if slot not in collected]
    if missing:
        print(f"servebench: worker process(es) {missing} returned nothing; their share of the run is missing",
              file=sys.stderr)
    records = [_record_from_state(state) for slot in sorted(collected) for state in collected[slot][1]]
    return records, not missing and all(complete for complete, _ in collected.values())


async def execute_run(plan: RunPlan, settings: Settings, control: Control, processes: int, on_tick,
                      deadline_seconds: float) -> tuple[list[RequestRecord], bool]:
    """Run `plan`; return every request record (warm-up and cool-down included) and whether the run's measured
    requests all finished."""
    if processes <= 1:
        plan = replace(plan, start_at=now())
        return await _run_local(plan, settings, control, on_tick)
    plan = replace(plan, start_at=now() + START_DELAY_PROCESSES)
    return await _run_processes(split_plan(plan, processes), settings, control, on_tick,
                                time.monotonic() + deadline_seconds)
