"""kafka-python internals, in one place, for the kafka-python versions harstream is tested with.

Everything else in harstream uses kafka-python's public API: the three clients,
:class:`kafka.AsyncConsumerRebalanceListener`, ``kafka.admin.NewTopic``, ``kafka.errors`` and
``kafka.structs``. Importing this module checks ``kafka.__version__`` against :data:`TESTED`
(keep it in step with the pin in ``pyproject.toml``) and warns with
:class:`KafkaVersionWarning` outside it; a shim whose internals are missing raises
:class:`~streams.exceptions.TransportError` when it is set up, not at the first rebalance.

What :class:`ThreadedRebalanceListener` relies on (kafka-python 3.0.x):

- ``KafkaConsumer._net``: the consumer's IO loop (a ``kafka.net.selector.NetworkSelector``);
  3.0 has no public handle on it;
- ``NetworkSelector.call_soon_threadsafe(fn)``: schedules ``fn`` (a coroutine function) on that
  loop from another thread and wakes the loop;
- ``kafka.future.Future`` is awaitable on that loop: the listener's coroutine awaits a future
  that the hook's thread resolves.

What breaks on kafka-python 3.1 (its ``3.1.0.dev`` branch, July 2026):

- ``call_soon_threadsafe`` is gone from the IO loops (dpkp/kafka-python#3139: ``call_soon`` is
  thread-safe itself), so setting up the listener fails here;
- ``kafka.future.Future`` is no longer awaitable (loop-awaitable futures come from
  ``net.create_future()``; awaiting a plain one raises), so the listener's ``await`` would fail;
- the IO loop may be an asyncio backend (the new ``net=`` client option, #3116/#3117).

``KafkaConsumer._net`` is still there. To port: take ``done = consumer._net.create_future()``,
resolve it through ``consumer._net.call_soon(...)``, then widen :data:`TESTED` and the pin.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Collection

import kafka
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer
from kafka.future import Future

from streams.exceptions import TransportError
from streams.protocols import RebalanceListener, TopicPartition

TESTED: tuple[tuple[int, ...], tuple[int, ...]] = ((3, 0, 9), (3, 1))
"""kafka-python versions the shims are tested with: from ``TESTED[0]`` up to, not including,
``TESTED[1]`` (``kafka-python>=3.0.9,<3.1`` in ``pyproject.toml``)."""


class KafkaVersionWarning(RuntimeWarning):
    """The installed kafka-python is outside :data:`TESTED`."""


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading numbers of a version string (a pre-release suffix ends them).

    >>> version_tuple("3.0.12"), version_tuple("3.1.0.dev")
    ((3, 0, 12), (3, 1, 0))
    """
    numbers = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(numbers)


def _range() -> str:
    low, high = (".".join(map(str, v)) for v in TESTED)
    return f">={low},<{high}"


def check_version(version: str = kafka.__version__) -> bool:
    """Whether ``version`` is within :data:`TESTED`; warns with
    :class:`KafkaVersionWarning` when it is not.

    >>> check_version("3.0.12")
    True
    """
    low, high = TESTED
    if low <= version_tuple(version) < high:
        return True
    warnings.warn(
        f"kafka-python {version} is untested with harstream (tested: kafka-python{_range()}); "
        "its Kafka source relies on kafka-python internals that change across minor versions "
        "(see streams.kafka_compat)",
        KafkaVersionWarning,
        stacklevel=2,
    )
    return False


check_version()


def _missing(what: str) -> TransportError:
    return TransportError(
        f"kafka-python {kafka.__version__} lacks {what}, which harstream's rebalance listener "
        f"needs: install kafka-python{_range()} (see streams.kafka_compat)"
    )


def _threadsafe_scheduler(consumer: KafkaConsumer) -> Callable[[Callable], object]:
    """``consumer._net.call_soon_threadsafe``: runs a coroutine function on the IO loop."""
    schedule = getattr(getattr(consumer, "_net", None), "call_soon_threadsafe", None)
    if schedule is None:
        raise _missing("KafkaConsumer._net.call_soon_threadsafe")
    if not hasattr(Future, "__await__"):
        raise _missing("an awaitable kafka.future.Future")
    return schedule


class ThreadedRebalanceListener(AsyncConsumerRebalanceListener):
    """Runs ``hook`` on a thread of its own while ``consumer``'s IO loop awaits it.

    kafka-python 3 calls rebalance listeners on its IO thread, where blocking consumer calls
    (``commit``) are refused; on a worker thread the hook may commit, flush and checkpoint while
    heartbeats go on. Pass it to ``consumer.subscribe(..., listener=...)``.
    """

    def __init__(self, hook: RebalanceListener, consumer: KafkaConsumer) -> None:
        self.hook = hook
        self._schedule = _threadsafe_scheduler(consumer)

    async def on_partitions_revoked(self, revoked):
        await self._in_thread(self.hook.on_revoked, revoked)

    async def on_partitions_assigned(self, assigned):
        await self._in_thread(self.hook.on_assigned, assigned)

    def _in_thread(self, fn: Callable[[set[TopicPartition]], None], partitions: Collection):
        done = Future()
        parts = {TopicPartition(tp.topic, tp.partition) for tp in partitions}

        def work() -> None:
            error: BaseException | None = None
            try:
                fn(parts)
            except BaseException as exc:  # handed to the IO loop, which re-raises it
                error = exc

            async def resolve() -> None:
                if error is None:
                    done.success(None)
                else:
                    done.failure(error)

            self._schedule(resolve)

        threading.Thread(target=work, name="rebalance-listener", daemon=True).start()
        return done
