"""Load shapes: closed loop at a fixed concurrency, open loop at a Poisson request rate.

Both have three phases: warm-up requests (excluded from every figure), measured requests, and cool-down
requests that keep the load steady until the last measured request has finished; cool-down requests still in
flight then are cancelled. So every measured request runs under the full load of its level, and the first and
last measured requests see the same load as the middle ones (no ramp or drain inside the figures).

Closed loop: `concurrency` workers each send a request, wait for its end and send the next at once; all start
together (as `vllm bench serve --max-concurrency` does) unless `spawn_rate` starts them one after another
(locust's `--spawn-rate`); requests sent before the last worker started are warm-up too.
Open loop: arrivals follow a Poisson process (exponential gaps, seeded); a request is due at its scheduled
time whether or not earlier ones finished, and its latencies count from that time, so a client that falls
behind cannot hide it (coordinated omission); `sent - scheduled` is recorded as the send lag.
"""

import asyncio
import itertools
import random
from dataclasses import dataclass

from .client import Client, RequestRecord, now

WARMUP, MEASURED, COOLDOWN = "warmup", "measured", "cooldown"


@dataclass
class RunPlan:
    """One run of one level, or this process's share of it."""
    mode: str                   # "concurrency" or "rate"
    level: float                # the level's concurrency or request rate (the whole run's, not the share's)
    run: int
    seed: int                   # varies the prompts between runs
    start_at: float             # perf_counter time to start (shared by every worker process)
    concurrency: int = 0        # closed loop: this share's workers
    warmup_requests: int = 0    # closed loop
    measured_requests: int = 0  # closed loop
    rate: float = 0.0           # open loop: this share's requests/s
    warmup_seconds: float = 0.0  # open loop
    duration: float = 0.0       # open loop: seconds of measured arrivals
    spawn_rate: float = 0.0     # closed loop: workers started per second (0: all at once)
    index_offset: int = 0       # this share's request indices are offset + k * index_stride
    index_stride: int = 1


class Control:
    """What a load shape asks of whoever runs it: whether to stop (Ctrl-C, SIGTERM), and when every share's measured
    requests are done. In one process, the share is the whole run."""

    def __init__(self) -> None:
        self.stop_event = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def wait_measured(self, local_done: asyncio.Event) -> None:
        await _first_of(local_done.wait(), self.stop_event.wait())


async def _first_of(*awaitables) -> None:
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _sleep_until(when: float) -> None:
    delay = when - now()
    if delay > 0:
        await asyncio.sleep(delay)


async def closed_loop(plan: RunPlan, client: Client, control: Control, records: list[RequestRecord]) -> bool:
    spacing = 1 / plan.spawn_rate if plan.spawn_rate else 0.0
    last_start = plan.start_at + spacing * (plan.concurrency - 1)
    counts = {"sent": 0, "measured": 0, "pending": plan.measured_requests}
    finished = [False]
    measured_done = asyncio.Event()
    if plan.measured_requests == 0:
        measured_done.set()

    def next_phase() -> str:
        if counts["sent"] < plan.warmup_requests or now() < last_start:
            return WARMUP
        if counts["measured"] < plan.measured_requests:
            counts["measured"] += 1
            return MEASURED
        return COOLDOWN

    async def worker(position: int) -> None:
        await _sleep_until(plan.start_at + spacing * position)
        connection = None
        while not control.stopping and not finished[0]:
            phase = next_phase()
            record = RequestRecord(plan.index_offset + counts["sent"] * plan.index_stride, phase, now(),
                                   worker=plan.index_offset + position * plan.index_stride)
            counts["sent"] += 1
            records.append(record)
            connection = await client.send(record, connection)
            if phase == MEASURED:
                counts["pending"] -= 1
                if counts["pending"] == 0:
                    measured_done.set()
            if connection is None and record.error_kind:
                await asyncio.sleep(0.001)  # a refusing server must not turn the loop into a busy spin

    workers = [asyncio.ensure_future(worker(position)) for position in range(plan.concurrency)]
    try:
        await control.wait_measured(measured_done)
    finally:
        finished[0] = True
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        client.close_all()
    return measured_done.is_set()


async def open_loop(plan: RunPlan, client: Client, control: Control, records: list[RequestRecord]) -> bool:
    rng = random.Random(plan.seed)
    measured_start = plan.start_at + plan.warmup_seconds
    measured_end = measured_start + plan.duration
    pending_measured = [0]
    measured_done = asyncio.Event()
    in_flight: set[asyncio.Task] = set()

    async def one(record: RequestRecord) -> None:
        connection = client.idle.pop() if client.idle else None
        connection = await client.send(record, connection)
        if connection is not None:
            client.idle.append(connection)
        if record.phase == MEASURED:
            pending_measured[0] -= 1
            if pending_measured[0] == 0 and now() >= measured_end:
                measured_done.set()

    async def arrivals() -> None:
        scheduled = plan.start_at
        for number in itertools.count():
            scheduled += rng.expovariate(plan.rate)
            if scheduled >= measured_end and pending_measured[0] == 0:
                measured_done.set()
                return
            phase = WARMUP if scheduled < measured_start else MEASURED if scheduled < measured_end else COOLDOWN
            await _sleep_until(scheduled)
            if control.stopping:
                return
            record = RequestRecord(plan.index_offset + number * plan.index_stride, phase, scheduled)
            records.append(record)
            if phase == MEASURED:
                pending_measured[0] += 1
            task = asyncio.ensure_future(one(record))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    sender = asyncio.ensure_future(arrivals())
    try:
        await control.wait_measured(measured_done)
    finally:
        sender.cancel()
        for task in list(in_flight):
            task.cancel()
        await asyncio.gather(sender, *in_flight, return_exceptions=True)
        client.close_all()
    return measured_done.is_set()


async def run_plan(plan: RunPlan, client: Client, control: Control, records: list[RequestRecord]) -> bool:
    """Run one plan; `records` fills as requests start, so a caller sees progress and keeps partial results.
    True when every measured request of the plan finished, False when a stop came first (in the warm-up, say)."""
    shape = closed_loop if plan.mode == "concurrency" else open_loop
    return await shape(plan, client, control, records)
