"""Channel units: parsing, conversion factors, wire codes and detection from magnitudes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harstream import ConfigError
from models.augment import uniform_rotations
from streams.units import (
    STANDARD_GRAVITY,
    Units,
    channel_kind,
    declared_code,
    declared_text,
    detect,
)

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
ALL = [Units(a, g) for a, g in itertools.product(("g", "m/s2"), ("rad/s", "deg/s"))]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("acc=m/s^2", Units("m/s2", "rad/s")),
        ("gyro=dps", Units("g", "deg/s")),
        (" acceleration = m/s² , angular_rate=°/s ", Units("m/s2", "deg/s")),
        ("", Units()),
    ],
)
def test_parse_accepts_the_usual_spellings(text, want):
    assert Units.parse(text) == want


@pytest.mark.parametrize("text", ["acc=km/h", "magnet=uT", "acc", "gyro=rad"])
def test_parse_refuses_unknown_kinds_and_units(text):
    with pytest.raises(ConfigError):
        Units.parse(text)


def test_channel_kinds_follow_the_names():
    names = ["total_acc_x", "body_acc_y", "accel.z", "body_gyro_x", "gyroscope_z", "light", "x"]
    kinds = [channel_kind(n) for n in names]
    assert kinds == ["acceleration"] * 3 + ["angular_rate"] * 2 + [None, None]


@pytest.mark.parametrize(("a", "b"), list(itertools.product(ALL, ALL)))
def test_conversions_compose_and_round_trip(a, b):
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    there = x * b.scale_from(a, CHANNELS)
    np.testing.assert_allclose(there * a.scale_from(b, CHANNELS), x, rtol=1e-6)
    assert Units.from_code(a.code()) == a


def test_one_g_is_standard_gravity_and_180_degrees_is_pi():
    scale = Units("m/s2", "deg/s").scale_from(Units(), CHANNELS)
    np.testing.assert_allclose(scale, [STANDARD_GRAVITY] * 3 + [180 / np.pi] * 3, rtol=1e-6)


def test_an_undeclared_wire_code_keeps_the_base_units():
    base = Units("m/s2", "deg/s")
    assert Units.from_code(0, base) == base
    assert Units.from_code(Units("g", "rad/s").code() & 0b0011, base) == Units("g", "deg/s")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("acc=m/s^2", 2),
        ("gyro=dps", 8),
        (" acceleration = m/s² , angular_rate=°/s ", 10),
        ("gyro=rad/s,acc=g", 5),
        ("", 0),
    ],
)
def test_declared_code_leaves_the_kinds_not_named_undeclared(text, code):
    assert declared_code(text) == code
    assert declared_code(declared_text(code)) == code
    for base in ALL:  # what parse fills in from a base, from_code fills in too
        assert Units.from_code(code, base) == Units.parse(text, base)


@pytest.mark.parametrize("text", ["acc=km/h", "magnet=uT", "acc", "gyro=rad"])
def test_declared_code_refuses_what_parse_refuses(text):
    with pytest.raises(ConfigError):
        declared_code(text)


def test_declared_text_names_the_declared_kinds_of_every_code():
    texts = {code: declared_text(code) for code in range(16) if 3 not in (code & 3, code >> 2)}
    assert len(texts) == 9 and texts[0] == "" and texts[2] == "acc=m/s2"
    assert texts[10] == "acc=m/s2,gyro=deg/s" and texts[4] == "gyro=rad/s"
    assert all(declared_code(text) == code for code, text in texts.items())
    for bad in (3, 7, 12, 15, 16, -1):
        with pytest.raises(ConfigError, match="must each be 0"):
            declared_text(bad)


@pytest.mark.parametrize("units", ALL)
def test_detection_sees_the_units_of_a_phone_worn_any_way_up(units):
    rng = np.random.default_rng(1)
    n = 2000
    gravity = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.2, (n, 3))
    gyro = rng.normal(0, 1.0, (n, 3))  # rad/s: walking turns
    for turn in uniform_rotations(4, rng):
        x = np.c_[gravity @ turn.T, gyro @ turn.T].astype(np.float32)
        found, why = detect(x * units.scale_from(Units(), CHANNELS), CHANNELS)
        assert found == units, why


def test_no_detection_without_a_gravity_reference():
    x = np.random.default_rng(0).normal(0, 5, (100, 3)).astype(np.float32)
    found, why = detect(x, ["body_acc_x", "body_acc_y", "body_acc_z"])
    assert found == Units() and why == ""
