"""The batched NumPy recurrent runtime: many devices' hidden states, stepped together.

A worker gives each device a slot: one row of a state table holding all its states. Its
:meth:`StreamRuntime.advance` moves every device that has new samples forward in one call, one
time step at a time over all devices still active at that step: one fused GEMM per layer,
elementwise work in preallocated buffers, no per-device Python. It
reproduces the Keras stream model (``setup="stream"``) to 1e-5 for every cell type; the
conformance suite ``tests/unit/models/test_runtime.py`` checks it. Only NumPy is needed at run
time; Keras is imported to read a model.

Example::

    import numpy as np
    from models.runtime import StreamRuntime
    from models.spec import ModelMeta, ModelSpec
    from models.zoo import build_model

    spec = ModelSpec(setup="stream", cell="gru", hidden=16, next_step=True)
    channels, classes = ("ax", "ay", "az"), ("SIT", "WALK")
    meta = ModelMeta(spec, channels, classes, 50.0, (0, 0, 9.8), (1, 1, 1), window=128, stride=64)
    model = build_model(spec, meta)  # or: model, meta = models.io.load_model(path)
    runtime = StreamRuntime.from_keras(model, meta, capacity=1024)
    slots = np.array([3, 0, 7])  # one slot per device
    counts = np.array([2, 0, 5])  # new samples per device
    samples = np.zeros((7, len(meta.channels)), np.float32)  # raw, device by device
    out = runtime.advance(slots, counts, samples)
    out.probs  # (7, 2): the activity after each sample, in input order
    out.anomaly  # (7,): how far each sample is from what the model expected
    snapshot = runtime.get_state(3)  # checkpoint a device ...
    runtime.reset([3])  # ... forget it ...
    runtime.set_state(3, snapshot)  # ... and restore it
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from models.exceptions import ModelsError
from models.frame import STATE_SIZE, GravityFrame
from models.spec import CELLS, Cell, ModelMeta

if TYPE_CHECKING:
    import keras

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_EXP_SAFE = 80.0
"""exp(±80), and sums of up to 6,000 of them, are normal float32 numbers"""
_F32 = np.float32


def _f32(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=_F32)


@dataclass(frozen=True, eq=False)
class StreamWeights:
    """The parameters of a stream model as plain float32 arrays, in Keras's layout.

    ``kernels[l]`` is (inputs, gates*hidden) and ``recurrent_kernels[l]`` (hidden,
    gates*hidden), gates in Keras order (LSTM i, f, c, o; GRU z, r, h); ``biases[l]`` is
    (gates*hidden,), or (2, 3*hidden) for the GRU (input and recurrent bias, ``reset_after``).
    ``scale`` divides the centred input: ``max(sqrt(variance), epsilon)``, as Keras's
    ``Normalization`` computes it. ``next_kernel``/``next_bias`` are the optional next-step head.
    ``frame``: the model reads its channels in this gravity frame (:mod:`models.frame`); the
    normalisation, the first layer and the next-step head then see its features.
    """

    cell: Cell
    mean: np.ndarray
    scale: np.ndarray
    kernels: tuple[np.ndarray, ...]
    recurrent_kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activity_kernel: np.ndarray
    activity_bias: np.ndarray
    next_kernel: np.ndarray | None = None
    next_bias: np.ndarray | None = None
    frame: GravityFrame | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ModelsError(f"cell must be one of {CELLS}, not {self.cell!r}")
        for name in ("mean", "scale", "activity_kernel", "activity_bias"):
            object.__setattr__(self, name, _f32(getattr(self, name)))
        for name in ("kernels", "recurrent_kernels", "biases"):
            object.__setattr__(self, name, tuple(_f32(a) for a in getattr(self, name)))
        if (self.next_kernel is None) != (self.next_bias is None):
            raise ModelsError("the next-step head needs both its kernel and its bias")
        if self.next_kernel is not None:
            object.__setattr__(self, "next_kernel", _f32(self.next_kernel))
            object.__setattr__(self, "next_bias", _f32(self.next_bias))
        self._check_shapes()

    def _check_shapes(self) -> None:
        layers, c, h = self.layers, self.inputs, self.hidden
        if self.frame is not None and self.frame.width != c:
            raise ModelsError(f"the gravity frame gives {self.frame.width} inputs, not {c}")
        if not 1 <= layers == len(self.recurrent_kernels) == len(self.biases):
            raise ModelsError("need one kernel, recurrent kernel and bias per layer (>= 1)")
        if self.mean.shape != (c,) or self.scale.shape != (c,) or not (self.scale > 0).all():
            raise ModelsError("mean and scale need one value per channel, scale > 0")
        g = _GATES[self.cell] * h
        expected = {"activity_kernel": (h, self.classes), "activity_bias": (self.classes,)}
        if self.next_kernel is not None:
            expected |= {"next_kernel": (h, c), "next_bias": (c,)}
        for i in range(layers):
            expected |= {
                f"kernels[{i}]": (c if i == 0 else h, g),
                f"recurrent_kernels[{i}]": (h, g),
                f"biases[{i}]": (2, g) if self.cell == "gru" else (g,),
            }
        for name, shape in expected.items():
            field, _, index = name.partition("[")
            array = getattr(self, field)
            array = array[int(index[:-1])] if index else array
            if array.shape != shape:
                raise ModelsError(f"{self.cell} weights: {name} is {array.shape}, not {shape}")

    @property
    def inputs(self) -> int:
        """Values the first layer reads per sample: the channels, or the frame's features."""
        return self.kernels[0].shape[0]

    @property
    def channels(self) -> int:
        """Raw values per sample."""
        return self.inputs if self.frame is None else self.frame.channels

    @property
    def hidden(self) -> int:
        return self.recurrent_kernels[0].shape[0]

    @property
    def layers(self) -> int:
        return len(self.kernels)

    @property
    def classes(self) -> int:
        return self.activity_bias.shape[0]

    @classmethod
    def from_keras(cls, model: keras.Model, meta: ModelMeta) -> StreamWeights:
        """The weights of ``model``, a stream model as :func:`models.zoo.build_model` makes it
        (an ensemble's members: :func:`members_from_keras`).

        Raises :class:`ModelsError` for anything the runtime would not reproduce exactly: window
        or bidirectional models, other layers or activations, GRU ``reset_after=False``, layers
        running backwards or not returning sequences, or a model that does not match ``meta``.
        """
        members = members_from_keras(model, meta)
        if len(members) != 1:
            raise ModelsError(f"{meta.spec.name}: an ensemble, read by members_from_keras")
        return members[0]

    @classmethod
    def _from_layers(cls, meta: ModelMeta, frame, layers: list[tuple[str, object]]):
        """One model's weights from its layers, as ``(name without member prefix, layer)``."""
        import keras  # here, so that running the runtime needs only NumPy

        spec = meta.spec
        cells = {keras.layers.SimpleRNN: "rnn", keras.layers.LSTM: "lstm", keras.layers.GRU: "gru"}
        normalise, recurrent, heads = None, [], {}
        for name, layer in layers:
            if type(layer) is keras.layers.Normalization and normalise is None:
                normalise = layer
            elif type(layer) in cells and cells[type(layer)] == spec.cell:
                _check_recurrent(layer, spec.cell)
                recurrent.append(layer.get_weights())
            elif type(layer) is keras.layers.Dense and name in ("activity", "next"):
                _check_head(layer, name)
                heads[name] = layer.get_weights()
            else:
                raise ModelsError(
                    f"{spec.name}: layer {layer.name!r} ({type(layer).__name__}) is not supported "
                    "by the stream runtime"
                )
        if normalise is None or "activity" not in heads or len(recurrent) != spec.layers:
            raise ModelsError(
                f"{spec.name}: expected a normalisation, {spec.layers} {spec.cell} layer(s) and "
                "an activity head"
            )
        if ("next" in heads) != spec.next_step:
            raise ModelsError(f"{spec.name}: the next-step head does not match the spec")
        mean, scale = _normalisation(normalise, keras.config.epsilon())
        weights = cls(
            cell=spec.cell,
            mean=mean,
            scale=scale,
            kernels=tuple(w[0] for w in recurrent),
            recurrent_kernels=tuple(w[1] for w in recurrent),
            biases=tuple(w[2] for w in recurrent),
            activity_kernel=heads["activity"][0],
            activity_bias=heads["activity"][1],
            next_kernel=heads["next"][0] if spec.next_step else None,
            next_bias=heads["next"][1] if spec.next_step else None,
            frame=frame,
        )
        shape = (weights.channels, weights.hidden, weights.classes)
        if shape != (len(meta.channels), spec.hidden, len(meta.classes)):
            raise ModelsError(f"{spec.name}: channels/hidden/classes {shape} do not match the meta")
        return weights


def members_from_keras(model: keras.Model, meta: ModelMeta) -> tuple[StreamWeights, ...]:
    """The weights of ``model``'s members: one for a stream model as
    :func:`models.zoo.build_model` makes it, ``meta.spec.members`` for an ensemble of them
    (layers ``m<k>_...``, outputs averaged); see :meth:`StreamWeights.from_keras`."""
    import keras  # here, so that running the runtime needs only NumPy

    from models.layers import GravityFrameCell  # a Keras layer: here, with Keras

    spec = meta.spec
    if spec.setup != "stream" or spec.architecture != "recurrent":
        raise ModelsError(f"{spec.name}: the runtime runs unidirectional stream models only")
    frame, members = None, [[] for _ in range(spec.members)]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            continue
        if type(layer) is keras.layers.RNN and isinstance(layer.cell, GravityFrameCell):
            if frame is not None or any(members):
                raise ModelsError(f"{spec.name}: the gravity frame must come first, once")
            frame = layer.cell.frame
            continue
        if spec.members > 1 and type(layer) is keras.layers.Average:
            if layer.name not in ("activity", "next"):
                raise ModelsError(f"{spec.name}: unexpected averaging layer {layer.name!r}")
            continue
        member, name = 0, layer.name
        if spec.members > 1:
            match = re.fullmatch(r"m(\d+)_(.+)", layer.name)
            if match is None or int(match[1]) >= spec.members:
                raise ModelsError(f"{spec.name}: layer {layer.name!r} belongs to no member")
            member, name = int(match[1]), match[2]
        members[member].append((name, layer))
    if frame != meta.frame:
        raise ModelsError(f"{spec.name}: the gravity frame does not match the meta")
    return tuple(StreamWeights._from_layers(meta, frame, layers) for layers in members)


def _name(activation) -> str:
    return getattr(activation, "__name__", repr(activation))


def _check_recurrent(layer, cell: str) -> None:
    checks = [
        (layer.return_sequences, "must return sequences"),
        (not layer.go_backwards, "must not run backwards"),
        (layer.use_bias, "must have a bias"),
        (_name(layer.activation) == "tanh", "must use activation tanh"),
        (cell == "rnn" or _name(layer.recurrent_activation) == "sigmoid", "must gate by sigmoid"),
        (cell != "gru" or layer.reset_after, "must have reset_after=True"),
    ]
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise ModelsError(f"layer {layer.name!r}: {', '.join(problems)}")


def _check_head(layer, name: str) -> None:
    wanted = "softmax" if name == "activity" else "linear"
    if _name(layer.activation) != wanted or not layer.use_bias:
        raise ModelsError(f"head {layer.name!r} must be a {wanted} Dense layer with a bias")


def _normalisation(layer, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` with the input normalised as ``(x - mean) / scale``, as in Keras."""
    if layer.invert or tuple(layer.axis) not in ((-1,), (2,)):
        raise ModelsError("the normalisation must be per channel (axis=-1) and not inverted")
    mean = np.asarray(layer.mean, dtype=_F32).reshape(-1)
    variance = np.asarray(layer.variance, dtype=_F32).reshape(-1)
    return mean, np.maximum(np.sqrt(variance), _F32(epsilon))


@dataclass(frozen=True, eq=False)
class StepOutput:
    """What :meth:`StreamRuntime.advance` computed: one row per input sample, in input order.

    ``probs`` (N, classes) is the activity after each sample. With a next-step head, ``next``
    (N, inputs) predicts the sample that follows each one, in normalised units; ``anomaly``
    (N,) is the mean over channels of the squared error between each sample (normalised) and the
    prediction made for it at the device's previous sample: about 1 if the model predicted no
    better than the training mean, far more for a surprising sample, NaN for a device's first
    sample since its reset.
    """

    probs: np.ndarray
    next: np.ndarray | None = None
    anomaly: np.ndarray | None = None


class StreamRuntime:
    """The hidden states of many devices, one slot each, advanced in batches by one model, or by
    an ensemble of K models whose probabilities are averaged.

    ``weights``: one :class:`StreamWeights`, or K of the same cell, size, channels, classes and
    gravity frame (each with its own normalisation): their weights are stacked, so that every
    step of all K is one batched GEMM per layer, and a device's state holds all K. ``capacity``
    is the initial number of slots (it doubles on demand, see :meth:`ensure_capacity`);
    ``block`` is how many devices are computed together, small enough for the work buffers to
    stay in cache. Slots in one call must be distinct. Not thread-safe: the work buffers are
    shared by every call.
    """

    def __init__(
        self,
        weights: StreamWeights | Sequence[StreamWeights],
        capacity: int = 1024,
        block: int = 1024,
    ) -> None:
        if capacity < 1 or block < 1:
            raise ModelsError("capacity and block must be >= 1")
        self.members = _members(weights)
        self.weights = w = self.members[0]
        self.block = block
        k, h = len(self.members), w.hidden
        self._layout = _Layout(w, k)
        self._fused = [  # (gates, K, inputs + hidden + 1, hidden) per layer
            np.stack([_fuse(w.cell, *m) for m in layer], axis=1)
            for layer in zip(
                *(zip(m.kernels, m.recurrent_kernels, m.biases, strict=True) for m in self.members),
                strict=True,
            )
        ]
        self._head = np.stack([_head(m) for m in self.members])  # (K, hidden + 1, outputs)
        # Work buffers for `block` devices, one plane per member. Each layer reads rows [input,
        # previous h, 1] (the 1 adds the bias in the GEMM) and writes its new h into the next
        # layer's (or the head's) input. Gates are gate-major (gates, K, devices, hidden), so that
        # the elementwise work runs over contiguous memory; the head's output is (K, devices,
        # outputs), one row per device.
        self._rows = {
            "mean": np.stack([np.tile(m.mean, (block, 1)) for m in self.members]),
            "scale": np.stack([np.tile(m.scale, (block, 1)) for m in self.members]),
            "normalised": np.empty((k, block, w.inputs), _F32),
            "error": np.empty((k, block, w.inputs), _F32),
            "features": np.empty((block, w.inputs), _F32),
        }
        self._inputs = [self._ones(m.shape[2] - 1) for m in self._fused] + [self._ones(h)]
        self._gates = [np.empty(m.shape[0] * k * block * h, _F32) for m in self._fused]
        self._logits = np.empty((k, block, self._head.shape[2]), _F32)
        self._top = np.empty((k, block, 1), _F32)
        # |h| <= 1 for every cell, so |logit| <= |bias| + sum |weights|: below _EXP_SAFE, the
        # softmax needs no shift by the row's maximum (exp neither overflows nor underflows)
        reach = np.abs(self._head[:, :, : w.classes]).sum(axis=1).max()
        self._shift = bool(reach >= _EXP_SAFE)
        self._member_anomaly = np.empty((k, block), _F32)
        self._channel_mean = np.full(w.inputs, 1 / w.inputs, _F32)
        self._carry = [np.empty((k, block, h), _F32) for _ in range(self._layout.carries)]
        # every state of a device is one row of the table: one gather and one scatter per call
        self._table = np.tile(self._layout.fill, (capacity, 1))
        self._mark = np.zeros(capacity, np.intp)
        self._step_rows = np.empty((block, self._layout.width), _F32)
        self._step_state = self._layout.state(self._step_rows)

    @classmethod
    def from_keras(
        cls, model: keras.Model, meta: ModelMeta, capacity: int = 1024, block: int = 1024
    ) -> StreamRuntime:
        """A runtime for ``model``, one stream model or an ensemble of them (see
        :func:`members_from_keras`), all slots zeroed."""
        return cls(members_from_keras(model, meta), capacity=capacity, block=block)

    def __repr__(self) -> str:
        w, k = self.weights, len(self.members)
        return (
            f"StreamRuntime({w.cell} {w.layers}x{w.hidden}{f' x{k} members' if k > 1 else ''}, "
            f"channels={w.channels}, classes={w.classes}, next={self.has_next}, "
            f"capacity={self.capacity})"
        )

    @property
    def capacity(self) -> int:
        return len(self._mark)

    @property
    def has_next(self) -> bool:
        return self.weights.next_kernel is not None

    def memory_bytes(self) -> int:
        """Bytes of per-slot state held (hidden and cell states, next-step predictions, gravity
        frames)."""
        return self._table.nbytes + self._mark.nbytes

    def ensure_capacity(self, slots: int) -> None:
        """Make room for at least ``slots`` slots, keeping every state; doubles, so amortised."""
        if slots <= self.capacity:
            return
        size = max(slots, 2 * self.capacity)
        table = np.tile(self._layout.fill, (size, 1))
        table[: self.capacity] = self._table
        self._table, self._mark = table, np.zeros(size, np.intp)

    def reset(self, slots) -> None:
        """Forget the state of ``slots``: a fresh device, or one back after a gap."""
        self._table[self._slots(slots)] = self._layout.fill

    def get_states(self, slots) -> dict[str, np.ndarray]:
        """Copies of the states of ``slots``: ``h`` (and ``c`` for an LSTM) (B, K x layers,
        hidden), member by member; with a next-step head ``next`` (B, K x inputs), the last
        predictions (NaN if none); with a gravity frame ``frame`` (B, 8), its filters (zeros
        after a reset). K is 1 for one model."""
        state = self._layout.state(self._table[self._slots(slots)])
        out = {"h": _by_slot(state.h)}
        if state.c:
            out["c"] = _by_slot(state.c)
        if state.next is not None:
            out["next"] = _by_slot([state.next]).reshape(len(state.next[0]), -1)
        if state.frame is not None:
            out["frame"] = state.frame.copy()
        return out

    def set_states(self, slots, states: dict[str, np.ndarray]) -> None:
        """Restore ``slots`` from ``states`` as :meth:`get_states` gives them (``h`` in [-1, 1],
        as every cell's output is)."""
        slots = self._slots(slots)
        w, b, k = self.weights, len(slots), len(self.members)
        rows = np.empty((b, self._layout.width), _F32)
        state = self._layout.state(rows)
        expected = {"h": (b, k * w.layers, w.hidden)}
        if state.c:
            expected["c"] = (b, k * w.layers, w.hidden)
        if state.next is not None:
            expected["next"] = (b, k * w.inputs)
        if state.frame is not None:
            expected["frame"] = (b, STATE_SIZE)
        arrays = {key: np.asarray(value, _F32) for key, value in states.items()}
        shapes = {key: a.shape for key, a in arrays.items()}
        if shapes != expected:
            raise ModelsError(f"states must be {expected}, not {shapes}")
        if not (np.abs(arrays["h"]) <= 1.0).all():  # every cell's output is; softmax relies on it
            raise ModelsError("hidden states h must lie in [-1, 1]")
        for name, layers in (("h", state.h), ("c", state.c)):
            if layers:  # (B, K x L, H) member by member -> per layer (K, B, H)
                planes = arrays[name].reshape(b, k, w.layers, w.hidden).transpose(2, 1, 0, 3)
                for a, plane in zip(layers, planes, strict=True):
                    a[...] = plane
        if state.next is not None:
            state.next[...] = arrays["next"].reshape(b, k, w.inputs).transpose(1, 0, 2)
        if state.frame is not None:
            state.frame[...] = arrays["frame"]
        self._table[slots] = rows

    def get_state(self, slot: int) -> dict[str, np.ndarray]:
        """The state of one slot: :meth:`get_states` without the batch axis."""
        return {key: a[0] for key, a in self.get_states([slot]).items()}

    def set_state(self, slot: int, state: dict[str, np.ndarray]) -> None:
        """Restore one slot from :meth:`get_state`'s snapshot."""
        self.set_states([slot], {key: np.asarray(a)[None] for key, a in state.items()})

    def step(self, slots, x) -> np.ndarray:
        """Advance each of ``slots`` by its raw sample in ``x`` (B, channels); the activity
        probabilities (B, classes). The same as :meth:`advance` with counts of 1."""
        slots = self._slots(slots)
        x = self._samples(x, len(slots))
        probs = np.empty((len(slots), self.weights.classes), _F32)
        for a in range(0, len(slots), self.block):  # into the block buffers: no allocation
            b = slice(a, a + self.block)
            part = slots[b]
            np.take(self._table, part, axis=0, out=self._step_rows[: len(part)], mode="clip")
            self._block(self._step_state.rows(slice(0, len(part))), x[b], probs[b], None, None)
            self._table[part] = self._step_rows[: len(part)]
        return probs

    def advance(self, slots, counts, samples) -> StepOutput:
        """Advance ``slots[i]`` by ``counts[i]`` raw samples; ``samples`` (N, channels) holds them
        device by device, in the order of ``slots``. Outputs follow the order of ``samples``."""
        slots = self._slots(slots)
        counts = np.asarray(counts)
        if counts.shape != slots.shape or (
            counts.size and (counts.dtype.kind not in "iu" or counts.min() < 0)
        ):
            raise ModelsError("counts must be one non-negative integer per slot")
        x = self._samples(samples, int(counts.sum()))
        n, w = len(x), self.weights
        probs = np.empty((n, w.classes), _F32)
        nxt = np.empty((n, w.inputs), _F32) if self.has_next else None
        anomaly = np.empty(n, _F32) if self.has_next else None
        if n == 0:
            return StepOutput(probs, nxt, anomaly)
        # devices by count, descending: those still active at time t are a prefix, so their
        # states, gathered once into batch order, are read and written as contiguous rows
        order = np.argsort(-counts, kind="stable")
        starts = (np.cumsum(counts) - counts)[order]
        by_count = counts[order]
        active = np.searchsorted(-by_count, -np.arange(by_count[0]), side="left")
        # the samples in time-major order, so that every step reads and writes contiguous rows
        time_major = np.concatenate([starts[:k] + t for t, k in enumerate(active)])
        x, sorted_slots = x[time_major], slots[order]
        rows = self._table[sorted_slots]
        state = self._layout.state(rows)
        probs_t = np.empty_like(probs)
        nxt_t = np.empty_like(nxt) if nxt is not None else None
        anomaly_t = np.empty_like(anomaly) if anomaly is not None else None
        start = 0
        for k in active.tolist():
            part = slice(start, start + k)
            self._forward(
                state,
                k,
                x[part],
                probs_t[part],
                None if nxt_t is None else nxt_t[part],
                None if anomaly_t is None else anomaly_t[part],
            )
            start += k
        self._table[sorted_slots] = rows
        probs[time_major] = probs_t
        if nxt is not None:
            nxt[time_major] = nxt_t
            anomaly[time_major] = anomaly_t
        return StepOutput(probs, nxt, anomaly)

    def _slots(self, slots) -> np.ndarray:
        slots = np.asarray(slots)
        if slots.ndim != 1 or (slots.size and slots.dtype.kind not in "iu"):
            raise ModelsError("slots must be a 1-D integer array")
        slots = slots.astype(np.intp, copy=False)
        if slots.size == 0:
            return slots
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise ModelsError(f"slots must be in [0, {self.capacity}): call ensure_capacity")
        order = np.arange(len(slots))
        self._mark[slots] = order
        if not (self._mark[slots] == order).all():
            raise ModelsError("a slot appears twice in one call")
        return slots

    def _samples(self, x, n: int) -> np.ndarray:
        x = np.asarray(x, dtype=_F32)
        if x.shape != (n, self.weights.channels):
            raise ModelsError(f"samples must be ({n}, {self.weights.channels}), not {x.shape}")
        return x

    def _ones(self, width: int) -> np.ndarray:
        """A work buffer (K, block, ``width`` + 1): a last column of ones (the bias input)."""
        buffer = np.empty((len(self.members), self.block, width + 1), _F32)
        buffer[..., -1] = 1.0
        return buffer

    def _forward(self, state: _State, k: int, x, probs, nxt, anomaly) -> None:
        """One step of the first ``k`` devices of ``state``, ``block`` devices at a time."""
        for a in range(0, k, self.block):
            b = slice(a, min(a + self.block, k))
            self._block(
                state.rows(b),
                x[b],
                probs[b],
                None if nxt is None else nxt[b],
                None if anomaly is None else anomaly[b],
            )

    def _block(self, state: _State, x, probs, nxt, anomaly) -> None:
        """One step of at most ``block`` devices (``state``: their rows), in the preallocated
        buffers."""
        w, b, h, k = self.weights, len(x), self.weights.hidden, len(self.members)
        rows = {key: a[..., :b, :] for key, a in self._rows.items()}
        if w.frame is not None:
            w.frame.step(x, state.frame, rows["features"])
            x = rows["features"]
        normalised = rows["normalised"]
        np.subtract(x, rows["mean"], out=normalised)
        np.divide(normalised, rows["scale"], out=normalised)
        self._inputs[0][:, :b, : w.inputs] = normalised
        if anomaly is not None:
            error = rows["error"]
            np.subtract(state.next, normalised, out=error)
            np.square(error, out=error)
            if k == 1:
                np.matmul(error[0], self._channel_mean, out=anomaly)
            else:
                member = self._member_anomaly[:, :b]
                np.matmul(error, self._channel_mean, out=member)
                np.mean(member, axis=0, out=anomaly)
        for layer, fused in enumerate(self._fused):
            inputs = self._inputs[layer][:, :b]
            gates = self._gates[layer][: len(fused) * k * b * h].reshape(len(fused), k, b, h)
            width = inputs.shape[2] - 1 - h
            previous = inputs[..., width : width + h]
            new = self._inputs[layer + 1][:, :b, :h]
            previous[...] = state.h[layer]
            np.matmul(inputs, fused, out=gates)
            if w.cell == "rnn":
                np.tanh(gates[0], out=new)
            elif w.cell == "lstm":
                carry = self._carry[layer][:, :b]  # contiguous, for the elementwise work
                carry[...] = state.c[layer]
                _lstm(gates, carry, new)
                state.c[layer][...] = carry
            else:
                _gru(gates, previous, new)
            state.h[layer][...] = new
        logits = self._logits[:, :b]
        np.matmul(self._inputs[-1][:, :b], self._head, out=logits)
        activity, top = logits[..., : w.classes], self._top[:, :b]
        _softmax(activity, top, self._shift)
        if k == 1:
            probs[...] = activity[0]
        else:  # the ensemble's: the mean of its members'
            np.sum(activity, axis=0, out=probs)
            np.multiply(probs, 1 / k, out=probs)
        if state.next is not None:
            predicted = logits[..., w.classes :]
            state.next[...] = predicted
            if nxt is not None:
                np.mean(predicted, axis=0, out=nxt)


class _Layout:
    """Where each part of a device's state sits in its row of the state table: each layer's h
    (K, hidden), then each layer's c (LSTM), then the next-step predictions (K, inputs; NaN for
    none yet), then the gravity frame's filters. ``fill`` is a reset row."""

    def __init__(self, w: StreamWeights, k: int) -> None:
        self.k, self.carries = k, w.layers if w.cell == "lstm" else 0
        sizes = [w.hidden] * (w.layers + self.carries) + [w.inputs] * (w.next_kernel is not None)
        spans, start = [], 0
        for size in sizes:  # (start, width) of each part, all K members side by side
            spans.append((start, k * size))
            start += k * size
        self.h, self.c = spans[: w.layers], spans[w.layers : w.layers + self.carries]
        self.next = spans[-1] if w.next_kernel is not None else None
        self.frame = None if w.frame is None else (start, STATE_SIZE)
        self.width = start + (0 if w.frame is None else STATE_SIZE)
        self.fill = np.zeros(self.width, _F32)
        if self.next is not None:
            self.fill[self.next[0] : self.next[0] + self.next[1]] = np.nan

    def state(self, rows: np.ndarray) -> _State:
        """``rows`` (B, width) of the table seen as a :class:`_State` (views, no copies)."""

        def plane(span):
            start, size = span
            return rows[:, start : start + size].reshape(len(rows), self.k, -1).transpose(1, 0, 2)

        return _State(
            [plane(span) for span in self.h],
            [plane(span) for span in self.c],
            None if self.next is None else plane(self.next),
            None if self.frame is None else rows[:, self.frame[0] :],
        )


class _State(NamedTuple):
    """The states of the devices of one call in batch order (rows, not slots): views of their
    rows of the state table, gathered."""

    h: list[np.ndarray]
    c: list[np.ndarray]
    next: np.ndarray | None
    frame: np.ndarray | None = None

    def rows(self, rows: slice) -> _State:
        return _State(
            [a[:, rows] for a in self.h],
            [a[:, rows] for a in self.c],
            None if self.next is None else self.next[:, rows],
            None if self.frame is None else self.frame[rows],
        )


def _softmax(logits, top, shift: bool) -> None:
    """Softmax of ``logits`` (K, B, classes) in place over its rows, first shifted by each row's
    maximum if ``shift``; ``top`` (K, B, 1) is a work buffer. Rows are short, so the maximum and
    the sum are taken class by class: far faster than a reduction along the last axis, and the
    same for a row whatever the batch (a product with ones is not: BLAS sums tails otherwise)."""
    total = top[..., 0]
    if shift:
        np.maximum(logits[..., 0], logits[..., -1], out=total)
        for j in range(1, logits.shape[2] - 1):
            np.maximum(total, logits[..., j], out=total)
        np.subtract(logits, top, out=logits)
    np.exp(logits, out=logits)
    np.copyto(total, logits[..., 0])
    for j in range(1, logits.shape[2]):
        np.add(total, logits[..., j], out=total)
    np.divide(logits, top, out=logits)


def _lstm(gates, carry, new) -> None:
    """Gates [i, f, o, c] with i, f, o pre-halved: ``sigmoid(v) = (1 + tanh(v/2)) / 2``;
    ``carry`` (the cell state rows) is updated in place. The halving of the sigmoids is
    deferred to the two sums it scales (exact: a power of two), one pass fewer."""
    np.tanh(gates, out=gates)
    np.add(gates[:3], 1.0, out=gates[:3])  # twice the sigmoids
    i, f, o, g = gates
    np.multiply(carry, f, out=carry)
    np.multiply(i, g, out=i)
    np.add(carry, i, out=carry)
    np.multiply(carry, 0.5, out=carry)
    np.tanh(carry, out=g)
    np.multiply(o, g, out=new)
    np.multiply(new, 0.5, out=new)


def _gru(gates, previous, new) -> None:
    """Gates [z, r, x_h, r_h], z and r pre-halved; ``h' = z*h + (1-z)*hh = hh + z*(h - hh)``."""
    sigmoids = gates[:2]
    np.tanh(sigmoids, out=sigmoids)
    np.multiply(sigmoids, 0.5, out=sigmoids)
    np.add(sigmoids, 0.5, out=sigmoids)
    z, r, candidate, recurrent = gates
    np.multiply(recurrent, r, out=recurrent)
    np.add(candidate, recurrent, out=candidate)
    np.tanh(candidate, out=candidate)
    np.subtract(previous, candidate, out=previous)
    np.multiply(previous, z, out=previous)
    np.add(previous, candidate, out=new)


def _fuse(cell: str, kernel, recurrent, bias) -> np.ndarray:
    """(gates, inputs + hidden + 1, hidden): ``[input, h, 1] @ fused[k]`` is gate k's input.

    Sigmoid gates come first and are pre-halved (exact in binary floating point), so that
    ``sigmoid(v) = (1 + tanh(v/2)) / 2`` takes one tanh and no overflowing ``exp``. LSTM gates
    become [i, f, o, c]; GRU gates [z, r, x_h, r_h], the reset gate multiplying
    ``r_h = h @ U_h + b_h`` after the product (``reset_after=True``).
    """
    h = recurrent.shape[0]
    if cell == "rnn":
        fused, sigmoids = np.vstack([kernel, recurrent, bias[None]]), 0
    elif cell == "lstm":
        reorder = np.r_[0 : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]
        fused, sigmoids = np.vstack([kernel, recurrent, bias[None]])[:, reorder], 3
    else:
        zeros_x, zeros_h = np.zeros((len(kernel), h)), np.zeros((h, h))
        x_bias, h_bias = bias
        fused = np.vstack(
            [
                np.hstack([kernel, zeros_x]),
                np.hstack([recurrent[:, : 2 * h], zeros_h, recurrent[:, 2 * h :]]),
                np.concatenate(
                    [x_bias[: 2 * h] + h_bias[: 2 * h], x_bias[2 * h :], h_bias[2 * h :]]
                ),
            ]
        )
        sigmoids = 2
    fused = _f32(fused.reshape(len(fused), -1, h).transpose(1, 0, 2))
    fused[:sigmoids] *= 0.5
    return fused


def _by_slot(planes: list[np.ndarray]) -> np.ndarray:
    """(B, K x len(planes), width) from planes (K, B, width), member by member."""
    k, b, width = planes[0].shape
    return np.stack(planes, axis=2).transpose(1, 0, 2, 3).reshape(b, -1, width)


def _head(w: StreamWeights) -> np.ndarray:
    """(hidden + 1, outputs): the activity head (and the next-step head), bias last."""
    kernel, bias = w.activity_kernel, w.activity_bias
    if w.next_kernel is not None:
        kernel, bias = np.hstack([kernel, w.next_kernel]), np.concatenate([bias, w.next_bias])
    return _f32(np.vstack([kernel, bias]))


def _members(weights: StreamWeights | Sequence[StreamWeights]) -> tuple[StreamWeights, ...]:
    """One model's weights, or an ensemble's, checked to stack."""
    members = (weights,) if isinstance(weights, StreamWeights) else tuple(weights)
    if not members:
        raise ModelsError("an ensemble needs at least one member")
    shape = lambda m: (m.cell, m.layers, m.hidden, m.inputs, m.classes, m.next_kernel is None)  # noqa: E731
    first = members[0]
    for m in members[1:]:
        if shape(m) != shape(first) or m.frame != first.frame:
            raise ModelsError(
                "ensemble members must share cell, layers, hidden, inputs, classes, next-step "
                f"head and gravity frame: {shape(first)} and {shape(m)}"
            )
    return members
