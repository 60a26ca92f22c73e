"""Physical units of sensor channels: acceleration in g or m/s², angular rate in rad/s or deg/s.

A channel's kind comes from its name (``acc_x``, ``total_acc_y``, ``body_acc_z`` are
acceleration; ``gyro_x``, ``body_gyro_y`` are angular rate; any other channel has no unit and is
never converted). Units are plain scales, so a conversion is one multiplication per channel.

>>> u = Units.parse("acc=m/s2,gyro=deg/s")
>>> u
Units(acceleration='m/s2', angular_rate='deg/s')
>>> [round(float(f), 5) for f in Units().scale_from(u, ["acc_x", "gyro_x", "light"])]
[0.10197, 0.01745, 1.0]
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from harstream import ConfigError
from streams.record import Record, RecordBlock

ACCELERATION, ANGULAR_RATE = "acceleration", "angular_rate"
STANDARD_GRAVITY = 9.80665
"""m/s² per g"""

_TO_BASE = {
    ACCELERATION: {"g": 1.0, "m/s2": 1.0 / STANDARD_GRAVITY},
    ANGULAR_RATE: {"rad/s": 1.0, "deg/s": math.pi / 180.0},
}
"""per kind: the factor that turns a value in each unit into the first unit of the kind"""
UNIT_NAMES = {kind: tuple(units) for kind, units in _TO_BASE.items()}
_SPELLINGS = {"m/s^2": "m/s2", "m/s²": "m/s2", "ms2": "m/s2", "mps2": "m/s2", "rads": "rad/s",
              "dps": "deg/s", "°/s": "deg/s", "degs": "deg/s"}  # fmt: skip
_KIND_KEYS = {"acc": ACCELERATION, "accel": ACCELERATION, ACCELERATION: ACCELERATION,
              "gyro": ANGULAR_RATE, "gyr": ANGULAR_RATE, ANGULAR_RATE: ANGULAR_RATE}  # fmt: skip
_ACC = re.compile(r"^(total_|body_|linear_)?acc(el(eration|erometer)?)?([_.-]?[xyz])?$", re.I)
_GYRO = re.compile(r"^(body_)?gyr(o(scope)?)?([_.-]?[xyz])?$", re.I)

CODES = {ACCELERATION: (None, "g", "m/s2"), ANGULAR_RATE: (None, "rad/s", "deg/s")}
"""per kind: a unit's 2-bit code on the wire (0 = not declared)"""


def channel_kind(name: str) -> str | None:
    """``"acceleration"``, ``"angular_rate"`` or None (a channel without a unit).

    >>> [channel_kind(c) for c in ("total_acc_x", "gyro_z", "accel_y", "light")]
    ['acceleration', 'angular_rate', 'acceleration', None]
    """
    if _ACC.match(name):
        return ACCELERATION
    if _GYRO.match(name):
        return ANGULAR_RATE
    return None


def unit_name(kind: str, text: str) -> str:
    """``text`` as the canonical name of a unit of ``kind``, or :class:`ConfigError`."""
    name = _SPELLINGS.get(text.strip().lower(), text.strip().lower())
    if name not in _TO_BASE[kind]:
        raise ConfigError(f"{text!r} is not a unit of {kind}: give one of {UNIT_NAMES[kind]}")
    return name


@dataclass(frozen=True)
class Units:
    """The units of a model's, a dataset's or a device's channels (default: g and rad/s)."""

    acceleration: str = "g"
    angular_rate: str = "rad/s"

    def __post_init__(self) -> None:
        for kind, given in asdict(self).items():
            object.__setattr__(self, kind, unit_name(kind, given))

    @classmethod
    def parse(cls, text: str, base: Units | None = None) -> Units:
        """``"acc=m/s2,gyro=deg/s"`` (either part may be left out: ``base``'s, default g, rad/s).

        >>> Units.parse("gyro=dps")
        Units(acceleration='g', angular_rate='deg/s')
        """
        given = asdict(base or cls())
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            kind = _KIND_KEYS.get(key.strip().lower())
            if kind is None or not value:
                raise ConfigError(
                    f"units {text!r}: each part is acc=g|m/s2 or gyro=rad/s|deg/s, not {part!r}"
                )
            given[kind] = value
        return cls(**given)

    def scale_from(self, other: Units, channels: Sequence[str]) -> np.ndarray:
        """Per-channel factors ``(C,)`` float32 that turn values in ``other``'s units into
        values in these units."""
        mine, theirs = asdict(self), asdict(other)
        out = np.ones(len(channels), np.float32)
        for i, name in enumerate(channels):
            if kind := channel_kind(name):
                table = _TO_BASE[kind]
                out[i] = table[theirs[kind]] / table[mine[kind]]
        return out

    def code(self) -> int:
        """These units as the 4-bit field of the binary wire format (bits 0-1 acceleration,
        bits 2-3 angular rate).

        >>> Units("m/s2", "deg/s").code(), Units.from_code(Units("m/s2", "deg/s").code())
        (10, Units(acceleration='m/s2', angular_rate='deg/s'))
        """
        acc, gyro = CODES[ACCELERATION], CODES[ANGULAR_RATE]
        return acc.index(self.acceleration) | gyro.index(self.angular_rate) << 2

    @classmethod
    def from_code(cls, code: int, base: Units | None = None) -> Units:
        """The units a wire code declares; an undeclared kind (0) keeps ``base``'s."""
        given = asdict(base or cls())
        for shift, kind in ((0, ACCELERATION), (2, ANGULAR_RATE)):
            unit = CODES[kind][(code >> shift) & 3]
            if unit is not None:
                given[kind] = unit
        return cls(**given)

    def __str__(self) -> str:
        return f"acc={self.acceleration},gyro={self.angular_rate}"


_APART = (Units("g", "rad/s"), Units("m/s2", "deg/s"))
"""two units that differ in every kind: a kind a text or a code leaves out differs between them"""


def declared_code(text: str) -> int:
    """The wire code (:meth:`Units.code`) of the kinds ``text`` names, read as :meth:`Units.parse`
    reads it; a kind it leaves out is 0 (not declared). :class:`ConfigError` for bad text.

    >>> declared_code("acc=m/s2"), declared_code("gyro=dps, acc=g"), declared_code("")
    (2, 9, 0)
    """
    # A named kind has one code over both bases; a kind left out has 1 over one, 2 over the
    # other, and 1 & 2 == 0.
    one, other = (Units.parse(text, base).code() for base in _APART)
    return one & other


def declared_text(code: int) -> str:
    """The kinds a wire code declares, as :func:`declared_code` reads them ("" for 0);
    :class:`ConfigError` for a code that is none (a field of 3, more than 4 bits).

    >>> declared_text(2), declared_text(9), declared_text(0)
    ('acc=m/s2', 'acc=g,gyro=deg/s', '')
    """
    if code != code & 0xF or 3 in (code & 3, code >> 2):
        raise ConfigError(
            f"units code {code}: bits 0-1 (acceleration) and 2-3 (angular rate) must each be "
            "0 (not declared), 1 or 2"
        )
    one, other = (str(Units.from_code(code, base)).split(",") for base in _APART)
    return ",".join(part for part, same in zip(one, other, strict=True) if part == same)


class ToUnits:
    """Records in ``target`` units: a record that declares other units (``Record.units``) gets
    its values converted and no declaration; the others pass as they are.

    >>> import numpy as np
    >>> from streams.record import Record
    >>> to_g = ToUnits(Units(), ["acc_x"])
    >>> r = Record("d", 0, 0, 50.0, np.array([[9.80665]], np.float32), units=Units("m/s2").code())
    >>> to_g(r).values.tolist(), to_g(r).units
    ([[1.0]], 0)
    """

    def __init__(self, target: Units, channels: Sequence[str]) -> None:
        self.target, self.channels = target, tuple(channels)
        self._scales: dict[int, np.ndarray | None] = {}

    def __call__(self, record: Record) -> Record:
        if not record.units:
            return record
        scale = self._scale(record.units)
        if scale is None:
            return replace(record, units=0)
        return replace(record, values=record.values * scale, units=0)

    def block(self, block: RecordBlock) -> RecordBlock:
        """:meth:`__call__` of every row of ``block``, as arrays."""
        codes = np.unique(block.units).tolist()
        if codes == [0]:
            return block
        values = block.values
        for code in codes:
            scale = self._scale(code) if code else None
            if scale is not None:
                values = values.copy() if values is block.values else values
                rows = block.units == code
                values[rows] = values[rows] * scale
        return replace(block, values=values, units=np.zeros_like(block.units))

    def _scale(self, code: int) -> np.ndarray | None:
        """The factors from the units of wire ``code`` to the target's (None: all 1)."""
        if code not in self._scales:
            declared = Units.from_code(code, self.target)
            scale = self.target.scale_from(declared, self.channels)
            self._scales[code] = None if np.all(scale == 1.0) else scale
        return self._scales[code]


def detect(values: np.ndarray, channels: Sequence[str]) -> tuple[Units, str]:
    """The units ``values`` ``(n, C)`` look like they are in, and why: acceleration with
    gravity in m/s² when its median magnitude is near 9.8 (near 1 in g); angular rate in deg/s
    when its 99th percentile magnitude exceeds 20 (no body turns at 20 rad/s).

    >>> rng = np.random.default_rng(0)
    >>> acc = np.c_[rng.normal(0, 0.3, (500, 2)), 9.8 + rng.normal(0, 0.3, 500)]
    >>> x = np.c_[acc, rng.normal(0, 60, (500, 3))].astype(np.float32)
    >>> units, why = detect(x, ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
    >>> str(units)
    'acc=m/s2,gyro=deg/s'
    """
    found = Units()
    reasons = []
    for kind, test in ((ACCELERATION, _looks_like_ms2), (ANGULAR_RATE, _looks_like_deg)):
        idx = [i for i, c in enumerate(channels) if channel_kind(c) == kind]
        if not idx or values.shape[0] == 0:
            continue
        unit, why = test(values[:, idx], [channels[i] for i in idx])
        if unit is not None:
            found = Units(**{**asdict(found), kind: unit})
            reasons.append(why)
    return found, "; ".join(reasons)


def _looks_like_ms2(acc: np.ndarray, names: Sequence[str]) -> tuple[str | None, str]:
    with_gravity = [
        i for i, n in enumerate(names) if not n.lower().startswith(("body_", "linear_"))
    ]
    if len(with_gravity) < 3:
        return None, ""  # gravity-free acceleration: no reference magnitude
    magnitude = float(np.median(np.linalg.norm(acc[:, with_gravity[:3]], axis=1)))
    unit = "m/s2" if magnitude > math.sqrt(STANDARD_GRAVITY) else "g"
    return unit, f"acceleration median |a| {magnitude:.2f} → {unit}"


def _looks_like_deg(gyro: np.ndarray, names: Sequence[str]) -> tuple[str | None, str]:
    p99 = float(np.percentile(np.abs(gyro), 99))
    unit = "deg/s" if p99 > 20.0 else "rad/s"
    return unit, f"angular rate 99th percentile {p99:.1f} → {unit}"
