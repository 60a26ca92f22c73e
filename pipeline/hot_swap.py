"""Hot swap: a running worker takes a new champion between two batches, without stopping.

A watcher thread notices the new champion (it polls the registry, and an announcement on the
control topic wakes it at once), loads it with ``safe_mode=True`` and warms it, all off the hot
path. A stream model then needs every device's hidden state for the new weights: with
``prime="ring"`` each device's ring buffer (its last samples) is run through the new model.
That is done like a live migration, in rounds off the hot path:

1. at a batch boundary the worker hands over a copy of the ring buffers (a memory copy);
2. the watcher primes every device from it;
3. it asks for a fresh copy and runs only the samples that arrived meanwhile, until few remain;
4. from the last copy on the worker takes small batches (``final_batch_records``), so that at
   the next boundary it has only a few samples to run itself before it swaps the model.

The worker only ever pays for the copies and the last catch-up; each of these interruptions is
recorded (``SwapRecord.pauses_ms``). A device the worker reset or evicted meanwhile is primed
afresh from its ring. ``prime="reset"`` starts every device from a zero state instead (no
rounds at all); a model that reads other channels is always refused.

Priming runs beside the worker's own NumPy work: give each process one BLAS thread
(:func:`one_blas_thread`), or the two threads' matrix products oversubscribe the cores and the
worker stalls for whole seconds (measured: batch p99 3.4 s instead of 0.65 s on 2 cores).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.registry import Registry, version_label
from pipeline.control import Announcement, ControlError
from pipeline.exceptions import PipelineError
from pipeline.progress import stderr
from streams.protocols import Source

if TYPE_CHECKING:
    from models.runtime import StreamRuntime
    from pipeline.state_store import StateStore
    from pipeline.worker import ServingModel, Worker

Prime = Literal["ring", "reset"]


class SwapError(PipelineError):
    """A new champion cannot be served by this worker (it keeps serving the old one)."""


@dataclass(frozen=True)
class SwapConfig:
    """How a worker follows the registry's champion.

    ``poll_s``: how often the registry is checked (an announcement wakes the watcher at once).
    ``prime``: ``ring`` re-primes each device's hidden state from its ring buffer; ``reset``
    starts the new model from zero states. ``catch_up_samples``: the rounds off the hot path go
    on until fewer samples than this arrived during the last one (at most ``max_rounds``);
    ``final_batch_records``: the worker's batch size from the last copy until the swap.
    """

    poll_s: float = 1.0
    prime: Prime = "ring"
    catch_up_samples: int = 20_000
    max_rounds: int = 2
    final_batch_records: int = 200


@dataclass
class SwapRecord:
    """One swap as the worker saw it (wall-clock times in seconds)."""

    version: str
    previous: str
    batch: int
    """the first batch the new version served"""
    pauses_ms: list[float] = field(default_factory=list)
    """every hot-path interruption this swap caused: ring copies, then the final catch-up"""
    rounds: int = 0
    primed_devices: int = 0
    noticed_at: float = 0.0
    swapped_at: float = 0.0
    first_prediction_at: float | None = None


@dataclass(frozen=True)
class _Rings:
    """The store's ring buffers and sample counts at a batch boundary."""

    ring: np.ndarray
    seen: np.ndarray
    used: np.ndarray
    """slots holding a device"""
    fresh: np.ndarray
    """slots reset since the previous copy: primed afresh from their ring"""


def catch_up(runtime: StreamRuntime, before: _Rings | None, now: _Rings) -> int:
    """Advance ``runtime`` from the state it had at ``before`` to ``now``; return the samples run.

    Slots reset in between (and every slot when ``before`` is None) start from zero and replay
    their whole ring; the others replay the samples that arrived since ``before``.
    """
    ring_len = now.ring.shape[1]
    slots = now.used[now.seen[now.used] > 0]
    if before is None:
        full = np.ones(len(slots), bool)
        delta = now.seen[slots]
    else:
        known = slots < len(before.seen)
        earlier = before.seen[np.minimum(slots, len(before.seen) - 1)]
        delta = now.seen[slots] - np.where(known, earlier, 0)
        fresh = np.zeros(len(now.seen), bool)
        fresh[: len(now.fresh)] = now.fresh[: len(now.seen)]
        full = ~known | fresh[slots] | (delta < 0) | (delta > ring_len)
    counts = np.where(full, np.minimum(now.seen[slots], ring_len), delta)
    if full.any():
        runtime.reset(slots[full])
    keep = counts > 0
    slots, counts = slots[keep], counts[keep]
    if not len(slots):
        return 0
    owner = np.repeat(slots, counts)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = (now.seen[owner] - np.repeat(counts, counts) + within) % ring_len
    runtime.advance(slots, counts, now.ring[owner, index])
    return int(counts.sum())


class HotSwap:
    """Follows the champion of one registry model for one worker slot (stream or window).

    Start it with :meth:`start`; the worker calls :meth:`at_boundary` between batches.
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        config: SwapConfig | None = None,
        control: Source | None = None,
    ) -> None:
        self.registry, self.name = registry, name
        self.config = config or SwapConfig()
        self.control = control
        self.records: list[SwapRecord] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._want_rings = False
        self._rings: _Rings | None = None
        self._rings_ready = threading.Event()
        self._fresh = np.zeros(0, bool)  # owned by the worker's thread
        self._tracking = False
        self._final = False
        self._pending_pauses: list[float] = []
        self._ready: tuple[ServingModel, _Rings | None, SwapRecord] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving: int | None = None
        self._failed: set[int] = set()
        self._kind: str = "stream"
        self._channels: tuple[str, ...] = ()
        self._ring = 0

    # -- the watcher thread --------------------------------------------------------------------

    def start(self, worker: Worker) -> HotSwap:
        """Follow the champion for whichever of ``worker``'s models is a version of ``name``."""
        served = [m for m in (worker.stream_model, worker.window_model)
                  if m is not None and _number(m.version, self.name) is not None]  # fmt: skip
        if not served:
            raise SwapError(f"the worker serves no registry version of {self.name!r} to swap")
        serving = served[0]
        self._serving = _number(serving.version, self.name)
        self._kind, self._channels = serving.meta.spec.setup, serving.meta.channels
        self._ring = worker.store.config.ring
        self._thread = threading.Thread(target=self._watch, name=f"hot-swap-{self.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._rings_ready.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.control is not None:
            self.control.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._listen()
            if self._stop.is_set():
                return
            champion = None
            try:
                champion, _ = self.registry.champion_stamp(self.name)
                if (
                    champion is not None
                    and champion != self._serving
                    and (champion not in self._failed)
                ):
                    self._prepare(champion)
            except Exception as exc:  # a broken version must never stop the worker
                self._fail(champion, exc)

    def _listen(self) -> None:
        """Wait up to ``poll_s``: for an announcement of this model, or :meth:`close`."""
        if self.control is None:
            self._wake.wait(self.config.poll_s)
            self._wake.clear()
            return
        for msg in self.control.poll(100, self.config.poll_s):
            try:
                if Announcement.decode(msg.value).name == self.name:
                    return
            except ControlError as exc:
                self.errors.append(str(exc))

    def _fail(self, version: int | None, exc: Exception) -> None:
        if version is not None:
            self._failed.add(version)
        self.errors.append(f"{self.name} {version}: {exc}")
        stderr.print(f"[red]hot swap: keeping {self.name}@{version_label(self._serving or 0)}: "
                     f"{exc}[/red]")  # fmt: skip

    def _prepare(self, version: int) -> None:
        from models.io import load_model
        from pipeline.worker import ServingModel

        noticed = time.time()
        label = f"{self.name}@{version_label(version)}"
        model, meta = load_model(self.registry.get(self.name, version).model_path)
        if meta.spec.setup != self._kind:
            raise SwapError(f"{label} is a {meta.spec.setup} model; this slot serves {self._kind}")
        if meta.channels != self._channels:
            raise SwapError(f"{label} reads {meta.channels}, the worker gets {self._channels}")
        if meta.spec.setup == "window" and meta.window > self._ring:
            raise SwapError(f"{label} needs {meta.window}-sample windows; the worker keeps "
                            f"{self._ring} samples per device")  # fmt: skip
        serving = ServingModel.load(model, meta, label)
        serving.warm()
        record = SwapRecord(label, "", batch=-1, noticed_at=noticed)
        last = None
        if serving.runtime is not None and self.config.prime == "ring":
            last = self._prime(serving.runtime, record)
            if last is None:
                return  # closing
        if self.registry.champion_stamp(self.name)[0] != version:
            return  # superseded while priming: start over with the newer one
        with self._lock:
            self._ready = (serving, last, record)
        while self._ready is not None and not self._stop.is_set():
            self._stop.wait(0.005)  # the worker swaps at its next boundary
        self._serving = version

    def _prime(self, runtime: StreamRuntime, record: SwapRecord) -> _Rings | None:
        """Rounds of ring copies and catch-ups; the last copy the runtime is up to date with.

        The rounds go on until one ran fewer than ``catch_up_samples`` (or ``max_rounds``);
        then one last copy is taken, from which on the worker runs small batches.
        """
        before, ran = None, 0
        for round_ in range(self.config.max_rounds + 1):
            if round_ == self.config.max_rounds or (
                round_ > 1 and ran < self.config.catch_up_samples
            ):
                self._final = True
            now = self._request_rings()
            if now is None:
                return None
            runtime.ensure_capacity(len(now.seen))
            ran = catch_up(runtime, before, now)
            record.rounds = round_ + 1
            if before is None:
                record.primed_devices = int(np.count_nonzero(now.seen[now.used]))
            before = now
            if self._final:
                break
        return before

    def _request_rings(self) -> _Rings | None:
        self._rings_ready.clear()
        with self._lock:
            self._want_rings = True
        while not self._rings_ready.wait(0.1):
            if self._stop.is_set():
                return None
        with self._lock:
            rings, self._rings = self._rings, None
        return rings

    # -- the worker's side (hot path) ----------------------------------------------------------

    @property
    def batch_limit(self) -> int | None:
        """A cap on the worker's batch size while a swap is being finished, else None."""
        return self.config.final_batch_records if self._final else None

    def note_reset(self, slots: np.ndarray) -> None:
        """The worker reset ``slots`` (gap, eviction, new device): prime them afresh."""
        if not self._tracking or not len(slots):
            return
        top = int(np.max(slots))
        if len(self._fresh) <= top:
            grown = np.zeros(max(top + 1, 2 * len(self._fresh)), bool)
            grown[: len(self._fresh)] = self._fresh
            self._fresh = grown
        self._fresh[slots] = True

    def _copy(self, store: StateStore, copy: bool = True) -> _Rings:
        rings = _Rings(
            np.copy(store.ring) if copy else store.ring,
            np.copy(store.seen) if copy else store.seen,
            store.used_slots(),
            self._fresh,
        )
        self._fresh = np.zeros(store.capacity, bool)
        self._tracking = True
        return rings

    def at_boundary(self, worker: Worker) -> SwapRecord | None:
        """Between two batches: hand over a ring copy, or swap in a ready model."""
        if self._want_rings:
            started = time.perf_counter()
            rings = self._copy(worker.store)
            with self._lock:
                self._rings, self._want_rings = rings, False
            self._pending_pauses.append((time.perf_counter() - started) * 1000.0)
            self._rings_ready.set()
        if self._ready is None:
            return None
        started = time.perf_counter()
        with self._lock:
            serving, last, record = self._ready
        if serving.runtime is not None:
            serving.runtime.ensure_capacity(worker.store.capacity)
            if last is None:
                serving.runtime.reset(np.arange(worker.store.capacity))
            else:
                catch_up(serving.runtime, last, self._copy(worker.store, copy=False))
        self._tracking = self._final = False
        record.previous = worker.swap_in(serving)
        record.batch = worker.batch
        record.pauses_ms = [*self._pending_pauses, (time.perf_counter() - started) * 1000.0]
        record.swapped_at = time.time()
        self._pending_pauses = []
        self.records.append(record)
        with self._lock:
            self._ready = None
        return record


def one_blas_thread() -> None:
    """Limit NumPy's BLAS to one thread in this process (workers scale out by processes)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _number(version: str, name: str) -> int | None:
    """The registry version number in ``name@vNNNN`` (None for a model not from the registry)."""
    prefix = f"{name}@v"
    if version.startswith(prefix) and version[len(prefix) :].isdigit():
        return int(version[len(prefix) :])
    return None
