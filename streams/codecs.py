"""Wire codecs for :class:`~streams.record.Record`: a compact binary form and JSON.

Binary (little-endian), version 1::

    offset size  field
    0      2     magic  b"HS"
    2      1     version (1)
    3      1     flags: bit 0 = labels present, bit 1 = explicit per-sample sequence numbers,
                 bits 2-5 = declared units, Record.units (streams.units.Units.code: 0 = not
                 declared, 3 in either 2-bit field is refused); a decoder older than units
                 refuses records with these bits set, as unknown flags
    4      2     channels C (uint16)
    6      2     device id length D in bytes (uint16)
    8      4     samples n (uint32)
    12     8     seq of the first sample (int64)
    20     8     event time of the first sample, ms (int64)
    28     4     sample rate, Hz (float32)
    32     D     device id, UTF-8
    ...    4nC   samples, float32, row-major (n x C)
    ...    2n    labels, int16 (flag bit 0)
    ...    8n    sequence numbers, int64 (flag bit 1)

Decoding views the payload with ``np.frombuffer``: no Python object per sample. JSON is for any
Kafka client (kcat, a phone SDK, a gateway); its fields are documented in the README.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np

from streams.exceptions import ConfigError, DecodeError
from streams.record import UNLABELLED, Record, RecordBlock
from streams.units import declared_code, declared_text

MAGIC = b"HS"
VERSION = 1
JSON_VERSION = 1
_HEADER = struct.Struct("<2sBBHHIqqf")
HEADER_SIZE = _HEADER.size  # 32
_HEADER_DTYPE = np.dtype([("magic", "S2"), ("version", "u1"), ("flags", "u1"),
                          ("channels", "<u2"), ("dlen", "<u2"), ("n", "<u4"), ("seq", "<i8"),
                          ("t0", "<i8"), ("rate", "<f4")])  # fmt: skip
_BULK_MIN = 16
"""messages in one call from which the binary codec decodes as arrays"""
_GROUP_MIN = 4
"""messages of one size from which they are decoded as arrays"""
_MAX_GROUPS = 16
"""message sizes (device id lengths, labels or not) decoded as arrays in one call at most"""
_FLAG_LABELS = 1
_FLAG_SEQS = 2
_UNITS_SHIFT = 2
_FLAG_UNITS = 0xF << _UNITS_SHIFT
_KNOWN_FLAGS = _FLAG_LABELS | _FLAG_SEQS | _FLAG_UNITS

CodecName = Literal["binary", "json", "auto"]


@dataclass(frozen=True)
class CodecConfig:
    """What a decoder accepts.

    ``channels`` is the channel count every record must have; ``max_samples`` and ``max_bytes``
    bound one record (larger ones are rejected as ``oversize``); ``activities`` lets JSON
    producers send label names instead of codes.
    """

    channels: int = 6
    max_samples: int = 4096
    max_bytes: int = 1 << 20
    activities: tuple[str, ...] = ()


class Codec(Protocol):
    """Turns records into bytes and back; ``decode`` raises :class:`DecodeError`."""

    name: str

    def encode(self, record: Record) -> bytes: ...

    def decode(self, data: bytes) -> Record: ...

    def decode_many(self, data: Sequence[bytes]) -> list[Record | DecodeError]:
        """Each of ``data`` decoded, or the :class:`DecodeError` that says why it cannot be."""
        ...

    def decode_block(self, data: Sequence[bytes]) -> Decoded:
        """``data`` decoded, the common messages as one :class:`RecordBlock` where the form
        allows (:meth:`Decoded.records` gives ``decode_many``'s list)."""
        ...


def _each(
    codec: Codec, data: Sequence[bytes], skip: np.ndarray | None = None
) -> list[Record | DecodeError | None]:
    """Each message of ``data`` but those at ``skip`` (left None) decoded by ``codec.decode``,
    one at a time."""
    out: list[Record | DecodeError | None] = [None] * len(data)
    left = np.ones(len(data), bool)
    if skip is not None:
        left[skip] = False
    for i in np.flatnonzero(left).tolist():
        try:
            out[i] = codec.decode(data[i])
        except DecodeError as err:
            out[i] = err
    return out


def _no_block(codec: Codec, data: Sequence[bytes]) -> Decoded:
    """``data`` decoded one message at a time, no block."""
    return Decoded(None, np.zeros(0, np.int64), _each(codec, data))


class Decoded(NamedTuple):
    """A batch of messages decoded: ``block`` holds those at positions ``rows`` (None: no
    block), ``others`` each other message's record or the error that says why it is not one
    (None at ``rows``)."""

    block: RecordBlock | None
    rows: np.ndarray
    others: list[Record | DecodeError | None]

    def records(self) -> list[Record | DecodeError]:
        """Every message's record (the block's as :class:`Record` objects) or error."""
        out = list(self.others)
        if self.block is not None:
            for j, i in enumerate(self.rows.tolist()):
                out[i] = self.block.record(j)
        return out  # type: ignore[return-value]


def _check_samples(values: np.ndarray, config: CodecConfig) -> None:
    n = values.shape[0]
    if n == 0:
        raise DecodeError("empty_chunk", "record has no samples")
    if n > config.max_samples:
        raise DecodeError("oversize", f"{n} samples > limit {config.max_samples}")
    if values.shape[1] != config.channels:
        raise DecodeError(
            "channel_mismatch", f"{values.shape[1]} channels, expected {config.channels}"
        )
    if not np.isfinite(values).all():
        raise DecodeError("non_finite", "samples contain NaN or Inf")


def _check_meta(device: str, rate_hz: float) -> None:
    if not device:
        raise DecodeError("bad_value", "empty device id")
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise DecodeError("bad_value", f"sample rate {rate_hz} is not a positive number")


def _units_error(code: int) -> DecodeError | None:
    """Why ``code`` is not a units wire code (:func:`~streams.units.declared_text`), or None."""
    try:
        declared_text(code)
    except ConfigError as exc:
        return DecodeError("bad_value", str(exc))
    return None


_UNITS_OK = np.array([_units_error(code) is None for code in range(16)])
"""per 4-bit units code, whether it is valid: the array path's check"""


def _check_labels(labels: np.ndarray | None, n: int) -> None:
    if labels is None:
        return
    if labels.shape != (n,):
        raise DecodeError("bad_value", f"{labels.shape[0]} labels for {n} samples")
    if labels.size and labels.min() < UNLABELLED:
        raise DecodeError("bad_value", "label codes must be >= -1")


def _check_seqs(seqs: np.ndarray | None, seq: int, n: int) -> None:
    if seqs is None:
        return
    if seqs.shape != (n,):
        raise DecodeError("bad_value", f"{seqs.shape[0]} sequence numbers for {n} samples")
    if seqs[0] != seq:
        raise DecodeError("bad_value", f"seqs[0]={int(seqs[0])} differs from seq={seq}")
    if n > 1 and not (np.diff(seqs) > 0).all():
        raise DecodeError("non_increasing_seq", "sequence numbers must strictly increase")


class BinaryCodec:
    """The compact binary form (see the module docstring).

    >>> codec = BinaryCodec(CodecConfig(channels=3))
    >>> r = Record("d1", 7, 1000, 50.0, np.ones((2, 3), np.float32))
    >>> codec.decode(codec.encode(r)).last_seq
    8
    """

    name = "binary"

    def __init__(self, config: CodecConfig | None = None) -> None:
        self.config = config or CodecConfig()

    def encode(self, record: Record) -> bytes:
        device = record.device.encode("utf-8")
        if record.units != record.units & 0xF:
            raise ValueError(f"units code {record.units} does not fit the 4 flag bits")
        flags = (
            (_FLAG_LABELS if record.labels is not None else 0)
            | (_FLAG_SEQS if record.seqs is not None else 0)
            | record.units << _UNITS_SHIFT
        )
        parts = [
            _HEADER.pack(
                MAGIC,
                VERSION,
                flags,
                record.channels,
                len(device),
                record.n,
                record.seq,
                record.t0_ms,
                record.rate_hz,
            ),
            device,
            np.ascontiguousarray(record.values, dtype="<f4").tobytes(),
        ]
        if record.labels is not None:
            parts.append(np.asarray(record.labels, dtype="<i2").tobytes())
        if record.seqs is not None:
            parts.append(np.asarray(record.seqs, dtype="<i8").tobytes())
        return b"".join(parts)

    def decode(self, data: bytes) -> Record:
        cfg = self.config
        size = len(data)
        if size > cfg.max_bytes:
            raise DecodeError("oversize", f"{size} bytes > limit {cfg.max_bytes}")
        if size < 3:
            raise DecodeError("truncated", f"{size} bytes, header needs {HEADER_SIZE}")
        if data[:2] != MAGIC:
            raise DecodeError("bad_magic", f"magic {bytes(data[:2])!r}, expected {MAGIC!r}")
        if data[2] != VERSION:
            raise DecodeError("bad_version", f"version {data[2]}, this decoder reads {VERSION}")
        if size < HEADER_SIZE:
            raise DecodeError("truncated", f"{size} bytes, header needs {HEADER_SIZE}")
        _, _, flags, channels, dlen, n, seq, t0_ms, rate_hz = _HEADER.unpack_from(data)
        if flags & ~_KNOWN_FLAGS:
            raise DecodeError("bad_value", f"unknown flags 0x{flags:02x}")
        units = (flags >> _UNITS_SHIFT) & 0xF
        if (err := _units_error(units)) is not None:
            raise err
        if n == 0:
            raise DecodeError("empty_chunk", "record has no samples")
        if n > cfg.max_samples:
            raise DecodeError("oversize", f"{n} samples > limit {cfg.max_samples}")
        if channels != cfg.channels:
            raise DecodeError("channel_mismatch", f"{channels} channels, expected {cfg.channels}")
        labels_at = HEADER_SIZE + dlen + 4 * n * channels
        seqs_at = labels_at + (2 * n if flags & _FLAG_LABELS else 0)
        expected = seqs_at + (8 * n if flags & _FLAG_SEQS else 0)
        if size < expected:
            raise DecodeError("truncated", f"{size} bytes, record needs {expected}")
        if size > expected:
            raise DecodeError("bad_value", f"{size - expected} trailing bytes")
        try:
            device = bytes(data[HEADER_SIZE : HEADER_SIZE + dlen]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("bad_value", "device id is not UTF-8") from exc
        _check_meta(device, rate_hz)
        values = np.frombuffer(data, "<f4", n * channels, HEADER_SIZE + dlen).reshape(n, channels)
        _check_samples(values, cfg)
        labels = np.frombuffer(data, "<i2", n, labels_at) if flags & _FLAG_LABELS else None
        _check_labels(labels, n)
        seqs = np.frombuffer(data, "<i8", n, seqs_at) if flags & _FLAG_SEQS else None
        _check_seqs(seqs, seq, n)
        return Record(device, seq, t0_ms, float(rate_hz), values, labels, seqs, units)

    def decode_many(self, data: Sequence[bytes]) -> list[Record | DecodeError]:
        """:meth:`decode` of each message, the common ones as arrays (:meth:`decode_block`)."""
        return self.decode_block(data).records()

    def decode_block(self, data: Sequence[bytes]) -> Decoded:
        """``data`` decoded, the common messages as one :class:`RecordBlock`: records of the
        batch's usual sample count, without explicit sequence numbers, grouped by message size
        and checked together (header fields, units, sizes, finite samples, label codes), each
        group cut from one byte array. Every other message, and any that fails a check, goes
        through :meth:`decode` (for its precise error)."""
        parts = []
        if len(data) >= _BULK_MIN:
            sizes = np.fromiter(map(len, data), np.int64, len(data))
            usable = (sizes >= HEADER_SIZE) & (sizes <= self.config.max_bytes)
            found, counts = np.unique(sizes[usable], return_counts=True)
            for size in found[np.argsort(-counts, kind="stable")][:_MAX_GROUPS].tolist():
                rows = np.flatnonzero(sizes == size)
                if len(rows) < _GROUP_MIN:
                    break
                part = self._group(data, rows, size, parts[0][1].n if parts else None)
                if part is not None:
                    parts.append(part)
        if not parts:
            return _no_block(self, data)
        rows = np.concatenate([r for r, _ in parts])
        block = parts[0][1] if len(parts) == 1 else RecordBlock.concat([b for _, b in parts])
        block.values.flags.writeable = False  # as decode()'s views of the message bytes
        return Decoded(block, rows, _each(self, data, skip=rows))

    def _group(
        self, data: Sequence[bytes], rows: np.ndarray, size: int, n: int | None
    ) -> tuple[np.ndarray, RecordBlock] | None:
        """The messages ``rows`` of ``data`` (all ``size`` bytes) that pass every check as a
        block, with their positions (of ``n`` samples each, if given), or None."""
        cfg, c = self.config, self.config.channels
        raw = np.frombuffer(b"".join([data[i] for i in rows.tolist()]), np.uint8)
        raw = raw.reshape(len(rows), size)
        head = np.ascontiguousarray(raw[:, :HEADER_SIZE]).view(_HEADER_DTYPE)[:, 0]
        count, dlen = head["n"].astype(np.int64), head["dlen"].astype(np.int64)
        flags = head["flags"]
        labelled = (flags & _FLAG_LABELS).astype(np.int64)
        units = (flags >> _UNITS_SHIFT) & 0xF
        ok = (
            (head["magic"] == MAGIC) & (head["version"] == VERSION)
            & (flags & (0xFF & ~(_FLAG_LABELS | _FLAG_UNITS)) == 0) & _UNITS_OK[units]
            & (head["channels"] == c) & (count > 0) & (count <= cfg.max_samples) & (dlen > 0)
            & np.isfinite(head["rate"]) & (head["rate"] > 0)
            & (size == HEADER_SIZE + dlen + count * (4 * c + 2 * labelled))
        )  # fmt: skip
        if ok.any():  # one layout for the group: the first good message's
            first = int(np.argmax(ok))
            d, has, n = int(dlen[first]), bool(labelled[first]), n or int(count[first])
            ok &= (dlen == d) & (labelled == has) & (count == n)
        if not ok.any():
            return None
        good = np.flatnonzero(ok)
        width = 4 * n * c
        values = raw[good, HEADER_SIZE + d : HEADER_SIZE + d + width].view("<f4")
        values = values.reshape(len(good), n, c)
        keep = np.isfinite(values).all(axis=(1, 2))
        labels = None
        if has:
            at = HEADER_SIZE + d + width
            labels = raw[good, at : at + 2 * n].view("<i2")
            keep &= labels.min(axis=1) >= UNLABELLED
        blob = raw[good, HEADER_SIZE : HEADER_SIZE + d].tobytes()
        devices = []
        for k in range(len(good)):
            try:
                devices.append(blob[k * d : (k + 1) * d].decode("utf-8"))
            except UnicodeDecodeError:
                devices.append("")
                keep[k] = False  # decode() names the problem
        if not keep.any():
            return None
        head = head[good]
        block = RecordBlock(devices, head["seq"], head["t0"], head["rate"].astype(np.float64),
                            units[good].astype(np.int64), values, labels)  # fmt: skip
        if not keep.all():
            block, good = block.take(keep), good[keep]
        return rows[good], block


_JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "device": str,
    "seq": int,
    "t0_ms": int,
    "rate_hz": (int, float),
    "samples": list,
}


def _numeric_array(name: str, items: list, dtype: str, ndim: int) -> np.ndarray:
    """A JSON list as a NumPy array of numbers, or the reason it is not one."""
    try:
        arr = np.array(items)
    except ValueError as exc:  # ragged rows
        raise DecodeError("channel_mismatch" if ndim == 2 else "bad_field_type", name) from exc
    if arr.size and arr.dtype.kind not in "iuf":
        raise DecodeError("bad_field_type", f"{name} must hold numbers only")
    if arr.ndim != ndim and arr.size:
        raise DecodeError("bad_field_type", f"{name} must be a {ndim}-D list of numbers")
    return arr.astype(dtype, copy=False)


def _json_units(text: object) -> int:
    """The JSON ``units`` field (e.g. ``"acc=m/s2"``) as a wire code; 0 when absent."""
    if text is None:
        return 0
    if not isinstance(text, str):
        raise DecodeError("bad_field_type", f"units has type {type(text).__name__}, not string")
    try:
        return declared_code(text)
    except ConfigError as exc:
        raise DecodeError("bad_value", str(exc)) from exc


class JsonCodec:
    """JSON form: one object per record (see the README for every field).

    >>> codec = JsonCodec(CodecConfig(channels=2, activities=("SIT", "WALK")))
    >>> r = codec.decode(b'{"device": "p1", "seq": 0, "t0_ms": 0, "rate_hz": 50,'
    ...                  b' "samples": [[0.1, 0.2]], "labels": ["WALK"]}')
    >>> r.device, r.labels.tolist()
    ('p1', [1])
    """

    name = "json"

    def __init__(self, config: CodecConfig | None = None) -> None:
        self.config = config or CodecConfig()

    def encode(self, record: Record) -> bytes:
        obj: dict = {
            "v": JSON_VERSION,
            "device": record.device,
            "seq": record.seq,
            "t0_ms": record.t0_ms,
            "rate_hz": record.rate_hz,
            "samples": np.asarray(record.values, dtype=np.float32).tolist(),
        }
        if record.labels is not None:
            obj["labels"] = np.asarray(record.labels).tolist()
        if record.seqs is not None:
            obj["seqs"] = np.asarray(record.seqs).tolist()
        if record.units:
            obj["units"] = declared_text(record.units)
        return json.dumps(obj, separators=(",", ":")).encode("utf-8")

    def decode(self, data: bytes) -> Record:
        cfg = self.config
        if len(data) > cfg.max_bytes:
            raise DecodeError("oversize", f"{len(data)} bytes > limit {cfg.max_bytes}")
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError("invalid_json", str(exc)) from exc
        if not isinstance(obj, dict):
            raise DecodeError("bad_field_type", "a record must be a JSON object")
        if obj.get("v", JSON_VERSION) != JSON_VERSION:
            raise DecodeError("bad_version", f"v={obj.get('v')!r}, this decoder reads 1")
        for name, kind in _JSON_FIELDS.items():
            if name not in obj:
                raise DecodeError("missing_field", name)
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise DecodeError("bad_field_type", f"{name} has type {type(value).__name__}")
        device, seq, rate_hz = obj["device"], obj["seq"], float(obj["rate_hz"])
        _check_meta(device, rate_hz)
        samples = obj["samples"]
        if not samples:
            raise DecodeError("empty_chunk", "record has no samples")
        if len(samples) > cfg.max_samples:
            raise DecodeError("oversize", f"{len(samples)} samples > limit {cfg.max_samples}")
        values = _numeric_array("samples", samples, "float32", 2)
        _check_samples(values, cfg)
        labels = self._labels(obj.get("labels"), values.shape[0])
        seqs = obj.get("seqs")
        if seqs is not None:
            if not isinstance(seqs, list):
                raise DecodeError("bad_field_type", "seqs must be a list")
            seqs = _numeric_array("seqs", seqs, "int64", 1)
        _check_seqs(seqs, seq, values.shape[0])
        units = _json_units(obj.get("units"))
        return Record(device, seq, obj["t0_ms"], rate_hz, values, labels, seqs, units)

    def decode_many(self, data: Sequence[bytes]) -> list[Record | DecodeError]:
        """:meth:`decode` of each message."""
        return self.decode_block(data).records()

    def decode_block(self, data: Sequence[bytes]) -> Decoded:
        """:meth:`decode` of each message (JSON has no block)."""
        return _no_block(self, data)

    def _labels(self, labels: object, n: int) -> np.ndarray | None:
        if labels is None:
            return None
        if not isinstance(labels, list):
            raise DecodeError("bad_field_type", "labels must be a list")
        if labels and all(isinstance(x, str) for x in labels):
            codes = {name: i for i, name in enumerate(self.config.activities)}
            unknown = sorted({x for x in labels if x not in codes})
            if unknown:
                raise DecodeError("bad_value", f"unknown activity names {unknown[:5]}")
            out = np.array([codes[x] for x in labels], dtype=np.int16)
        else:
            out = _numeric_array("labels", labels, "int16", 1)
        _check_labels(out, n)
        return out


class AutoCodec:
    """Decodes either form, told apart by the first byte; encodes as binary.

    Lets one topic carry records from binary SDKs and from JSON producers such as kcat.
    """

    name = "auto"

    def __init__(self, config: CodecConfig | None = None) -> None:
        self.config = config or CodecConfig()
        self._binary = BinaryCodec(self.config)
        self._json = JsonCodec(self.config)

    def encode(self, record: Record) -> bytes:
        return self._binary.encode(record)

    def decode(self, data: bytes) -> Record:
        if data[:2] == MAGIC:
            return self._binary.decode(data)
        if data.lstrip()[:1] in (b"{", b"["):
            return self._json.decode(data)
        if data[:1] == MAGIC[:1] or len(data) < 2:
            return self._binary.decode(data)  # says truncated or bad magic precisely
        raise DecodeError("bad_magic", f"neither binary ({MAGIC!r}) nor a JSON object")

    def decode_many(self, data: Sequence[bytes]) -> list[Record | DecodeError]:
        """:meth:`decode` of each message; the binary ones together (see BinaryCodec)."""
        return self.decode_block(data).records()

    def decode_block(self, data: Sequence[bytes]) -> Decoded:
        """:meth:`decode` of each message, the binary ones by :meth:`BinaryCodec.decode_block`."""
        binary = np.array([i for i, item in enumerate(data) if item[:2] == MAGIC], np.int64)
        if len(binary) < _BULK_MIN:
            return _no_block(self, data)
        found = self._binary.decode_block([data[i] for i in binary.tolist()])
        rows = binary[found.rows]  # none when no block was found: then all binary are others
        out = _each(self, data, skip=binary)
        for i, record in zip(binary.tolist(), found.others, strict=True):
            out[i] = record
        return Decoded(found.block, rows, out)


_CODECS = {"binary": BinaryCodec, "json": JsonCodec, "auto": AutoCodec}


def make_codec(name: CodecName, config: CodecConfig | None = None) -> Codec:
    """The codec called ``name`` ("binary", "json" or "auto")."""
    try:
        return _CODECS[name](config)
    except KeyError:
        raise ConfigError(f"unknown codec {name!r}; choose from {sorted(_CODECS)}") from None
