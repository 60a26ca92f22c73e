"""Hot swap: a running worker takes a new champion between two batches, without stopping.

A watcher thread notices the new champion (it polls the registry, and an announcement on the
control topic wakes it at once), loads it with ``safe_mode=True`` and warms it, all off the hot
path. A stream model then needs every device's hidden state for the new weights (and, if its
labels are decoded, its HMM belief): with ``prime="ring"`` each device's ring buffer (its last
samples) is run through the new model.
That is done like a live migration, in rounds off the hot path:

1. at a batch boundary the worker hands over a copy of the ring buffers (a memory copy into a
   buffer the watcher allocated and touched beforehand, so no page faults on the hot path);
2. the watcher primes every device from it;
3. optionally (``max_rounds`` > 0) it asks for fresh copies and runs only the samples that
   arrived meanwhile; under full load these rounds do not converge (a device's ring is soon
   all new samples), so by default there are none;
4. from the last copy on, the worker takes small batches (``final_batch_records``) and syncs
   the rest itself, a little at each boundary: it catches up devices from their rings for at
   most ``sync_budget_ms``, and runs each batch's samples of the devices already in sync
   through the new model too, so that they stay in sync. Once every device is, it swaps.

The worker only ever pays for the copies, the sync slices and the second model's share of each
batch; each batch's share is recorded (``SwapRecord.pauses_ms``), so no single batch pays for
the whole catch-up. A device the worker reset or evicted meanwhile is primed afresh from its
ring. ``prime="reset"`` starts every device from a zero state instead (no rounds at all); a
model that reads other channels is always refused.

Priming runs beside the worker's own NumPy work: give each process one BLAS thread
(:func:`one_blas_thread`), or the two threads' matrix products oversubscribe the cores and the
worker stalls for whole seconds (measured: batch p99 3.4 s instead of 0.65 s on 2 cores).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.registry import Registry, version_label
from pipeline.exceptions import PipelineError
from pipeline.serving import ServingModel
from pipeline.swap.control import Announcement, ControlError
from pipeline.swap.priming import Decoded, Rings, catch_up, primable
from pipeline.worker.hooks import SwapRecord
from streams.protocols import Source

if TYPE_CHECKING:
    from models.runtime import StreamRuntime
    from models.spec import ModelMeta
    from pipeline.worker.state_store import StateStore

log = logging.getLogger(__name__)
Prime = Literal["ring", "reset"]


class SwapError(PipelineError):
    """A new champion cannot be served by this worker (it keeps serving the old one)."""


@dataclass(frozen=True)
class SwapConfig:
    """How a worker follows the registry's champion.

    ``poll_s``: how often the registry is checked (an announcement wakes the watcher at once).
    ``prime``: ``ring`` re-primes each device's hidden state from its ring buffer; ``reset``
    starts the new model from zero states. ``max_rounds``: extra catch-up rounds off the hot
    path, ended early once fewer than ``catch_up_samples`` arrived during one (measured with
    10,000 busy devices: 0 rounds took promotion to first prediction from 9.2 s to 5.7 s with
    the same pauses);
    ``final_batch_records``: the worker's batch size from the last copy until the swap;
    ``sync_budget_ms``: how long the worker may spend syncing devices at one boundary (at
    least one group of ``sync_chunk_devices`` is synced each time).
    """

    poll_s: float = 1.0
    prime: Prime = "ring"
    catch_up_samples: int = 20_000
    max_rounds: int = 0
    final_batch_records: int = 200
    sync_budget_ms: float = 10.0
    sync_chunk_devices: int = 256


class _Sync:
    """The worker's side of the last stretch: which devices the new model is in step with.

    ``seen[slot]`` is the sample count up to which the new runtime ran that slot; ``behind``
    marks the slots still to catch up from their rings, ``fresh`` those to replay from zero.
    """

    def __init__(self, serving: ServingModel, last: Rings, store: StateStore, fresh) -> None:
        self.serving, self.runtime = serving, primable(serving)
        n = store.capacity
        self.runtime.ensure_capacity(n)
        self.seen = np.zeros(n, np.int64)
        self.seen[: min(n, len(last.seen))] = last.seen[:n]
        self.fresh = np.zeros(n, bool)
        self.fresh[: min(n, len(fresh))] = fresh[:n]
        self.fresh[len(last.seen) :] = True
        self.behind = np.zeros(n, bool)
        used = store.used_slots()
        self.behind[used] = (store.seen[used] != self.seen[used]) | self.fresh[used]
        self.pending_ms = 0.0
        """time spent on the new model inside the last batch (added to the next pause)"""

    def _fit(self, capacity: int) -> None:
        if capacity > len(self.seen):
            self.runtime.ensure_capacity(capacity)
            grow = capacity - len(self.seen)
            self.seen = np.concatenate([self.seen, np.zeros(grow, np.int64)])
            self.fresh = np.concatenate([self.fresh, np.ones(grow, bool)])
            self.behind = np.concatenate([self.behind, np.zeros(grow, bool)])

    def reset(self, slots: np.ndarray) -> None:
        """The worker reset ``slots``: so does the new model (they stay in step)."""
        self._fit(int(np.max(slots)) + 1)
        self.runtime.reset(slots)
        self.seen[slots] = 0
        self.fresh[slots] = False

    def follow(self, store: StateStore, slots: np.ndarray, counts, samples) -> None:
        """Run the batch's samples of the slots in step through the new model as well."""
        started = time.perf_counter()
        self._fit(store.capacity)
        keep = ~self.behind[slots]
        if keep.any():
            owner = np.repeat(keep, counts)
            self.runtime.advance(slots[keep], np.asarray(counts)[keep], samples[owner])
        self.seen[slots[keep]] = store.seen[slots[keep]]
        self.pending_ms += (time.perf_counter() - started) * 1000.0

    def catch_up(self, store: StateStore, budget_ms: float, chunk_size: int) -> bool:
        """Bring slots in step from their rings, ``chunk_size`` at a time, for up to
        ``budget_ms``; True once all are."""
        started = time.perf_counter()
        self._fit(store.capacity)
        behind = np.flatnonzero(self.behind)
        for first in range(0, len(behind), chunk_size):
            chunk = behind[first : first + chunk_size]
            self.runtime.reset(chunk[self.fresh[chunk]])  # even those with no sample yet
            before = Rings(store.ring, self.seen, chunk, self.fresh)
            catch_up(self.runtime, before, Rings(store.ring, store.seen, chunk, self.fresh))
            self.seen[chunk] = store.seen[chunk]
            self.fresh[chunk] = self.behind[chunk] = False
            if (time.perf_counter() - started) * 1000.0 >= budget_ms:
                break
        return not self.behind.any()


class HotSwap:
    """Follows the champion of one registry model for one worker slot (stream, window or anomaly).

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
        self._rings: Rings | None = None
        self._rings_ready = threading.Event()
        self._fresh = np.zeros(0, bool)  # owned by the worker's thread
        self._tracking = False
        self._final = False
        self._pending_pauses: list[float] = []
        self._ready: tuple[ServingModel, Rings | None, SwapRecord] | None = None
        self._sync: _Sync | None = None
        self._buffer: np.ndarray | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving: int | None = None
        self._failed: set[int] = set()
        self._served: ModelMeta | None = None  # what the worker was started with
        self._ring = 0

    # -- the watcher thread --------------------------------------------------------------------

    def start(self, models: Sequence[ServingModel | None], store: StateStore) -> HotSwap:
        """Follow the champion for whichever of the served ``models`` is a version of ``name``;
        ``store`` is the worker's (its ring buffers prime the new model)."""
        served = [m for m in models if m is not None and _number(m.version, self.name) is not None]
        if not served:
            raise SwapError(f"the worker serves no registry version of {self.name!r} to swap")
        serving = served[0]
        self._serving = _number(serving.version, self.name)
        self._served = serving.meta
        self._ring = store.config.ring
        self._store = store
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
                log.warning("hot swap: ignored a control message: %s", exc)

    def _fail(self, version: int | None, exc: Exception) -> None:
        if version is not None:
            self._failed.add(version)
        self.errors.append(f"{self.name} {version}: {exc}")
        log.error("hot swap: keeping %s@%s: %s", self.name, version_label(self._serving or 0), exc,
                  extra={"model": self.name, "version": self._label(version)})  # fmt: skip

    def _prepare(self, version: int) -> None:
        from models.io import load_model, load_refiner  # Keras: off the hot path, not at start-up

        noticed = time.time()
        label = self._label(version)
        log.info("hot swap: loading %s", label, extra={"model": self.name, "version": label})
        path = self.registry.get(self.name, version).model_path
        model, meta = load_model(path)
        served = self._served
        if meta.spec.setup != served.spec.setup:
            raise SwapError(
                f"{label} is a {meta.spec.setup} model; this slot serves {served.spec.setup}"
            )
        if meta.channels != served.channels:
            raise SwapError(f"{label} reads {meta.channels}, the worker gets {served.channels}")
        # the worker's rings, resampler and unit conversion are at the served model's rate and
        # in its units: another model would be primed and fed samples it does not expect
        if meta.rate_hz != served.rate_hz or meta.units != served.units:
            raise SwapError(
                f"{label} reads {meta.rate_hz:g} Hz in {_units(meta)}; the worker runs at "
                f"{served.rate_hz:g} Hz in {_units(served)}: restart it to serve that model"
            )
        if meta.spec.setup != "stream" and meta.span > self._ring:
            raise SwapError(f"{label} needs {meta.span}-sample windows; the worker keeps "
                            f"{self._ring} samples per device")  # fmt: skip
        serving = ServingModel.load(model, meta, label, refiner=load_refiner(path))
        serving.warm()
        record = SwapRecord(label, "", batch=-1, noticed_at=noticed)
        last = None
        if serving.runtime is not None and self.config.prime == "ring":
            last = self._prime(primable(serving), record)
            if last is None:
                return  # closing
        if self.registry.champion_stamp(self.name)[0] != version:
            return  # superseded while priming: start over with the newer one
        record.primed_at = time.time()
        with self._lock:
            self._ready = (serving, last, record)
        while self._ready is not None and not self._stop.is_set():
            self._stop.wait(0.005)  # the worker swaps at its next boundary
        self._serving = version

    def _prime(self, runtime: StreamRuntime | Decoded, record: SwapRecord) -> Rings | None:
        """Rounds of ring copies and catch-ups; the last copy the runtime is up to date with.

        The rounds go on until one ran fewer than ``catch_up_samples`` (or ``max_rounds``);
        then one last copy is taken, from which on the worker runs small batches.
        """
        before, ran = None, 0
        # one copy buffer for all rounds (the watcher is done with a copy when it asks for the
        # next), its pages touched here: a fresh one would fault them in on the hot path
        self._buffer = np.ones_like(self._store.ring)
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

    def _request_rings(self) -> Rings | None:
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

    def follow(self, store: StateStore, slots: np.ndarray, counts, samples) -> None:
        """The worker advanced ``slots``: while syncing, the new model runs them too."""
        if self._sync is not None:
            self._sync.follow(store, slots, counts, samples)

    def note_reset(self, slots: np.ndarray) -> None:
        """The worker reset ``slots`` (gap, eviction, new device): prime them afresh."""
        if self._sync is not None and len(slots):
            self._sync.reset(slots)
        if not self._tracking or not len(slots):
            return
        top = int(np.max(slots))
        if len(self._fresh) <= top:
            grown = np.zeros(max(top + 1, 2 * len(self._fresh)), bool)
            grown[: len(self._fresh)] = self._fresh
            self._fresh = grown
        self._fresh[slots] = True

    def _copy(self, store: StateStore) -> Rings:
        """The rings, copied into the buffer the watcher set up (a plain memory copy)."""
        buffer = self._buffer
        if buffer is None or buffer.shape != store.ring.shape:  # the store grew meanwhile
            buffer = self._buffer = np.empty_like(store.ring)
        np.copyto(buffer, store.ring)
        rings = Rings(buffer, np.copy(store.seen), store.used_slots(), self._fresh)
        self._fresh = np.zeros(store.capacity, bool)
        self._tracking = True
        return rings

    def at_boundary(
        self, store: StateStore, batch: int, swap_in: Callable[[ServingModel], str]
    ) -> SwapRecord | None:
        """Between two batches: hand over a ring copy, or swap in a ready model (``swap_in``
        serves it from batch ``batch`` on and returns the version it replaced)."""
        if self._want_rings:
            started = time.perf_counter()
            rings = self._copy(store)
            with self._lock:
                self._rings, self._want_rings = rings, False
            self._pending_pauses.append((time.perf_counter() - started) * 1000.0)
            self._rings_ready.set()
        if self._ready is None:
            return None
        started = time.perf_counter()
        with self._lock:
            serving, last, record = self._ready
        if serving.runtime is not None and last is None:
            serving.runtime.ensure_capacity(store.capacity)
            serving.runtime.reset(np.arange(store.capacity))
        elif serving.runtime is not None:
            if self._sync is None:  # the watcher's last copy: from here on the worker syncs
                self._sync = _Sync(serving, last, store, self._fresh)
                self._tracking = False
                record.synced_by_worker = int(np.count_nonzero(self._sync.behind))
            sync = self._sync
            done = sync.catch_up(store, self.config.sync_budget_ms, self.config.sync_chunk_devices)
            elapsed = (time.perf_counter() - started) * 1000.0
            self._pending_pauses.append(elapsed + sync.pending_ms)
            sync.pending_ms = 0.0
            if not done:
                record.sync_batches += 1
                return None
            started = time.perf_counter()
            self._sync = None
        self._tracking = self._final = False
        self._buffer = None
        record.previous = swap_in(serving)
        record.batch = batch
        swap_ms = (time.perf_counter() - started) * 1000.0
        if serving.runtime is not None and last is not None:
            self._pending_pauses[-1] += swap_ms
        else:
            self._pending_pauses.append(swap_ms)
        record.pauses_ms = self._pending_pauses
        record.swapped_at = time.time()
        self._pending_pauses = []
        self.records.append(record)
        with self._lock:
            self._ready = None
        log.info("hot swap: serving %s (was %s)", record.version, record.previous,
                 extra={"model": self.name, "version": record.version, "previous": record.previous,
                        "batch": batch, "pauses_ms": [round(p, 2) for p in record.pauses_ms],
                        "primed_devices": record.primed_devices})  # fmt: skip
        return record

    def _label(self, version: int | None) -> str | None:
        """``name@vNNNN``, as predictions name the version."""
        return f"{self.name}@{version_label(version)}" if version is not None else None


def one_blas_thread() -> None:
    """Limit NumPy's BLAS to one thread in this process (workers scale out by processes)."""
    from threadpoolctl import threadpool_limits  # only the processes that serve need it

    threadpool_limits(limits=1, user_api="blas")


def _number(version: str, name: str) -> int | None:
    """The registry version number in ``name@vNNNN`` (None for a model not from the registry)."""
    prefix = f"{name}@v"
    if version.startswith(prefix) and version[len(prefix) :].isdigit():
        return int(version[len(prefix) :])
    return None


def _units(meta: ModelMeta) -> str:
    return ", ".join(meta.units.values())
