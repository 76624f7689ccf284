"""Stage 2: per-endpoint lanes that send signed webhooks within each endpoint's limits.

A lane holds its endpoint's queued deliveries and runs at most `max_in_flight` runner tasks
(one for `ordering = "endpoint"`). Runners are started when work arrives and end when the
lane is empty: a task per burst, not per delivery. With `ordering = "key"` the queue is split
by producer key and a key is served by one runner at a time, so each key keeps its order
while different keys overlap. A slow endpoint occupies only its own runners.

After each attempt `lifecycle.next_step` decides; the lane carries it out: an outcome
record, a dead letter, or the next attempt. An endpoint with `ordering = "none"` hands a
failed delivery to the retry tier of its attempt (`<prefix>.retry.<n>`, with the attempt
count, due time and first-attempt time in its headers) and its runner moves on; the worker
feeds it back when it is due, and due retries run in their own share of `max_in_flight`
(`retry_share`), so retries never starve first attempts, nor the reverse. The ordered modes
retry in place with backoff: the lane's head (or the key's) waits, which they require.
A delivery's offset finishes when it was delivered, or its retry record or dead letter was
acknowledged. While its partition is being revoked nothing new starts: waits are cancelled
by the partition (`PartitionState.revoke`) and a failed attempt is left to the next owner.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from dispatcher.adaptive import AdaptiveLimit, signal_of
from dispatcher.backoff import DEFAULT_JITTER, waiting_tier
from dispatcher.breaker import Breaker, BreakerState, Transition
from dispatcher.codec import DeadLetterRecord, OutcomeKind, OutcomeRecord, encode_outcome
from dispatcher.endpoints.record import EndpointRecord, EndpointState, active_secrets
from dispatcher.lifecycle import (
    Delivered,
    Disable,
    RetryLater,
    RetryPolicy,
    describe,
    next_step,
    verdict_of,
)
from dispatcher.limits import limiter_for
from dispatcher.model import (
    Concurrency,
    DeliverySettings,
    Endpoint,
    HttpResult,
    KafkaSettings,
    Ordering,
)
from dispatcher.outcomes import ERROR_BODY_TOO_LARGE, OutcomeClass
from dispatcher.pipeline.dead_letters import DeadLetterWriter
from dispatcher.pipeline.hosts import HostSlots
from dispatcher.pipeline.partitions import PartitionState
from dispatcher.pipeline.ports import RecordProducer, Sender
from dispatcher.pipeline.supervisor import Supervisor
from dispatcher.records import DeliveryMeta, identity_headers, retry_headers, trace_headers
from dispatcher.retry_budget import RetryPacer, retry_budget_for
from dispatcher.signing import Signer
from dispatcher.stats import WorkerStats
from dispatcher.tls import context_for

log = logging.getLogger(__name__)


class Delivery:
    """One delivery record being worked on."""

    __slots__ = ("body", "meta", "offset", "part", "queued_at")

    def __init__(self, part: PartitionState, offset: int, body: bytes, meta: DeliveryMeta):
        self.part = part
        self.offset = offset
        self.body = body
        self.meta = meta
        self.queued_at = 0.0  # the lane's clock when it was queued


class LaneContext:
    """What every lane shares: sender, producer, dead-letter writer, settings, counters."""

    def __init__(
        self,
        sender: Sender,
        producer: RecordProducer,
        dead_letters: DeadLetterWriter,
        kafka: KafkaSettings,
        delivery: DeliverySettings,
        stats: WorkerStats,
        supervisor: Supervisor,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sender = sender
        self.producer = producer
        self.dead_letters = dead_letters
        self.kafka = kafka
        self.delivery = delivery
        self.stats = stats
        self.supervisor = supervisor
        self.clock = clock
        self.wall = wall  # due and first-attempt times cross processes: wall clock
        self.rng = rng or random.Random()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        # Asked to disable an endpoint (410 Gone, or failing for disable_after_s): the worker
        # writes the state to the endpoints topic; without one it is only logged.
        self.disable_endpoint: Callable[[str, str], None] = _log_disable
        # Deliveries one deliveries partition may hold in memory (the worker keeps it
        # current as partitions come and go): each lane's overflow point follows from it.
        self.partition_share = delivery.max_buffered

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a lane's runner; an error it raises stops the worker (as `Supervisor.watch`).
        One done-callback, no closure: a runner starts for about every delivery."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._runner_ended)

    def _runner_ended(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.supervisor.fail(task.get_name(), error)

    def outcome_acked(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.producer.failed(error, self.kafka.outcomes_topic)


class Lane:
    """The deliveries of one endpoint on this worker."""

    def __init__(
        self,
        endpoint: Endpoint,
        ctx: LaneContext,
        host_slots: HostSlots,
        state: EndpointState = EndpointState.ENABLED,
    ) -> None:
        self._ctx = ctx
        self._host_slots = host_slots  # shared by every lane of the endpoint's host
        self.state = state
        self.state_reason: str | None = None
        self.deleted = False  # the endpoint's record was deleted from the catalog
        self._state_changed = asyncio.Event()  # set (and replaced) on every state change
        self._pending: Endpoint | None = None  # a new ordering, applied once the lane is idle
        self._failing_since: float | None = None  # wall time of the first failure in a row
        self._disable_asked = False
        self.idle_since = ctx.clock()
        # The assignment the endpoint's deliveries last came from: a new one drains the bucket.
        self._owned_from: PartitionState | None = None
        delivery = ctx.delivery
        self._configure(endpoint)
        self._budget = retry_budget_for(
            delivery.retry_budget,
            ctx.clock,
            delivery.retry_budget_window_s,
            delivery.min_retries_per_s,
        )
        self._pacer = RetryPacer()
        self._breaker = (
            Breaker(
                delivery.breaker_failures,
                delivery.breaker_cooldown_s,
                ctx.clock,
                self._breaker_changed,
            )
            if delivery.breaker_failures
            else None
        )
        self._queue: deque[Delivery] = deque()  # modes none and endpoint
        self._retries: deque[Delivery] = deque()  # mode none: due retries from the tiers
        self._active_retries = 0
        self._active_first = 0
        self._retry_turn = False  # with one runner for both, they take turns
        self._keyed: dict[bytes | None, deque[Delivery]] = {}  # mode key: per-key FIFO
        self._ready_keys: deque[bytes | None] = deque()  # keys with work and no runner
        self._runners = 0

    def _configure(self, endpoint: Endpoint) -> None:
        """Everything the lane derives from its endpoint's settings (again on a change)."""
        ctx = self._ctx
        delivery = ctx.delivery
        before: Endpoint | None = getattr(self, "endpoint", None)
        self.endpoint = endpoint
        self._set_signer(ctx.wall())
        self._tls = context_for(endpoint)  # built once per endpoint, never per request
        # A bucket or an adaptive limit starts over only when its own settings change: a new
        # description must not hand out a fresh burst.
        limits = (endpoint.rate_limit_per_s, endpoint.burst)
        if before is None or (before.rate_limit_per_s, before.burst) != limits:
            self._limiter = limiter_for(endpoint.rate_limit_per_s, ctx.clock, endpoint.burst)
        self._key_id = endpoint.id.encode()
        self._name = f"lane {endpoint.id}"
        self._by_key = endpoint.ordering is Ordering.KEY
        self._in_place = endpoint.ordering is not Ordering.NONE  # ordered: retry in place
        self._max_runners = 1 if endpoint.ordering is Ordering.ENDPOINT else endpoint.max_in_flight
        shape = (endpoint.concurrency, endpoint.ordering, endpoint.max_in_flight)
        if before is None or (before.concurrency, before.ordering, before.max_in_flight) != shape:
            self._adaptive = (
                AdaptiveLimit(self._max_runners, ctx.clock)
                if endpoint.concurrency is Concurrency.ADAPTIVE
                else None
            )
        statuses = endpoint.permanent_statuses
        self._policy = RetryPolicy(
            delivery.max_attempts,
            delivery.retry_delays_s,
            max_age_s=delivery.max_age_s,
            permanent_statuses=frozenset(
                delivery.permanent_statuses if statuses is None else statuses
            ),
        )
        mif = endpoint.max_in_flight
        self._retry_limit = max(1, int(mif * delivery.retry_share))
        self._first_limit = max(1, mif - self._retry_limit)

    def _set_signer(self, now: float) -> None:
        keys, self._signer_until = active_secrets(self.endpoint, now)
        self._signer = Signer(keys)

    def update(self, record: EndpointRecord | None) -> None:
        """The catalog changed the endpoint (None: deleted). Settings apply at once, except
        a new ordering, which waits until the lane holds no work."""
        if record is None:
            self.deleted = True
        else:
            if record.state is not self.state:
                log.info("endpoint %s: %s -> %s", record.id, self.state.value, record.state.value)
            self.state = record.state
            self.state_reason = record.state_reason
            if record.state is EndpointState.ENABLED:
                self._disable_asked = False
            if record.endpoint != self.endpoint:
                if record.endpoint.ordering is self.endpoint.ordering or self.idle:
                    self._configure(record.endpoint)
                    self._pending = None
                else:
                    self._pending = record.endpoint
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()  # paused runners look again
        self._start_runner()  # a raised max_in_flight may start runners now

    @property
    def idle(self) -> bool:
        return not (self._runners or self._queue or self._retries or self._keyed)

    def _went_idle(self) -> None:
        if self._runners == 0 and self.idle:
            self.idle_since = self._ctx.clock()
            if self._pending is not None:
                self._configure(self._pending)
                self._pending = None

    def submit(self, delivery: Delivery) -> None:
        owned_from = self._owned_from
        if delivery.part is not owned_from and (owned_from is None or not owned_from.active):
            # The endpoint came to this worker (again): what its previous owner sent in the
            # last second is unknown, so nothing saved up may add to it (limits.py).
            self._owned_from = delivery.part
            self._limiter.drain()
        if self._by_key:
            key = delivery.meta.producer_key
            queue = self._keyed.get(key)
            if queue is None:
                queue = self._keyed[key] = deque()
                self._ready_keys.append(key)
            queue.append(delivery)
        elif not self._in_place and self._overflows(delivery):
            return  # waits in a retry tier instead of this lane's memory
        elif delivery.meta.attempts_made and not self._in_place:
            self._retries.append(delivery)
        else:
            self._queue.append(delivery)
        self._start_runner()

    def _overflows(self, delivery: Delivery) -> bool:
        """An unordered lane that does not drain sends new deliveries to the first retry
        tier at once, unattempted: when its partition holds half its share of
        `max_buffered`, the lane a quarter of that share (or 16 x max_in_flight, if more),
        and its oldest queued delivery has waited OVERFLOW_AFTER_S (or its rate limit needs
        that long for what it holds). An endpoint slower than
        its events arrive (stalled, rate-limited, throttled) would otherwise fill the share,
        and the partition's pause would stop every endpoint on it; a fast endpoint with a
        backlog drains before its head gets that old. (With a share too small for that, the
        partition pauses first, as before.)"""
        ctx = self._ctx
        part = delivery.part
        share = ctx.partition_share
        queue, retries = self._queue, self._retries
        now = ctx.clock()
        delivery.queued_at = now
        cap = max(OVERFLOW_FACTOR * self.endpoint.max_in_flight, share // 4)
        if len(queue) + len(retries) < cap or part.buffered < share // 2:
            return False
        if not ctx.delivery.retry_delays_s:
            return False
        # Slow: its rate limit alone needs OVERFLOW_AFTER_S for what it holds, or its oldest
        # delivery has waited that long. Else the lane drains: a backlog, not a slow endpoint.
        rate = self.endpoint.rate_limit_per_s
        held = len(queue) + len(retries)
        oldest = min(q[0].queued_at for q in (queue, retries) if q)
        if now - oldest < OVERFLOW_AFTER_S and not (rate and held / rate >= OVERFLOW_AFTER_S):
            return False
        part.started()
        first_at = delivery.meta.first_attempt_ms / 1000 or ctx.wall()
        try:
            self._defer(delivery, delivery.meta.attempts_made, 0.0, first_at)
        except BaseException:
            part.abandoned()  # not queued: the caller dead-letters it or the worker stops
            raise
        ctx.stats.overflow_deferred += 1
        _unbuffer(delivery, ctx.stats)
        return True

    def _start_runner(self) -> None:
        # In key mode a runner is only useful for a key that no runner holds yet.
        if self._ctx.stopping.is_set():
            return
        if self._runners < self._runner_limit() and (
            self._ready_keys if self._by_key else self._can_take()
        ):
            self._runners += 1
            self._ctx.spawn(self._run_keyed() if self._by_key else self._run(), self._name)

    def _runner_limit(self) -> int:
        """Runners allowed now: max_in_flight (1 for ordering "endpoint"), or fewer while an
        adaptive endpoint's limit is lower."""
        adaptive = self._adaptive
        return self._max_runners if adaptive is None else adaptive.limit

    def _too_many_runners(self) -> bool:
        """An adaptive limit fell: this runner ends after its delivery (checked between them)."""
        adaptive = self._adaptive
        return adaptive is not None and self._runners > adaptive.limit

    def _can_take(self) -> bool:
        return self._choice() != (False, False)

    def _choice(self) -> tuple[bool, bool]:
        """(a first attempt may start, a retry may start). Retries never use more than
        their share; first attempts use the rest, and the retries' share too while no
        retry waits for it. Both never exceed max_in_flight together (the runners)."""
        retries_wait = bool(self._retries)
        retry = retries_wait and self._active_retries < self._retry_limit
        first = bool(self._queue) and (self._active_first < self._first_limit or not retries_wait)
        return first, retry

    def _take(self) -> Delivery | None:
        """The next delivery within its share: first attempts and retries take turns."""
        first, retry = self._choice()
        if retry and (not first or self._retry_turn):
            self._retry_turn = False
            self._active_retries += 1
            return self._retries.popleft()
        if first:
            self._retry_turn = True
            self._active_first += 1
            return self._queue.popleft()
        return None

    async def _run(self) -> None:
        try:
            while not self._ctx.stopping.is_set() and not self._too_many_runners():
                delivery = self._take()
                if delivery is None:
                    return
                try:
                    await self._work_on(delivery)
                finally:
                    if delivery.meta.attempts_made and not self._in_place:
                        self._active_retries -= 1
                    else:
                        self._active_first -= 1
                if self._adaptive is not None:
                    self._start_runner()  # the limit may have grown
        finally:
            self._runners -= 1
            self._start_runner()  # work this runner's share could not take
            self._went_idle()

    async def _run_keyed(self) -> None:
        ready, keyed = self._ready_keys, self._keyed
        try:
            while ready and not self._ctx.stopping.is_set() and not self._too_many_runners():
                key = ready.popleft()
                queue = keyed[key]
                try:
                    await self._work_on(queue.popleft())
                finally:
                    # Also when cancelled: the key's later deliveries are not orphaned.
                    if queue:
                        ready.append(key)  # its next delivery waits for no other runner
                    elif keyed.get(key) is queue:
                        del keyed[key]
                if self._adaptive is not None:
                    self._start_runner()  # the limit may have grown
        finally:
            self._runners -= 1
            self._went_idle()

    def drop(self, part: PartitionState) -> int:
        """Forget queued deliveries of `part` (revoked): the next owner delivers them."""
        dropped = 0
        for queue in (self._queue, self._retries, *self._keyed.values()):
            kept = [d for d in queue if d.part is not part]
            dropped += len(queue) - len(kept)
            if len(kept) < len(queue):
                queue.clear()
                queue.extend(kept)
        if self._by_key:
            for key in [k for k, q in self._keyed.items() if not q]:
                del self._keyed[key]
            # In place: a running keyed runner holds this deque (a new one left it stale keys).
            ready = [k for k in self._ready_keys if k in self._keyed]
            self._ready_keys.clear()
            self._ready_keys.extend(ready)
        stats = self._ctx.stats
        stats.buffered -= dropped
        stats.abandoned += dropped
        part.buffered -= dropped
        return dropped

    async def _work_on(self, delivery: Delivery) -> None:
        part = delivery.part
        stats = self._ctx.stats
        if not part.active:  # revoked while queued: the next owner delivers it
            _unbuffer(delivery, stats)
            stats.abandoned += 1
            return
        task = asyncio.current_task()
        assert task is not None
        part.started()
        part.working[task] = False
        try:
            await self._attempt_all(delivery, task)
        except BaseException:
            # Cancelled by the revocation, or a dead letter that could not be queued (the
            # worker stops): not finished, so the next owner or a restart does it again.
            part.abandoned()
            stats.abandoned += 1
            raise
        finally:
            del part.working[task]
            _unbuffer(delivery, stats)

    async def _attempt_all(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        """Attempt until delivered, dead-lettered or left to the next owner; on return the
        delivery's offset was finished, handed to the dead-letter writer, or abandoned."""
        ctx = self._ctx
        part = delivery.part
        meta = delivery.meta
        attempt = meta.attempts_made
        if len(delivery.body) > ctx.delivery.max_body_bytes:
            reason = f"permanent failure: body of {len(delivery.body):,} bytes is too large"
            self._dead_letter(delivery, attempt, _TOO_LARGE, reason)
            return
        first_at = meta.first_attempt_ms / 1000 if meta.first_attempt_ms else ctx.wall()
        while True:
            if not await self._admit(delivery, attempt, first_at):
                return  # the breaker is open: it waits in its retry tier, no attempt used
            attempt += 1
            result = await self._send(delivery, part, task)
            self._judged(result)
            now = ctx.wall()
            ctx.stats.record_attempt(
                self.endpoint.id, result, verdict_of(result, self._policy), meta.event_time_ms, now
            )
            step = next_step(result, attempt, self._policy, now, ctx.rng.random(), first_at)
            if isinstance(step, Delivered):
                ctx.stats.delivered += 1
                self._failing_since = None
                self._publish_outcome(delivery, "delivered", attempt, result)
                part.finished(delivery.offset)
                return
            ctx.stats.attempts_failed += 1
            self._failed_at(now, step)
            if not isinstance(step, RetryLater):
                self._dead_letter(delivery, attempt, result, step.reason, first_at, now)
                return
            self._publish_outcome(delivery, "retry", attempt, result)
            if not self._in_place:
                self._to_retry_tier(delivery, attempt, step, result, first_at)
                return
            if not part.active:  # being revoked: the next owner makes the next attempt
                part.abandoned()
                ctx.stats.abandoned += 1
                return
            await asyncio.sleep(step.delay_s)  # cancelled if the partition is revoked

    def _failed_at(self, now: float, step: object) -> None:
        """Ask for the endpoint to be disabled on 410 Gone, or once it has failed every
        attempt for `disable_after_s`."""
        if isinstance(step, Disable):
            self._ask_disable(step.reason)
            return
        if self._failing_since is None:
            self._failing_since = now
            return
        limit = self._ctx.delivery.disable_after_s
        if limit and now - self._failing_since >= limit:
            self._ask_disable(f"failed every attempt for {now - self._failing_since:.0f} s")

    def _ask_disable(self, reason: str) -> None:
        if not self._disable_asked:
            self._disable_asked = True
            self._ctx.disable_endpoint(self.endpoint.id, reason)

    async def _admit(self, delivery: Delivery, attempts_made: int, first_at: float) -> bool:
        """Whether this attempt may go now: the endpoint is enabled, the breaker lets it
        through and a retry fits the budget. An ordering-none delivery that may not go is
        deferred to a retry tier without using an attempt (False); an ordered one waits
        here, in its lane, which its order requires. A disabled or deleted endpoint's
        delivery is dead-lettered (False). Waits here are cancelled by a revocation."""
        deferrable = not self._in_place and bool(self._ctx.delivery.retry_delays_s)
        while self.state is not EndpointState.ENABLED or self.deleted:
            if self.deleted or self.state is EndpointState.DISABLED:
                reason = "endpoint deleted" if self.deleted else "endpoint disabled"
                if not self.deleted and self.state_reason:
                    reason += f": {self.state_reason}"
                self._dead_letter(delivery, attempts_made, _NOT_SENT, reason, first_at)
                return False
            # Paused: nothing is sent. Unordered deliveries wait in a retry tier, so the
            # partition's other endpoints go on; ordered ones wait here, in order.
            if deferrable:
                self._ctx.stats.paused_deferred += 1
                self._defer(delivery, attempts_made, PAUSED_RECHECK_S, first_at)
                return False
            await self._state_changed.wait()
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            if deferrable:
                self._ctx.stats.breaker_deferred += 1
                self._defer(delivery, attempts_made, breaker.retry_in_s(), first_at)
                return False
            while not breaker.allow():
                await asyncio.sleep(max(breaker.retry_in_s(), 0.01))
        if attempts_made:  # a retry: within the endpoint's retry budget
            budget = self._budget
            if deferrable and not budget.try_spend():
                # Over budget, a due retry goes back to wait in Kafka, not in this lane:
                # in memory it would hold a retry runner and its tier offset unfinished,
                # and a backlog of them would fill the partition's buffer share. Spread at
                # the budget's pace, each comes back about when the budget has room.
                delivery_settings = self._ctx.delivery
                wait = min(budget.wait_s(), delivery_settings.retry_budget_window_s)
                longest = delivery_settings.retry_delays_s[-1] * (1.0 - DEFAULT_JITTER)
                now = self._ctx.wall()
                delay = self._pacer.delay_s(now, wait, budget.retries_per_s(), longest)
                self._ctx.stats.budget_deferred += 1
                self._defer(delivery, attempts_made, delay, first_at)
                return False
            while not deferrable and not budget.try_spend():
                await asyncio.sleep(min(1.0, max(budget.wait_s(), 0.01)))
        return True

    def _defer(
        self, delivery: Delivery, attempts_made: int, wait_s: float, first_at: float
    ) -> None:
        """Back to a retry tier, due in about `wait_s`, its attempt count unchanged; the
        offset it came from finishes when that record is durable. The tier is the first
        whose delays cover the wait (`backoff.waiting_tier`), so it holds up no record
        behind it; a longer wait comes back early and is deferred again. Past `max_age_s`
        since its first attempt it is dead-lettered instead."""
        ctx = self._ctx
        max_age_s = ctx.delivery.max_age_s
        if ctx.wall() - first_at >= max_age_s:  # deferred without end: the window still holds
            meta = delivery.meta
            last = HttpResult(meta.last_status, meta.last_error, None, 0.0)
            reason = f"retry window of {max_age_s:g} s exceeded: {describe(last)}"
            self._dead_letter(delivery, attempts_made, last, reason, first_at, ctx.wall())
            return
        delays = ctx.delivery.retry_delays_s
        tier, wait = waiting_tier(max(wait_s, 0.001), delays, DEFAULT_JITTER)
        step = RetryLater(wait, ctx.wall() + wait, tier)
        self._to_retry_tier(delivery, attempts_made, step, None, first_at)

    def _judged(self, result: HttpResult) -> None:
        """Feed the breaker: an answer that asks for a retry is a failure."""
        breaker = self._breaker
        if breaker is None:
            return
        if verdict_of(result, self._policy) is OutcomeClass.RETRYABLE:
            breaker.record_failure()
        else:
            breaker.record_success()

    def _breaker_changed(self, transition: Transition) -> None:
        if transition.after is BreakerState.OPEN:
            self._ctx.stats.breaker_opens += 1
        self._ctx.stats.breaker_changed(self.endpoint.id, transition.after.value)
        log.warning(
            "endpoint %s: circuit breaker %s -> %s",
            self.endpoint.id,
            transition.before.value,
            transition.after.value,
            extra={"event": "breaker", "endpoint": self.endpoint.id},
        )

    def _to_retry_tier(
        self,
        delivery: Delivery,
        attempt: int,
        step: RetryLater,
        result: HttpResult | None,
        first_at: float,
    ) -> None:
        """Hand the delivery to its retry tier; its offset finishes when that is durable."""
        ctx = self._ctx
        topic = ctx.kafka.retry_topic(step.tier)
        meta = delivery.meta
        headers = retry_headers(
            meta,
            attempt,
            int(step.due * 1000),
            int(first_at * 1000),
            meta.last_status if result is None else result.status,  # deferred: no attempt
            meta.last_error if result is None else result.error,
        )
        ack = RetryAck(delivery.part, delivery.offset, ctx.producer, topic, ctx.stats)
        ctx.producer.produce(topic, self._key_id, delivery.body, headers, ack)

    async def _send(
        self, delivery: Delivery, part: PartitionState, task: asyncio.Task[None]
    ) -> HttpResult:
        # Most requests need no wait: take the token and the slot without a coroutine each.
        if self._adaptive is not None or self._limiter.try_take() > 0.0:
            await self._paced()
        slots = self._host_slots
        lease = slots.try_acquire()
        if lease is None:
            lease = await slots.acquire()
        stats = self._ctx.stats
        stats.in_flight += 1
        part.working[task] = True  # on the wire: a revocation gives it the grace period
        self._budget.record_attempt()
        latency: float | None = None
        adaptive = self._adaptive
        if adaptive is not None:
            adaptive.started()
        try:
            meta = delivery.meta
            now = time.time()
            if self._signer_until is not None and now >= self._signer_until:
                self._set_signer(now)  # a rotated-out secret expired
            headers = self._signer.headers(meta.event_id, int(now), delivery.body)
            if meta.carried:  # the source event's traceparent joins the receiver's trace
                headers.update(trace_headers(meta.carried))
            result = await self._ctx.sender.send(
                self.endpoint.url, delivery.body, headers, self._tls
            )
            if result.status is not None:  # a timeout's latency is the receiver's silence
                latency = result.latency_s
            if adaptive is not None:
                adaptive.finished(result.latency_s, signal_of(result))
            return result
        except asyncio.CancelledError:
            if self._breaker is not None:
                self._breaker.record_abandoned()  # a probe without a verdict
            if adaptive is not None:
                adaptive.abandoned()
            raise
        finally:
            part.working[task] = False
            stats.in_flight -= 1
            slots.release(lease, latency)

    async def _paced(self) -> None:
        """Wait for the rate limit's token and, on an adaptive endpoint, for its pace. The
        token is taken only once the pace allows a start, with no wait in between."""
        adaptive = self._adaptive
        limiter = self._limiter
        while True:
            wait = 0.0 if adaptive is None else adaptive.wait_s()
            if wait <= 0.0:
                wait = limiter.try_take()
                if wait <= 0.0:
                    if adaptive is not None:
                        adaptive.take_start()
                    return
            await asyncio.sleep(wait)

    def _publish_outcome(
        self, delivery: Delivery, kind: OutcomeKind, attempt: int, result: HttpResult
    ) -> None:
        record = OutcomeRecord(
            event_id=delivery.meta.event_id,
            endpoint_id=self.endpoint.id,
            outcome=kind,
            attempt=attempt,
            status=result.status,
            error=result.error,
            latency_ms=result.latency_s * 1000.0,
            event_time_ms=delivery.meta.event_time_ms,
            outcome_time_ms=int(time.time() * 1000),
        )
        ctx = self._ctx
        ctx.producer.produce(
            ctx.kafka.outcomes_topic, self._key_id, encode_outcome(record), None, ctx.outcome_acked
        )

    def _dead_letter(
        self,
        delivery: Delivery,
        attempt: int,
        result: HttpResult,
        reason: str,
        first_at: float | None = None,
        last_at: float | None = None,
    ) -> None:
        meta = delivery.meta
        self._publish_outcome(delivery, "dead", attempt, result)
        topic, partition, offset = _split_source(meta.source)
        record = DeadLetterRecord(
            reason=reason,
            body=delivery.body,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            dead_time_ms=int(time.time() * 1000),
            key=meta.producer_key,
            event_id=meta.event_id,
            event_type=meta.event_type,
            endpoint_id=self.endpoint.id,
            attempts=attempt,
            status=result.status,
            error=result.error,
            latency_ms=result.latency_s * 1000.0,
            event_time_ms=meta.event_time_ms,
            first_attempt_ms=None if first_at is None else int(first_at * 1000),
            last_attempt_ms=None if last_at is None else int(last_at * 1000),
            response_excerpt=result.response_excerpt,
            headers=identity_headers(meta),
        )
        self._ctx.dead_letters.write(delivery.part, delivery.offset, record)


class RetryAck:
    """Finishes a delivery's offset once its retry record is durable."""

    __slots__ = ("offset", "part", "producer", "stats", "topic")

    def __init__(
        self,
        part: PartitionState,
        offset: int,
        producer: RecordProducer,
        topic: str,
        stats: WorkerStats,
    ) -> None:
        self.part = part
        self.offset = offset
        self.producer = producer
        self.topic = topic
        self.stats = stats

    def __call__(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.part.abandoned()
            self.producer.failed(error, self.topic)
            return
        self.stats.retries_scheduled += 1
        self.part.finished(self.offset)


def _unbuffer(delivery: Delivery, stats: WorkerStats) -> None:
    """The delivery no longer waits in memory (done, dead-lettered or given up)."""
    stats.buffered -= 1
    delivery.part.buffered -= 1


_TOO_LARGE = HttpResult(status=None, error=ERROR_BODY_TOO_LARGE, retry_after_s=None, latency_s=0.0)
_NOT_SENT = HttpResult(status=None, error="not sent", retry_after_s=None, latency_s=0.0)
# An unordered lane may hold at least this many times its max_in_flight (see _overflows),
# and sends the rest to a retry tier only once its oldest delivery waited this long.
OVERFLOW_FACTOR = 16
OVERFLOW_AFTER_S = 2.0
# A paused endpoint's unordered deliveries come back from a retry tier about this often.
PAUSED_RECHECK_S = 30.0


def _log_disable(endpoint_id: str, reason: str) -> None:
    log.warning(
        "endpoint %s should be disabled (%s): no endpoints topic to record it", endpoint_id, reason
    )


def _split_source(source: str) -> tuple[str, int, int]:
    """ "topic/partition/offset" (topic names cannot hold a slash)."""
    parts = source.split("/")
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return source, -1, -1
