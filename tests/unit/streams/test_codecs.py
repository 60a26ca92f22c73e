"""Conformance suite: every codec round-trips records and rejects bad input with its reason."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from corpus import bad_input, sample_record
from streams.codecs import (
    MAGIC,
    AutoCodec,
    BinaryCodec,
    CodecConfig,
    JsonCodec,
    make_codec,
)
from streams.exceptions import DECODE_REASONS, DecodeError
from streams.record import Record

CONFIG = CodecConfig(channels=3, max_samples=64, max_bytes=16_384, activities=("SIT", "WALK"))
CODECS = {"binary": BinaryCodec(CONFIG), "json": JsonCodec(CONFIG)}
UNIT_CODES = [acc | gyro << 2 for acc in range(3) for gyro in range(3)]
BAD_UNIT_CODES = [3, 7, 12, 14, 15]  # a 2-bit field of 3


def _assert_same(a: Record, b: Record) -> None:
    assert (a.device, a.seq, a.t0_ms, a.rate_hz, a.units) == (
        b.device, b.seq, b.t0_ms, b.rate_hz, b.units)  # fmt: skip
    np.testing.assert_array_equal(a.values, b.values)
    for x, y in ((a.labels, b.labels), (a.seqs, b.seqs)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


@pytest.fixture(params=sorted(CODECS))
def codec(request):
    return CODECS[request.param]


@pytest.mark.parametrize("labels", [True, False])
@pytest.mark.parametrize("seqs", [True, False])
def test_round_trip(codec, labels, seqs):
    rec = sample_record(labels=labels, seqs=seqs, device="gerät-ü")
    out = codec.decode(codec.encode(rec))
    _assert_same(out, rec)
    assert out.values.dtype == np.float32
    np.testing.assert_array_equal(out.sequence(), rec.sequence())


def test_auto_codec_reads_both_forms(codec):
    rec = sample_record(seqs=True)
    _assert_same(AutoCodec(CONFIG).decode(codec.encode(rec)), rec)


def test_binary_decode_is_a_view_not_a_copy():
    data = BinaryCodec(CONFIG).encode(sample_record(n=4))
    out = BinaryCodec(CONFIG).decode(data)
    assert out.values.base is not None and not out.values.flags.writeable


def test_json_accepts_label_names():
    codec = JsonCodec(CONFIG)
    obj = json.loads(codec.encode(sample_record(n=2, labels=False)))
    obj["labels"] = ["WALK", "SIT"]
    assert codec.decode(json.dumps(obj).encode()).labels.tolist() == [1, 0]


@pytest.mark.parametrize("code", UNIT_CODES)
def test_units_round_trip(codec, code):
    rec = replace(sample_record(seqs=True), units=code)  # with every other flag bit
    _assert_same(codec.decode(codec.encode(rec)), rec)
    _assert_same(AutoCodec(CONFIG).decode(codec.encode(rec)), rec)
    _assert_same(AutoCodec(CONFIG).decode(AutoCodec(CONFIG).encode(rec)), rec)


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, None), (2, "acc=m/s2"), (8, "gyro=deg/s"), (5, "acc=g,gyro=rad/s")],
)
def test_json_writes_the_declared_units_only(code, text):
    data = JsonCodec(CONFIG).encode(replace(sample_record(), units=code))
    assert json.loads(data).get("units") == text
    assert (b'"units"' in data) == (text is not None)  # no field: JSON as before units


@pytest.mark.parametrize(
    ("text", "code"),
    [("acc=m/s2", 2), ("gyro=dps", 8), (" acceleration = m/s^2 , angular_rate=°/s ", 10),
     ("", 0), (None, 0)],
)  # fmt: skip
def test_json_reads_the_units_spellings_units_parse_reads(text, code):
    obj = json.loads(JsonCodec(CONFIG).encode(sample_record()))
    assert JsonCodec(CONFIG).decode(json.dumps({**obj, "units": text}).encode()).units == code


BAD_UNITS_JSON = [("acc=km/h", "bad_value"), ("magnet=uT", "bad_value"), ("acc", "bad_value"),
                  ("gyro=rad", "bad_value"), (10, "bad_field_type"),
                  (["acc=g"], "bad_field_type")]  # fmt: skip
"""JSON ``units`` values a decoder refuses, with the reason"""


def _bad_units(form: str) -> list[bytes]:
    """Messages of ``form`` whose declared units are not a wire code (binary: and one with an
    unknown flag bit)."""
    rec = sample_record(n=4)
    if form == "binary":
        unknown_flag = bytearray(CODECS["binary"].encode(rec))
        unknown_flag[3] |= 0x40
        encode = CODECS["binary"].encode
        return [encode(replace(rec, units=code)) for code in BAD_UNIT_CODES] + [bytes(unknown_flag)]
    obj = json.loads(CODECS["json"].encode(rec))
    return [json.dumps({**obj, "units": units}).encode() for units, _ in BAD_UNITS_JSON]


@pytest.mark.parametrize("code", BAD_UNIT_CODES)
def test_binary_refuses_a_units_field_of_3(code):
    data = BinaryCodec(CONFIG).encode(replace(sample_record(), units=code))
    with pytest.raises(DecodeError, match=f"units code {code}:") as err:
        BinaryCodec(CONFIG).decode(data)
    assert err.value.reason == "bad_value"


@pytest.mark.parametrize(("units", "reason"), BAD_UNITS_JSON)
def test_json_refuses_bad_units(units, reason):
    obj = json.loads(JsonCodec(CONFIG).encode(sample_record()))
    with pytest.raises(DecodeError) as err:
        JsonCodec(CONFIG).decode(json.dumps({**obj, "units": units}).encode())
    assert err.value.reason == reason, err.value


def test_encoders_refuse_units_they_cannot_write():
    with pytest.raises(ValueError, match="4 flag bits"):
        BinaryCodec(CONFIG).encode(replace(sample_record(), units=16))
    with pytest.raises(ValueError, match="units code 3"):
        JsonCodec(CONFIG).encode(replace(sample_record(), units=3))


BAD = {name: lambda reason, n=name: bad_input(n, reason, CONFIG) for name in CODECS}


# Reasons that cannot occur in a form (JSON has no magic, binary no field names) are left out.
BAD_CASES = [(n, r) for n in sorted(CODECS) for r in DECODE_REASONS if BAD[n](r) is not None]


@pytest.mark.parametrize(("name", "reason"), BAD_CASES)
def test_bad_input_rejected_with_reason(name, reason):
    with pytest.raises(DecodeError) as err:
        CODECS[name].decode(BAD[name](reason))
    assert err.value.reason == reason, err.value


def test_every_reason_is_produced_by_some_codec():
    assert {reason for _, reason in BAD_CASES} == set(DECODE_REASONS)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"H", "truncated"),
        (b"HS\x01" + b"\x00" * 10, "truncated"),
        (b"\x00\x01binary", "bad_magic"),
        (b"[1, 2]", "bad_field_type"),
        (b'{"device": tru', "invalid_json"),
    ],
)
def test_auto_codec_tells_what_is_wrong(data, reason):
    with pytest.raises(DecodeError) as err:
        AutoCodec(CONFIG).decode(data)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("samples", "reason"),
    [
        ([["a", 1, 2]], "bad_field_type"),
        ([[True, False, True]], "bad_field_type"),
        ([[1, 2, 3], [1, 2]], "channel_mismatch"),
        ([1, 2, 3], "bad_field_type"),
    ],
)
def test_json_samples_must_be_numeric_rows(samples, reason):
    good = json.loads(JsonCodec(CONFIG).encode(sample_record(labels=False)))
    good["samples"] = samples
    with pytest.raises(DecodeError) as err:
        JsonCodec(CONFIG).decode(json.dumps(good).encode())
    assert err.value.reason == reason


def test_json_bool_is_not_an_int():
    good = json.loads(JsonCodec(CONFIG).encode(sample_record()))
    good["seq"] = True
    with pytest.raises(DecodeError, match="bad_field_type"):
        JsonCodec(CONFIG).decode(json.dumps(good).encode())


def test_max_bytes_limit():
    small = CodecConfig(channels=3, max_bytes=100)
    for name in ("binary", "json"):
        with pytest.raises(DecodeError) as err:
            make_codec(name, small).decode(CODECS[name].encode(sample_record(n=20)))
        assert err.value.reason == "oversize"


def test_unknown_codec_name():
    with pytest.raises(ValueError, match="unknown codec"):
        make_codec("avro")


@pytest.mark.parametrize("name", ["binary", "json", "auto"])
def test_decode_many_equals_decode_one_at_a_time(name, monkeypatch):
    """The batch path (arrays for the common binary records) decides exactly as ``decode``:
    the same records, the same errors, in order, whatever the mix (units declared or not)."""
    codec = AutoCodec(CONFIG) if name == "auto" else CODECS[name]
    binary = codec._binary if name == "auto" else codec
    one_by_one = []
    monkeypatch.setattr(binary, "decode", lambda d, f=binary.decode: one_by_one.append(d) or f(d))
    forms = ["binary", "json"] if name == "auto" else [name]
    rng = np.random.default_rng(7)
    batch = []
    for i in range(120):
        rec = sample_record(n=[4, 4, 4, 7][i % 4], labels=i % 3 == 0, seqs=i % 11 == 0,
                            device=f"dev-{i}" if i % 13 else "gerät-ü")  # fmt: skip
        rec = replace(rec, units=UNIT_CODES[i % len(UNIT_CODES)])
        batch.append(CODECS[forms[i % len(forms)]].encode(rec))
    for form in forms:
        batch += [BAD[form](reason) for reason in DECODE_REASONS if BAD[form](reason)]
        batch += _bad_units(form)
    batch = [batch[i] for i in rng.permutation(len(batch))]
    many = codec.decode_many(batch)
    alone = set(map(id, one_by_one))
    assert len(many) == len(batch)
    if name != "json":  # most binary records went the array way
        assert len(one_by_one) < len(batch) / 2
    declared = declared_alone = 0  # binary records with units
    for data, got in zip(batch, many, strict=True):
        try:
            expected = codec.decode(data)
        except DecodeError as err:
            assert isinstance(got, DecodeError), (got, err)
            assert (got.reason, got.detail) == (err.reason, err.detail)
            continue
        assert isinstance(got, Record), got
        _assert_same(got, expected)
        if data[:2] == MAGIC and expected.units:
            declared += 1
            declared_alone += id(data) in alone
    assert sum(isinstance(r, Record) for r in many) >= 100
    if name != "json":  # ... those with units too
        assert declared >= 50 and declared_alone < declared / 2, (declared, declared_alone)
