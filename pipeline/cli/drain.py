"""Consume a topic, decode every message and account for each device's samples."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from streams.accounting import SampleLedger
from streams.codecs import Codec
from streams.exceptions import DecodeError
from streams.protocols import Source
from streams.record import Record


class Drainer:
    """Reads ``source``: valid records go to ``ledger``, rejects are counted by reason."""

    def __init__(
        self, source: Source, codec: Codec, on_record: Callable[[Record], None] | None = None
    ) -> None:
        self.source = source
        self.codec = codec
        self.on_record = on_record
        self.ledger = SampleLedger()
        self.rejected: Counter[str] = Counter()
        self.messages = 0

    def step(self, max_records: int = 2000, timeout_s: float = 0.1) -> int:
        """Poll once, decode what came, commit; return the number of messages."""
        batch = self.source.poll(max_records=max_records, timeout_s=timeout_s)
        for msg in batch:
            try:
                record = self.codec.decode(msg.value)
            except DecodeError as err:
                self.rejected[err.reason] += 1
                continue
            self.ledger.add(record)
            if self.on_record is not None:
                self.on_record(record)
        if batch:
            self.source.commit()
        self.messages += len(batch)
        return len(batch)

    def run(
        self,
        done: Callable[[Drainer], bool],
        timeout_s: float = 60.0,
        on_step: Callable[[Drainer], None] | None = None,
    ) -> bool:
        """Step until ``done(self)`` is true (return True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not done(self):
            if time.monotonic() > deadline:
                return False
            self.step()
            if on_step is not None:
                on_step(self)
        return True
