"""Announcements on the control topic (``har.control``): "version N of model X is champion now".

The registry is the truth; an announcement only wakes the workers so that they look at it at
once instead of at their next poll. Messages are small JSON objects keyed by the model name::

    {"kind": "champion", "name": "har", "version": 3, "action": "promote", "at_ms": 1.7e12}

>>> a = Announcement("har", 3, "promote", at_ms=0.0)
>>> Announcement.decode(a.encode()) == a
True
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Literal

from pipeline.exceptions import PipelineError
from streams.protocols import Sink

CONTROL_TOPIC = "har.control"
Action = Literal["promote", "rollback"]


class ControlError(PipelineError):
    """A control message that cannot be understood (it is skipped, never fatal)."""


@dataclass(frozen=True)
class Announcement:
    """Model ``name`` has version ``version`` as its champion since ``at_ms`` (wall clock)."""

    name: str
    version: int
    action: Action = "promote"
    at_ms: float = 0.0

    def encode(self) -> bytes:
        return json.dumps({"kind": "champion", **asdict(self)}).encode()

    @classmethod
    def decode(cls, value: bytes) -> Announcement:
        try:
            data = json.loads(value)
            if data.pop("kind") != "champion":
                raise ValueError("not a champion announcement")
            out = cls(str(data["name"]), int(data["version"]), data["action"],
                      float(data["at_ms"]))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ControlError(f"invalid control message: {exc}") from exc
        if out.action not in ("promote", "rollback") or not math.isfinite(out.at_ms):
            raise ControlError(f"invalid control message: {data!r}")
        return out


def announce(sink: Sink, name: str, version: int, action: Action = "promote",
             topic: str = CONTROL_TOPIC) -> Announcement:  # fmt: skip
    """Send (and flush) the announcement that ``version`` of ``name`` is champion."""
    message = Announcement(name, version, action, at_ms=time.time() * 1000.0)
    sink.send(topic, name.encode(), message.encode())
    sink.flush()
    return message
