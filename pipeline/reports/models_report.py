"""The model report: real trainings on the real datasets, written to ``docs/models.md`` and, every
figure machine-readable, ``docs/models.json``.

The report is made of sections, each trained and measured on its own and kept in
``docs/models.json`` with a fingerprint of what it trains. ``make report-models`` runs only the
sections that are missing or whose fingerprint changed (``SECTIONS=phones`` names sections to run
again), then writes the page from every section's kept results: a report never has to run whole
in one sitting (all of it takes several hours on 2 CPU cores). The HAPT sections keep their rows
as each labeller is scored (:class:`Progress`), so one of them can be measured over several
sittings too. ``--jobs N`` trains the HAPT labellers a run needs in N processes side by side
first; ``--kept-only`` trains no labeller: it scores those kept so far (and trains the refiners
of ``hapt_refine`` over the ensembles kept). ``--quick`` runs the same code with tiny
trainings, to check the script itself in minutes; its numbers mean nothing and go to a page and
a file of their own.

1. UCI HAR, official user split, 9 raw channels: many-to-one LSTM and GRU against SimpleRNN,
   BiLSTM and memory-less baselines (MLP over the flattened window, 1-D CNN).
2. UCI HAPT continuous recordings, official user split, 12 classes: a many-to-many LSTM trained
   with truncated BPTT and carried state, against the same LSTM trained on fixed windows only,
   three seeds each; both run over whole test recordings, and over all of them back to back as
   one stream of hours, with their state never reset.
3. Vanishing gradients: ||dLoss/dx_t|| against distance back in time for the HAR SimpleRNN,
   LSTM and GRU (measured with section 1, whose models it needs).
4. Real phones: the HAPT test users as phones export them (about 100 Hz, jittered and bursty
   timestamps, m/s², every recording turned to a random orientation), read and resampled by the
   generic reader with its defaults, against the upright 50 Hz recordings: stream LSTM and GRU,
   with and without rotation augmentation.
5. Anomaly detection: sensor faults (stuck, spikes, drift, sign flip, axis swap, dropout, noise,
   sampling glitch) injected at known places into the HAPT test users' recordings; ROC-AUC and
   recall at 1 % false positives per fault for the seq2seq autoencoder and forecasters (with and
   without attention), a stream model's next-sample head, an MLP autoencoder and a z-score.

Every row names the ``harstream train`` command that trains its model the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

import models.hmm
import models.refine
import models.smoothing
from models.anomaly import next_step_scores, zscore_scores
from models.diagnostics import input_gradient_norms, plot_attention, plot_gradient_norms
from models.evaluation import evaluate, plot_confusion, recall_at_fpr, roc_auc
from models.faults import (
    DRIFT_STD,
    FAULTS,
    GLITCH_EVERY,
    LENGTHS,
    NOISE_STD,
    SPIKE_STD,
    faulty_windows,
    inject,
)
from models.hmm import Grammar
from models.io import load_model, save_model
from models.plotting import png_axes
from models.refine import RefineConfig, RefinerData, fit_refiner, refined, refiner_inputs
from models.refiner_runtime import log_inputs
from models.seq2seq import anomaly_scores
from models.smoothing import as_served, lag_samples
from models.spec import ModelSpec
from models.training import (
    TrainConfig,
    TrainResult,
    fit_decoding,
    masked_accuracy,
    predict_streams,
    split_recordings,
    train_seq2seq_model,
    train_stream_model,
    train_window_model,
)
from models.windowing import fit_normalisation, windows_from_recordings
from models.zoo import build_model
from pipeline.cli.progress import stderr
from pipeline.exceptions import PipelineError
from pipeline.reports.phone_export import PhoneExport, export
from pipeline.trainer.modelling import attention_examples, evaluate_model, recordings
from streams.datasets import (
    HAPT_TEST_USERS,
    load_generic,
    load_uci_hapt,
    load_uci_har,
    split_by_user,
)
from streams.datasets.generic import write_columns

REPO = Path(__file__).resolve().parents[2]
COMMAND = "make report-models"

HAR_MODELS: dict[str, ModelSpec] = {
    "LSTM": ModelSpec(cell="lstm", layers=2, hidden=64, dropout=0.3),
    "GRU": ModelSpec(cell="gru", layers=2, hidden=64, dropout=0.3),
    "SimpleRNN": ModelSpec(cell="rnn", layers=2, hidden=64, dropout=0.3),
    "BiLSTM": ModelSpec(architecture="birnn", cell="lstm", layers=1, hidden=64, dropout=0.3),
    "MLP (no memory)": ModelSpec(architecture="mlp", layers=2, hidden=256, dropout=0.3),
    "1-D CNN (no memory)": ModelSpec(architecture="cnn", layers=3, hidden=64, dropout=0.3),
}
HAR_ATTENTION: dict[str, ModelSpec] = {
    "LSTM + attention": ModelSpec(architecture="attention", cell="lstm", layers=2, hidden=64,
                                  dropout=0.3),
    "GRU + attention": ModelSpec(architecture="attention", cell="gru", layers=2, hidden=64,
                                 dropout=0.3),
}  # fmt: skip
"""window classifiers that pool their hidden states with learned attention weights instead of
taking the last one: a section of their own (``har_attention``) beside HAR_MODELS, with the
same windows, budget, rotation and seed"""
ROTATE_DEG = 20.0
"""every HAR model also trains and validates on copies of its windows turned by up to this
(training: a fresh rotation every epoch)"""
HAR_ENSEMBLES: dict[str, ModelSpec] = {
    "GRU, ensemble of 3": replace(HAR_MODELS["GRU"], members=3),
}
"""ensembles of a HAR model (seeds 0, 1, 2 on the same training users, probabilities averaged):
a section of their own (``har_ensemble``), trained and scored as HAR_MODELS"""
HAR_TARGET = 0.975
"""what the LSTM and GRU rows aim at (ensembles of them count, labelled as such)"""
UNROTATED = "LSTM, no rotation"
"""the same LSTM trained without the rotated copies, to show what they buy"""
ANCHORS = "Published anchors on the same split: 2-layer LSTM 91.7 %, CNN about 94.8 %, SVM on 561 hand-made features about 96 %"  # noqa: E501


@dataclass(frozen=True)
class Budget:
    """Training effort: full for the report, tiny for ``--quick``."""

    epochs: int = 20
    max_minutes: float = 14.0
    train_stride: int = 16
    hapt_epochs: int = 80
    quick: bool = False


FULL = Budget()
QUICK = Budget(epochs=2, max_minutes=1, hapt_epochs=1, quick=True)


def _config(budget: Budget, **kw) -> TrainConfig:
    base = TrainConfig(  # no early stop: a slow LSTM leaves its sit/stand plateau late
        epochs=budget.epochs,
        patience=budget.epochs,
        batch_size=128,
        max_seconds=budget.max_minutes * 60,
    )
    return replace(base, **kw)


def train_command(spec: ModelSpec, cfg: TrainConfig, dataset: str, **flags: object) -> str:
    """The ``harstream train`` command that trains ``spec`` with ``cfg`` on ``dataset`` (plus
    ``flags``: ``window=128`` -> ``--window 128``)."""
    parts = [f"harstream train --dataset {dataset} --setup {spec.setup}",
             f"--architecture {spec.architecture} --cell {spec.cell} --layers {spec.layers}",
             f"--hidden {spec.hidden} --dropout {spec.dropout:g}",
             f"--epochs {cfg.epochs} --patience {cfg.patience} --batch-size {cfg.batch_size}",
             f"--seed {cfg.seed}"]  # fmt: skip
    if cfg.max_seconds:
        parts.append(f"--max-minutes {cfg.max_seconds / 60:g}")
    if cfg.rotate_deg:
        parts.append(f"--rotate-deg {cfg.rotate_deg:g}")
    parts.append(f"--frame {spec.frame}")  # said always: the CLI's default depends on the data
    if spec.setup == "stream":
        parts.append(f"--tbptt-steps {cfg.tbptt_steps} --chunks-per-lane {cfg.chunks_per_lane} "
                     f"--lanes {cfg.lanes}")  # fmt: skip
        parts.append(f"--average-epochs {cfg.average_epochs}")  # said always: the recipe's is 40
    if spec.next_step:
        parts.append("--next-step")
    if spec.members > 1:
        parts.append(f"--members {spec.members}")
    if spec.setup == "seq2seq":
        parts.append(f"--task {spec.task}")
        parts += [f"--horizon {spec.horizon}"] if spec.task == "forecast" else []
        parts += ["--attention"] if spec.attention else []
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in flags.items()]
    return " ".join(parts)


def har_section(budget: Budget, out: Path, saved: Path) -> tuple[list[dict], dict]:
    """Train every HAR model on windows of the training users; score the official test windows."""
    runs = [(label, spec, ROTATE_DEG) for label, spec in HAR_MODELS.items()]
    runs.append((UNROTATED, HAR_MODELS["LSTM"], 0.0))
    return _har_rows(budget, runs, out, saved)


def har_attention_section(budget: Budget, out: Path, saved: Path) -> list[dict]:
    """The attention classifiers, trained and scored as :func:`har_section`'s models are; the
    attention weights of the first over a few test windows (``har-attention.png``)."""
    runs = [(label, spec, ROTATE_DEG) for label, spec in HAR_ATTENTION.items()]
    rows, models = _har_rows(budget, runs, out, saved)
    model, X, y, meta = models[next(iter(HAR_ATTENTION))]
    predicted = model.predict(X, batch_size=512, verbose=0).argmax(-1)
    a = attention_examples(model, meta, X, y, predicted)
    plot_attention(a.windows, a.weights, out / "har-attention.png", a.channels, a.titles)
    return rows


def har_ensemble_section(budget: Budget, out: Path, saved: Path) -> list[dict]:
    """The ensembles, trained and scored as :func:`har_section`'s models are."""
    runs = [(label, spec, ROTATE_DEG) for label, spec in HAR_ENSEMBLES.items()]
    return _har_rows(budget, runs, out, saved)[0]


def _har_rows(budget: Budget, runs, out: Path, saved: Path) -> tuple[list[dict], dict]:
    """Train each ``(label, spec, rotate_deg)`` of ``runs`` on windows of the HAR training
    users; score it on the official test windows: its row, and (model, X_test, y_test, meta)."""
    har = load_uci_har()
    train = har.streams("train")
    recs, users = recordings(train)
    # windows every `train_stride` samples of the stitched training streams: the official
    # windows (stride 64) plus shifted ones, labelled by their last sample
    X, y, g = windows_from_recordings(recs, 128, budget.train_stride, users)
    X_test, y_test = har.X_test, har.y_test.astype(np.int64)
    if budget.quick:
        X, y, g = X[::20], y[::20], g[::20]
        X_test, y_test = X_test[::10], y_test[::10]
    rows, models = [], {}
    for label, spec, rotate_deg in runs:
        stderr.print(f"[bold]HAR[/bold] {label} ({spec.name}) on {len(X):,} windows")
        cfg = _config(budget, rotate_deg=rotate_deg)
        result = train_window_model(
            spec, X, y, g, channels=har.channels, classes=har.activities, rate_hz=50.0,
            stride=64, config=cfg,
            on_epoch=lambda e, n, logs: stderr.print(f"  epoch {e}/{n} {logs}"),
            provenance={"dataset": "uci_har", "report": COMMAND},
        )  # fmt: skip
        probs = result.model.predict(X_test, batch_size=512, verbose=0)
        ev = evaluate(y_test, probs.argmax(-1), har.activities)
        name = f"har-{spec.name}" + ("" if rotate_deg else "-unrotated")
        plot_confusion(ev, out / f"{name}.png", f"UCI HAR test users: {label}")
        save_model(result.model, result.meta, saved / f"{name}.keras")
        rows.append(
            {
                "model": label,
                "spec": spec.name,
                "file": name,
                "params": result.model.count_params(),
                "accuracy": ev.accuracy,
                "macro_f1": ev.macro_f1,
                "epochs": len(result.history.get("loss", [])),
                "train_minutes": result.seconds / 60,
                "command": train_command(
                    spec, cfg, "uci_har", window=128, stride=64, train_stride=budget.train_stride
                ),  # fmt: skip
            }
        )
        models[label] = (result.model, X_test, y_test, result.meta)
        stderr.print(f"  → test accuracy {ev.accuracy:.4f}, macro-F1 {ev.macro_f1:.4f}")
    return rows, models


HAPT_SEEDS = (0, 1, 2)
"""every HAPT variant trains once per seed: one run each flipped the comparison's sign"""


HAPT_STREAM = ModelSpec(setup="stream", cell="lstm", layers=2, hidden=128, dropout=0.2)
"""the HAPT sequence labeller (2 layers of 64 until 2026-12-01: 128 scored higher on all three
seeds, causal and delayed; ``causal_2x64`` keeps the smaller one's figures)"""
TBPTT_LABEL = "truncated BPTT, state carried over 16 chunks of 128"
HAPT_ROTATE_DEG = 20.0
"""the stream recipe's rotation augmentation: each training segment turned by up to this many
degrees, a waist-worn phone sitting at another angle (seed 0, 2026-11-30: macro-F1 0.802 to
0.829, accuracy 88.2 % to 92.2 %)"""
HAPT_MINUTES = 45.0
"""time cap of one HAPT labeller (an ensemble's member): every one should run the recipe's 80
epochs to the end, also beside another training (2 layers of 128: about 20 to 30 minutes
then)"""


def _hapt_recipe(budget: Budget) -> dict:
    """The stream recipe's TrainConfig fields beyond :func:`_hapt_model`'s (truncated BPTT)."""
    minutes = budget.max_minutes if budget.quick else HAPT_MINUTES
    return dict(rotate_deg=HAPT_ROTATE_DEG, max_seconds=minutes * 60)


def _hapt_split(budget: Budget):
    """HAPT, its training and test users (a few of each with ``--quick``)."""
    hapt = load_uci_hapt()
    train, test = split_by_user(hapt, HAPT_TEST_USERS)
    if budget.quick:
        train = replace(train, streams=train.streams[:6])
        test = replace(test, streams=test.streams[:2])
    return hapt, train, test


class Unscored(PipelineError):
    """A labeller this run does not score: not kept, and not this run's to train
    (``--kept-only``, or another process's with ``--jobs``), or kept or trained by a process
    that only trains (``--jobs``: the main run scores it)."""


@dataclass(frozen=True)
class Trained:
    """Trained HAPT labellers (phones too) kept one by one under ``root``, named by what they
    train, so that sections training the same model (hapt and hapt_decoding) share it and a run
    cut short resumes; one kept before ``since`` is trained again (its section was named with
    --only). ``trains``: the names of the labellers this run may train (None: any, empty:
    none); another one not kept raises :class:`Unscored`, its name and training listed in
    ``missing``. ``only_trains``: a training process of ``--jobs``, which scores nothing (a
    labeller kept or just trained raises :class:`Unscored`)."""

    root: Path
    since: float = 0.0
    trains: frozenset[str] | None = None
    only_trains: bool = False
    missing: dict[str, str] = field(default_factory=dict, compare=False)

    def get(self, what: str) -> TrainResult | None:
        path = self._path(what)
        facts = path.with_suffix(".json")
        if facts.is_file() and path.is_file() and facts.stat().st_mtime >= self.since:
            if self.only_trains:
                raise Unscored(f"{path.stem}: kept")
            stderr.print(f"  kept from {path}")
            return TrainResult(*load_model(path), **json.loads(facts.read_text()))
        if self.trains is not None and path.stem not in self.trains:
            self.missing[path.stem] = what
            raise Unscored(f"{path.stem}: not trained yet")
        return None

    def put(self, what: str, result: TrainResult) -> None:
        path = self._path(what)
        save_model(result.model, result.meta, path)
        facts = {
            "history": result.history,
            "seconds": result.seconds,
            "train_users": result.train_users,
            "validation_users": result.validation_users,
        }
        path.with_suffix(".json").write_text(json.dumps(facts, default=int))  # written last
        if self.only_trains:
            raise Unscored(f"{path.stem}: trained, to be scored by the main run")

    def _path(self, what: str) -> Path:
        return self.root / f"hapt-{hashlib.sha256(what.encode()).hexdigest()[:12]}.keras"


@dataclass
class Progress:
    """A section's rows scored so far by today's code, kept in models.json (``_partial``) as
    each labeller is scored, so that a run cut short, or a section longer than one sitting, goes
    on where it stopped; ``save`` writes the file."""

    rows: list[dict] = field(default_factory=list)
    save: Callable[[], None] = lambda: None

    def kept(self, **unit) -> list[dict]:
        """The rows kept for a unit of work (``seed=``, and ``training=`` in ``hapt``)."""
        rows = [r for r in self.rows if all(r.get(k) == v for k, v in unit.items())]
        if rows:
            stderr.print(f"  {len(rows)} rows kept, scored before: {unit}")
        return rows

    def keep(self, rows: list[dict]) -> list[dict]:
        """Keep (and save) the rows of a unit just scored; the rows."""
        self.rows.extend(rows)
        self.save()
        return rows


def _hapt_model(budget: Budget, trained: Trained, hapt, recs, users, seed: int, label: str,
                spec: ModelSpec = HAPT_STREAM, dataset: str = "uci_hapt", **kw):  # fmt: skip
    """The HAPT sequence labeller (``spec``) trained on ``recs`` of ``hapt`` (its channels and
    activities; ``dataset``: its name in the provenance) with ``seed`` and the stream recipe
    (``kw``: more TrainConfig, ``chunks_per_lane`` at least), or the one ``trained`` keeps: the
    TrainResult and its config."""
    cfg = _config(budget, epochs=budget.hapt_epochs, patience=budget.hapt_epochs,
                  average_epochs=budget.hapt_epochs // 2, tbptt_steps=128, lanes=32, seed=seed,
                  **kw)  # fmt: skip
    what = repr((spec, cfg, label, budget))
    if (result := trained.get(what)) is None:
        result = train_stream_model(
            spec, recs, users, channels=hapt.channels, classes=hapt.activities,
            rate_hz=50.0, config=cfg,
            on_epoch=lambda e, n, logs: stderr.print(f"  epoch {e}/{n} {logs}"),
            provenance={"dataset": dataset, "report": COMMAND, "variant": label},
        )  # fmt: skip
        trained.put(what, result)
    return result, cfg


def hapt_section(budget: Budget, out: Path, saved: Path, trained: Trained,
                 progress: Progress) -> list[dict]:  # fmt: skip
    """Truncated BPTT with carried state against fixed-window training, on whole recordings
    and on all test recordings played back to back as one stream, for several seeds (those
    ``progress`` keeps are not measured again)."""
    hapt, train, test = _hapt_split(budget)
    recs, users = recordings(train)
    test_recs, _ = recordings(test)
    # every test recording back to back: one stream of hours, its state never reset
    long_values = np.concatenate([v for v, _ in test_recs])
    long_labels = np.concatenate([y for _, y in test_recs])
    spec = HAPT_STREAM
    variants = {
        TBPTT_LABEL: dict(chunks_per_lane=16),
        "fixed 128-sample windows (state reset each window)": dict(chunks_per_lane=1),
    }
    rows = []
    for label, kw in variants.items():
        name = "tbptt" if kw["chunks_per_lane"] > 1 else "windows"
        for seed in HAPT_SEEDS[: 1 if budget.quick else None]:
            stderr.print(f"[bold]HAPT[/bold] {label}, seed {seed}")
            if kept := progress.kept(training=label, seed=seed):
                rows += kept
                continue
            try:
                result, cfg = _hapt_model(budget, trained, hapt, recs, users, seed, label, **kw,
                                          **_hapt_recipe(budget))  # fmt: skip
            except Unscored as e:
                stderr.print(f"  not scored here: {e}")
                continue
            run = evaluate_model(result.model, result.meta, test)
            (long_probs,) = predict_streams(result.model, [long_values])
            if seed == HAPT_SEEDS[0]:
                title = f"UCI HAPT test users: {label}"
                plot_confusion(run.evaluation, out / f"hapt-{name}.png", title)
                save_model(result.model, result.meta, saved / f"hapt-{name}.keras")
            row = {
                "training": label,
                "variant": name,
                "spec": spec.name,
                "seed": seed,
                "accuracy": run.evaluation.accuracy,
                "macro_f1": run.evaluation.macro_f1,
                "thirds": run.thirds,
                "long_hours": len(long_values) / 50.0 / 3600,
                "long_accuracy": masked_accuracy([long_probs], [long_labels]),
                "long_thirds": _thirds_accuracy(long_probs, long_labels),
                "epochs": len(result.history["loss"]),
                "train_minutes": result.seconds / 60,
                "command": train_command(spec, cfg, "uci_hapt"),
            }
            rows += progress.keep([row])
            stderr.print(f"  → {row}")
    return rows


HAPT_DELAYS_MS = (500, 1000, 2000)
"""the label delays (``[worker] delay_ms``) the report measures"""


def hapt_decoding_section(budget: Budget, out: Path, trained: Trained,
                          progress: Progress) -> list[dict]:  # fmt: skip
    """Each seed's truncated-BPTT labeller of :func:`hapt_section`, trained again, scored per
    annotated sample over the test users' whole recordings as it labels them (``causal``),
    decoded by its HMM (``causal_hmm``: transitions from the training users' labels, the
    temperature that did best on its validation users; :mod:`models.hmm`), causally both, and
    as a worker with ``delay_ms`` labels them (``delay_<ms>ms``)."""
    rows = _decoding_rows(budget, trained, HAPT_STREAM, ("causal", "causal_hmm", ""),
                          HAPT_SEEDS[: 1 if budget.quick else None], progress)  # fmt: skip
    if rows:  # none while its labellers are not trained yet
        _plot_delays(rows, out / "hapt-delay.png")
    return rows


def _plot_delays(rows: list[dict], path: Path) -> None:
    """Macro-F1 against the label delay, a line per seed as served (solid) and with the centred
    mean (dashed; at 0: the ``causal`` labels)."""
    with png_axes(path, (6, 3.2)) as ax:
        for seed in dict.fromkeys(r["seed"] for r in rows):
            for mean in (False, True):
                mine = [r for r in rows if r["seed"] == seed and (r["variant"] == "causal" or (
                    "delay_ms" in r and r["variant"].endswith("_mean") == mean))]  # fmt: skip
                ax.plot([r.get("delay_ms", 0) / 1000 for r in mine],
                        [r["macro_f1"] for r in mine], marker="o", linestyle="--" if mean else "-",
                        color=f"C{seed % 10}",
                        label=f"seed {seed}" + (", centred mean" if mean else ""))  # fmt: skip
        ax.set_xlabel("label delay (s)")
        ax.set_ylabel("macro-F1, test users")
        ax.grid(alpha=0.3)
        ax.legend()


HAPT_ENSEMBLE = replace(HAPT_STREAM, members=3)
"""the HAPT labeller as an ensemble of 3 (seeds s, s + 1, s + 2 on the training users of s)"""
HAPT_ENSEMBLE_SEEDS = (0, 3, 6)
"""the ensembles' seeds s: three ensembles, no member seed shared (0-2, 3-5, 6-8)"""


def hapt_ensemble_section(budget: Budget, trained: Trained, progress: Progress) -> list[dict]:
    """The labeller as an ensemble (:data:`HAPT_ENSEMBLE`, one per
    :data:`HAPT_ENSEMBLE_SEEDS`), scored as in :func:`hapt_decoding_section`: its own labels
    (``ensemble3``), HMM-decoded (``ensemble3_hmm``) and delayed (``ensemble3_delay_<ms>ms``)."""
    spec = replace(HAPT_ENSEMBLE, members=2) if budget.quick else HAPT_ENSEMBLE
    return _decoding_rows(budget, trained, spec, ("ensemble3", "ensemble3_hmm", "ensemble3_"),
                          HAPT_ENSEMBLE_SEEDS[: 1 if budget.quick else None],
                          progress)  # fmt: skip


def _decoding_rows(budget: Budget, trained: Trained, spec: ModelSpec, names: tuple[str, str, str],
                   seeds, progress: Progress) -> list[dict]:  # fmt: skip
    """Per seed, the labeller ``spec`` scored per annotated sample over the test users' whole
    recordings: its own labels (variant ``names[0]``), decoded by its HMM (``names[1]``), and
    what a worker serving it emits with each of :data:`HAPT_DELAYS_MS` (variants
    ``names[2] + "delay_<ms>ms"``: the fixed-lag HMM smoother where its validation users chose
    it, else decoded where they turned decoding on and the centred mean over the delay on both
    sides, :mod:`models.smoothing`), and the centred mean alone (``..._mean``). The seeds
    ``progress`` keeps are not scored again."""
    hapt, train, test = _hapt_split(budget)
    recs, users = recordings(train)
    test_recs, _ = recordings(test)
    y = np.concatenate([y for _, y in test_recs])
    counts = [len(v) for v, _ in test_recs]
    rows = []
    for seed in seeds:
        stderr.print(f"[bold]HAPT {' and '.join(names)}[/bold] seed {seed}")
        if kept := progress.kept(seed=seed):
            rows += kept
            continue
        if (labeller := _labeller(budget, trained, hapt, recs, users, seed, spec)) is None:
            continue
        result, cfg = labeller
        probs = np.concatenate(predict_streams(result.model, [v for v, _ in test_recs]))
        grammar = _refitted(result, cfg, recs, users, hapt.activities)
        decoded = grammar.decoder(len(counts)).filter(np.arange(len(counts)), counts, probs)
        common = {"seed": seed, "spec": spec.name, "epochs": len(result.history["loss"]),
                  "train_minutes": result.seconds / 60, "members": spec.members,
                  "command": train_command(spec, cfg, "uci_hapt")}  # fmt: skip
        mine = []
        for variant, p in zip(names[:2], (probs, decoded), strict=True):
            ev = evaluate(y, p.argmax(-1), hapt.activities)
            mine.append({"variant": variant, "accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
                         **common})  # fmt: skip
        mine[-1] |= {"temperature": grammar.temperature, "enabled": grammar.enabled,
                     "validation_macro_f1": list(grammar.validation)}  # fmt: skip
        own = np.split(probs, np.cumsum(counts)[:-1])
        for ms in HAPT_DELAYS_MS:  # as served, and the centred mean it beat (or is)
            for suffix, g in (("", grammar), ("_mean", replace(grammar, lags=()))):
                labels = np.concatenate(as_served(own, g, ms)).argmax(-1)
                ev = evaluate(y, labels, hapt.activities)
                t = g.lag_temperature(ms)
                mine.append({"variant": f"{names[2]}delay_{ms}ms{suffix}",
                             "accuracy": ev.accuracy, "macro_f1": ev.macro_f1, "delay_ms": ms,
                             "smoother": "mean" if t is None else "hmm", "lag_temperature": t,
                             "decoded": grammar.enabled and t is None, **common})  # fmt: skip
        rows += progress.keep(mine)
        stderr.print("\n".join(f"  → {r}" for r in mine))
    return rows


def _labeller(budget: Budget, trained: Trained, hapt, recs, users, seed: int,
              spec: ModelSpec) -> tuple[TrainResult, TrainConfig] | None:  # fmt: skip
    """The truncated-BPTT labeller ``spec`` of ``seed`` (the stream recipe), or None (saying
    why) where this run does not score it (:class:`Unscored`)."""
    try:
        return _hapt_model(budget, trained, hapt, recs, users, seed, TBPTT_LABEL, spec,
                           chunks_per_lane=16, **_hapt_recipe(budget))  # fmt: skip
    except Unscored as e:
        stderr.print(f"  not scored here: {e}")
        return None


def _refitted(result: TrainResult, cfg, recs, users, classes) -> Grammar:
    """The grammar ``result``'s training ends with today, fitted again on its own training and
    validation users (a labeller kept from before a change to models.hmm or models.smoothing
    would otherwise be decoded by the old code's grammar; its weights are what they were)."""
    train, val = split_recordings(recs, users, result.validation_users)
    return fit_decoding(result.model, [y for _, y in train], val, classes, 50.0,
                        cfg.class_weights)  # fmt: skip


HAPT_REFINE = RefineConfig()
"""how :func:`hapt_refine_section` trains each refiner"""


def hapt_refine_section(budget: Budget, trained: Trained, progress: Progress) -> list[dict]:
    """The learned delay (:mod:`models.refine`) over each ensemble of
    :func:`hapt_ensemble_section` (the same labellers), one refiner per delay of
    :data:`HAPT_DELAYS_MS` trained on the ensemble's training users' probabilities and HMM
    beliefs and chosen on its validation users; scored per annotated sample of the test users'
    whole recordings (variants ``ensemble3_refined_<ms>ms``), and averaged with what a worker
    serving the ensemble emits at that delay (``..._mixed``). Units kept: seed and delay."""
    spec = replace(HAPT_ENSEMBLE, members=2) if budget.quick else HAPT_ENSEMBLE
    config = HAPT_REFINE
    if budget.quick:
        config = replace(config, spec=replace(config.spec, hidden=8), chunk=128, warm=8, epochs=1)
    hapt, train, test = _hapt_split(budget)
    recs, users = recordings(train)
    test_recs, _ = recordings(test)
    y = np.concatenate([y for _, y in test_recs])
    rows = []
    for seed in HAPT_ENSEMBLE_SEEDS[: 1 if budget.quick else None]:
        stderr.print(f"[bold]HAPT ensemble3_refined[/bold] seed {seed}")
        delays = []
        for ms in HAPT_DELAYS_MS[-1 if budget.quick else 0 :]:
            kept = progress.kept(seed=seed, delay_ms=ms)
            rows += kept
            delays += [] if kept else [ms]
        if not delays:
            continue
        if (labeller := _labeller(budget, trained, hapt, recs, users, seed, spec)) is None:
            continue
        result, cfg = labeller
        grammar = _refitted(result, cfg, recs, users, hapt.activities)
        data = RefinerData.of(result.model, grammar,
                              *split_recordings(recs, users, result.validation_users))  # fmt: skip
        probs = predict_streams(result.model, [v for v, _ in test_recs])
        inputs = refiner_inputs(probs, grammar)
        for ms in delays:
            lag = lag_samples(ms, 50.0)
            started, say = time.time(), f"  {ms} ms, epoch"
            refiner, _, history = fit_refiner(
                data, hapt.activities, 50.0, lag, config,
                lambda e, f1, say=say: stderr.print(f"{say} {e + 1}: val {f1:.3f}"),
            )  # fmt: skip
            mine = np.concatenate(refined(refiner, inputs, lag))
            served = np.concatenate(as_served(probs, grammar, ms))  # what workers emit
            command = train_command(spec, cfg, "uci_hapt", refine_delay_ms=ms)
            common = {"delay_ms": ms, "seed": seed, "spec": spec.name, "members": spec.members,
                      "refiner": config.spec.name, "refiner_epochs": len(history["loss"]),
                      "validation_macro_f1": max(history["val_macro_f1"]),
                      "refine_minutes": (time.time() - started) / 60,
                      "command": command}  # fmt: skip
            mine_rows = []
            for suffix, p in (("", mine), ("_mixed", (mine + served) / 2)):
                ev = evaluate(y, p.argmax(-1), hapt.activities)
                mine_rows.append({"variant": f"{REFINED}{ms}ms{suffix}", "accuracy": ev.accuracy,
                                  "macro_f1": ev.macro_f1, **common})  # fmt: skip
            rows += progress.keep(mine_rows)
            stderr.print("\n".join(f"  → {r}" for r in mine_rows))
    return rows


PHONE_MODELS = {
    "LSTM": ModelSpec(setup="stream", cell="lstm", layers=2, hidden=64, dropout=0.2),
    "GRU": ModelSpec(setup="stream", cell="gru", layers=2, hidden=64, dropout=0.2),
}
PHONE_EXPORT = PhoneExport(seed=0)
PHONE_ROTATE_DEG = 180.0
"""rotation augmentation for phones worn any way up: any orientation"""
PHONE_VARIANTS = (("upright 50 Hz", False, 0.0, "device"), ("phones", True, 0.0, "device"),
                  ("phones, rotation augmentation", True, PHONE_ROTATE_DEG, "device"),
                  ("phones, gravity frame", True, 0.0, "gravity"))  # fmt: skip
"""(label, trained and tested on the phone export, rotate_deg, the model's input frame)"""
PHONE_MINUTES = 28.0
"""time cap of one phones model: the gravity frame trains about 1.4x slower per epoch than the
raw axes, and every model should run the recipe's 80 epochs to the end"""


def phones_section(budget: Budget, trained: Trained) -> list[dict]:
    """Stream models trained and tested on the phone export of every HAPT user (read with the
    generic reader's defaults: resampled to 50 Hz, converted to g) against the upright 50 Hz
    recordings, with and without rotation augmentation, on the raw axes and in the gravity
    frame; the stream recipe of the HAPT section, one seed."""
    hapt = load_uci_hapt()
    if budget.quick:
        hapt = hapt.select_users([1, 3, 2, 4])  # two training users, two test users
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phones.csv"
        write_columns(export(hapt, PHONE_EXPORT), path)
        phones = load_generic(path, activities=hapt.activities, rate_hz=50.0)
    for note in phones.notes:
        stderr.print(f"phones: {note}")
    rows = []
    for label, on_phones, rotate_deg, frame in PHONE_VARIANTS:
        for model, base in PHONE_MODELS.items():
            spec = replace(base, frame=frame)
            train, test = split_by_user(phones if on_phones else hapt, HAPT_TEST_USERS)
            if budget.quick:
                train = replace(train, streams=train.streams[:6])
                test = replace(test, streams=test.streams[:2])
            recs, users = recordings(train)
            stderr.print(f"[bold]phones[/bold] {model}, {label}")
            result, cfg = _hapt_model(
                budget, trained, phones if on_phones else hapt, recs, users, 0,
                f"phones: {label}", spec, "phones" if on_phones else "uci_hapt",
                chunks_per_lane=16, rotate_deg=rotate_deg,
                max_seconds=(budget.max_minutes if budget.quick else PHONE_MINUTES) * 60,
            )  # fmt: skip
            run = evaluate_model(result.model, result.meta, test)
            dataset = "phones.csv" if on_phones else "uci_hapt"
            rows.append({
                "model": model, "variant": label, "spec": spec.name,
                "accuracy": run.evaluation.accuracy, "macro_f1": run.evaluation.macro_f1,
                "epochs": len(result.history["loss"]), "train_minutes": result.seconds / 60,
                "command": (PHONE_COMMAND + " && " if on_phones else "")
                + train_command(spec, cfg, dataset),
            })  # fmt: skip
            stderr.print(f"  → {rows[-1]}")
    return rows


PHONE_COMMAND = "python -m pipeline.reports.phone_export --users all --out phones.csv"

ANOMALY_SPAN = 128
"""samples of every scored window (2.56 s at 50 Hz): a forecaster reads the first
``ANOMALY_SPAN - horizon`` and predicts the rest"""
ANOMALY_HORIZON = 32
ANOMALY_STRIDES = (32, 32)
"""samples between training windows, and between scored windows (--quick: 128, 64)"""
ANOMALY_SEED = 0
"""the seed of every training and of the faults' places, channels and signs"""
ANOMALY_DETECTORS: dict[str, ModelSpec | None] = {
    "seq2seq-reconstruct": ModelSpec(setup="seq2seq", task="reconstruct", hidden=64),
    "seq2seq-forecast": ModelSpec(setup="seq2seq", task="forecast", horizon=ANOMALY_HORIZON),
    "seq2seq-forecast-attention": ModelSpec(
        setup="seq2seq", task="forecast", horizon=ANOMALY_HORIZON, attention=True
    ),
    "next-step": ModelSpec(setup="stream", layers=2, hidden=64, dropout=0.2, next_step=True),
    "mlp-autoencoder": ModelSpec(
        setup="seq2seq", task="reconstruct", architecture="mlp", layers=2, hidden=64
    ),  # fmt: skip
    "zscore": None,
}
"""what each detector is (None: the z-score, no model); each scores windows of ANOMALY_SPAN"""
ZSCORE_COMMAND = "n/a (no training: the per-channel mean and std of the training users' samples)"


def anomaly_section(budget: Budget, out: Path, saved: Path) -> dict:
    """Train every detector on the HAPT training users (their labels unused, but by the
    next-step model's activity head), inject each fault into the test users' recordings, and
    score ROC-AUC and recall at 1 % false positives per detector and fault."""
    hapt = load_uci_hapt()
    train, test = split_by_user(hapt, HAPT_TEST_USERS)
    train_stride, eval_stride = ANOMALY_STRIDES
    if budget.quick:
        train = replace(train, streams=train.streams[:4])
        test = replace(test, streams=test.streams[:2])
        train_stride, eval_stride = 128, 64
    recs, users = recordings(train)
    test_values = [v for v, _ in recordings(test)[0]]
    faults = {f: faulty_windows(test_values, f, window=ANOMALY_SPAN, stride=eval_stride,
                                seed=ANOMALY_SEED) for f in FAULTS}  # fmt: skip
    common = dict(channels=hapt.channels, rate_hz=50.0,
                  on_epoch=lambda e, n, logs: stderr.print(f"  epoch {e}/{n} {logs}"),
                  provenance={"dataset": "uci_hapt", "report": COMMAND})  # fmt: skip
    rows: dict[str, dict] = {}
    for name, spec in ANOMALY_DETECTORS.items():
        stderr.print(f"[bold]anomaly[/bold] {name}")
        row: dict = {"spec": spec.name if spec else "zscore", "epochs": 0, "train_minutes": 0.0}
        if spec is None:
            mean, std = fit_normalisation(np.concatenate([v for v, _ in recs]))
            score = lambda X, mean=mean, std=std: zscore_scores(X, mean, std)  # noqa: E731
            row["command"] = ZSCORE_COMMAND
        else:
            if spec.setup == "stream":
                cfg = _config(budget, tbptt_steps=128, lanes=32, seed=ANOMALY_SEED)
                result = train_stream_model(spec, recs, users, classes=hapt.activities,
                                            config=cfg, **common)  # fmt: skip
                flags = {}
            else:
                cfg = _config(budget, patience=5, seed=ANOMALY_SEED)
                window = ANOMALY_SPAN - spec.horizon
                result = train_seq2seq_model(spec, recs, users, window=window,
                                             stride=train_stride, config=cfg, **common)  # fmt: skip
                flags = {"window": window, "stride": train_stride}
            save_model(result.model, result.meta, saved / f"anomaly-{name}.keras")
            model, meta = result.model, result.meta
            scores_of = next_step_scores if spec.next_step else anomaly_scores
            score = lambda X, model=model, meta=meta, f=scores_of: f(model, meta, X)  # noqa: E731
            row |= {"epochs": len(result.history["loss"]), "train_minutes": result.seconds / 60,
                    "command": train_command(spec, cfg, "uci_hapt", **flags)}  # fmt: skip
        for fault, (X, y) in faults.items():
            s = score(X)
            row[fault] = {"roc_auc": roc_auc(s, y), "recall_at_1pct_fpr": recall_at_fpr(s, y)}
        rows[name] = row
        stderr.print(f"  → {row}")
    windows = {f: {"windows": len(y), "faulty": int(y.sum())} for f, (_, y) in faults.items()}
    return {"anomaly": rows, "anomaly_windows": windows}


def _thirds_accuracy(probs: np.ndarray, labels: np.ndarray) -> list[float]:
    """Accuracy on the annotated samples of each third of one long stream."""
    n = len(labels)
    parts = [slice(n * k // 3, n * (k + 1) // 3) for k in range(3)]
    return [masked_accuracy([probs[p]], [labels[p]]) for p in parts]


GRADIENT_STEPS = 512
GRADIENT_DISTANCES = (0, 16, 64, 128, 256, 511)


def gradient_section(models: dict, out: Path) -> dict[str, np.ndarray]:
    """||dLoss/dx_t|| over 512-sample stretches of the stitched HAR test streams, for each
    cell at initialisation and after training (the trained weights run over a longer input)."""
    test = load_uci_har().streams("test")
    long = [s for s in test.streams if s.n >= GRADIENT_STEPS][:128]
    X = np.stack([s.values[s.n - GRADIENT_STEPS :] for s in long])
    y = np.array([s.labels[-1] for s in long], dtype=np.int64)
    curves = {}
    for label in ("SimpleRNN", "LSTM", "GRU"):
        trained, meta = models[label][0], models[label][3]
        longer = replace(meta, window=GRADIENT_STEPS)
        keras.utils.set_random_seed(0)
        fresh = build_model(meta.spec, longer)
        curves[f"{label} (initialised)"] = input_gradient_norms(fresh, X, y)
        fresh.set_weights(trained.get_weights())
        curves[f"{label} (trained)"] = input_gradient_norms(fresh, X, y)
    title = f"UCI HAR test streams: gradient of the loss w.r.t. each of {GRADIENT_STEPS} inputs"
    plot_gradient_norms(curves, out / "vanishing-gradients.png", title)
    return curves


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _signed_points(delta: float) -> str:
    """A change of a fraction in signed percentage points, one decimal (``+0.0``, never
    ``-0.0``, for a change that rounds to nothing)."""
    return f"{round(100 * delta, 1) + 0.0:+.1f} points"


def _gradient_reading(curves: dict[str, dict[str, float]]) -> str:
    """One sentence per curve: the factor by which the gradient shrinks over the stretch."""
    parts = []
    for name, c in curves.items():
        first, last = c["0"], c[str(GRADIENT_STEPS - 1)]
        ratio = last / first if first > 0 else float("nan")
        parts.append(f"- {name}: {first:.1e} at the last sample, {last:.1e} "
                     f"{GRADIENT_STEPS - 1} samples back (x {ratio:.0e}).")  # fmt: skip
    return "\n".join(parts)


def _hapt_reading(rows: list[dict]) -> str:
    """Medians over seeds of each training way, and the paired differences seed by seed."""
    by = {v: [r for r in rows if r["variant"] == v] for v in ("tbptt", "windows")}
    if not all(by.values()):
        return ""
    med = {v: {k: float(np.median([r[k] for r in rs])) for k in ("accuracy", "macro_f1",
           "long_accuracy")} for v, rs in by.items()}  # fmt: skip
    pairs = [
        f"{100 * (a['accuracy'] - b['accuracy']):+.1f}"
        for a, b in zip(by["tbptt"], by["windows"], strict=False)
    ]
    t, w = med["tbptt"], med["windows"]
    return (
        f"Medians over seeds, truncated BPTT against fixed windows: per-sample accuracy "
        f"{_pct(t['accuracy'])} against {_pct(w['accuracy'])} "
        f"({_signed_points(t['accuracy'] - w['accuracy'])}; seed by seed "
        f"{', '.join(pairs)}), macro-F1 {t['macro_f1']:.3f} against {w['macro_f1']:.3f}, back "
        f"to back {_pct(t['long_accuracy'])} against {_pct(w['long_accuracy'])}. The "
        "per-recording thirds follow the recording protocol rather than time alone: the first "
        "third of each HAPT experiment is mostly static postures and the six transitions, the "
        "middle third walking and laying, the last third stairs; compare them row by row."
    )


def _commands(rows: list[dict], name) -> list[str]:
    """The ``harstream train`` command of each row, folded away under the table."""
    lines = ["", "<details><summary>the command behind each row</summary>", ""]
    lines += [f"- {name(r)}: `{r['command']}`" for r in rows if r.get("command")]
    return lines + ["", "</details>"]


def _har_block(data: dict) -> list[str]:
    rows = list(data["uci_har"].values())
    lines = [
        "## 1. UCI HAR, many-to-one (official user split, 9 raw channels)",
        "",
        "Trained on windows of 128 samples taken every 16 samples from the stitched training "
        "streams (21 users; 20 % of them held out for early stopping), scored on the 2,947 "
        "official test windows (9 other users). Class weights, Adam with `clipnorm=1.0`, "
        f"dropout 0.3, {FULL.epochs} epochs with the learning rate decaying along a cosine to "
        f"1 % of its start (the epoch with the best accuracy on the held-out users is kept; "
        f"training stops after {FULL.max_minutes:g} minutes at the latest). Every epoch also "
        f"holds a copy of each training window with its three sensors turned by a fresh random "
        f"rotation of up to {ROTATE_DEG:g}° about a random axis, as a phone worn at another "
        f"angle would record it (`TrainConfig.rotate_deg`; the held-out users' windows are "
        f"validated with one turned copy each as well); `{UNROTATED}` is the LSTM without the "
        f"turned copies. The attention rows (section `har_attention`) pool the recurrent "
        f"layer's hidden states with learned weights instead of taking the last one. "
        f"{ANCHORS}.",
        "",
        "| model | spec | parameters | test accuracy | macro-F1 | epochs | training (min) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | `{r['spec']}` | {r['params']:,} | {_pct(r['accuracy'])} | "
            f"{r['macro_f1']:.3f} | {r['epochs']} | {r['train_minutes']:.1f} |"
        )
    lines += _commands(rows, lambda r: r["model"])
    best = max(rows, key=lambda r: r["accuracy"])
    recurrent = {r["model"]: r["accuracy"] for r in rows if r["model"] in ("LSTM", "GRU")}
    if recurrent:
        met = all(a >= 0.95 for a in recurrent.values())
        lines += [
            "",
            "Target (LSTM and GRU at 95 % or more): "
            + ("reached" if met else "**not reached** in this run")
            + " ("
            + ", ".join(f"{k} {100 * v:.2f} %" for k, v in recurrent.items())  # a near miss shows
            + ").",
        ]
    aiming = [r for r in rows if r["spec"].split("-")[1] in ("lstm", "gru")]
    if aiming:
        top = max(aiming, key=lambda r: r["accuracy"])
        lines += [
            "",
            f"Target {100 * HAR_TARGET:.1f} % for an LSTM or GRU (ensembles count, named as "
            f"such): {'reached' if top['accuracy'] >= HAR_TARGET else '**not reached**'}; the "
            f"best is {top['model']} at {_pct(top['accuracy'])}.",
        ]
    lines += ["", f"![confusion](img/{best['file']}.png)", ""]
    if any(r["spec"].startswith("window-attention") for r in rows):
        lines += [f"Where the {next(iter(HAR_ATTENTION))} model looks in a few test windows "
                  "(its attention weights over the 128 steps, beside the signal):", "",
                  "![attention](img/har-attention.png)", ""]  # fmt: skip
    return lines


def _hapt_block(data: dict) -> list[str]:
    rows = [r for name, variant in data["hapt"].items() if name in ("tbptt", "windows")
            for r in variant["per_seed"]]  # fmt: skip
    hours = rows[0]["long_hours"] if rows else 0.0
    spec = rows[0]["spec"] if rows else HAPT_STREAM.name
    lines = [
        "## 2. UCI HAPT, many-to-many over whole recordings (official user split, 12 classes)",
        "",
        f"The sequence labeller `{spec}` (layers × units), run over each whole test "
        "recording (3 to 11 "
        "minutes) with its state never reset, as a worker runs it per device. Scored per "
        "annotated sample (unannotated samples, 27 % of the data, are masked out of losses and "
        "metrics). The same model is trained two ways: truncated BPTT over chunks of 128 "
        "samples with the state carried across 16 chunks (random offsets each epoch), and on "
        "independent 128-sample windows with the state reset for each; each way with seeds "
        f"{', '.join(map(str, HAPT_SEEDS))} ({FULL.hapt_epochs} epochs, the learning-rate "
        "schedule run to its end, keeping the mean of the weights after each of the last "
        f"{FULL.hapt_epochs // 2}: weight averaging; each training segment turned by a fresh "
        f"random rotation of up to {HAPT_ROTATE_DEG:g}° every epoch; the stream recipe, see "
        "*Steadier training* below). "
        "*Back to back* plays all test recordings one after another as a single stream of "
        f"{hours:.1f} hours with the state never reset, as a worker would see a device for "
        "hours; its thirds each hold about three users' whole protocols, so unlike the "
        "per-recording thirds they are comparable: a state that drifts would show as a falling "
        "last third.",
        "",
        "| training | seed | per-sample accuracy | macro-F1 | first third | middle third "
        "| last third | back to back | its first third | its last third | epochs "
        "| training (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t, lt = r["thirds"], r["long_thirds"]
        lines.append(
            f"| {r['training']} | {r['seed']} | {_pct(r['accuracy'])} | {r['macro_f1']:.3f} | "
            f"{_pct(t[0])} | {_pct(t[1])} | {_pct(t[2])} | {_pct(r['long_accuracy'])} | "
            f"{_pct(lt[0])} | {_pct(lt[2])} | {r['epochs']} | {r['train_minutes']:.1f} |"
        )
    lines += _commands(rows, lambda r: f"{r['training']}, seed {r['seed']}")
    lines += ["", _hapt_reading(rows)]
    lines += ["", "![confusion](img/hapt-tbptt.png)", ""]
    return lines + (_decoding_block(data["hapt"]) if "causal_hmm" in data["hapt"] else [])


def _decoding_block(hapt: dict) -> list[str]:
    """The ``hapt_decoding`` section: the labeller's own labels against its HMM-decoded ones."""
    causal, decoded = hapt["causal"], hapt["causal_hmm"]
    spec = causal["per_seed"][0]["spec"]
    same = [r["spec"] for r in hapt.get("tbptt", {}).get("per_seed", [])[:1]] == [spec]
    which = "above (the same models)" if same else (
        f"`{spec}` (trained as above; the table above is its last complete run's)")  # fmt: skip
    lines = [
        "### Causal decoding with the activities' grammar (section `hapt_decoding`)",
        "",
        f"The truncated-BPTT labellers {which} label each test recording "
        "from its start, as a worker does; *causal_hmm* decodes its per-sample probabilities "
        "with an online HMM forward filter (`models/hmm.py`): transitions counted from the "
        "training users' label sequences (plus 1 each), the model's probabilities divided by "
        "the class prior they carry (uniform: the recipe trains with balanced class weights; "
        "dividing by the labels' shares instead counted the prior twice and cost about 7 "
        "points until 2026-11-30) and raised to the temperature that did best on the "
        "validation users (0.25 to 1). No look-ahead: each label uses the samples up to it. "
        "*Used by workers* "
        "says whether decoding beat the model's own labels on the validation users, which "
        "turns it on in the model's metadata.",
        "",
        "| labels | median macro-F1 | median accuracy | per seed (macro-F1) | temperature | "
        "used by workers (delays: smoother) |",
        "|---|---:|---:|---|---|---|",
    ]
    lines += [_median_row(name, hapt[name]) for name in ("causal", "causal_hmm")]
    gain = decoded["macro_f1_median"] - causal["macro_f1_median"]
    on = sum(bool(r.get("enabled")) for r in decoded["per_seed"])
    lines += _commands(causal["per_seed"], lambda r: f"seed {r['seed']}")
    lines += [
        "",
        f"Decoding changes the median macro-F1 by {_signed_points(gain)}; the "
        f"validation users turned it on for {on} of {len(decoded['per_seed'])} "
        "seeds, so workers serving the others label as the model does.",
        "",
    ]
    if "causal_best_epoch" in hapt or "causal_unrotated" in hapt:
        lines += _recipe_lines(hapt)
    if "delay_1000ms" in hapt:
        lines += _delay_lines(hapt)
    if "ensemble3" in hapt:
        lines += _ensemble_lines(hapt, causal)
    if any(name.startswith(REFINED) for name in hapt):
        lines += _refine_lines(hapt)
    if "delay_1000ms" not in hapt:
        return lines
    return lines + _smoother_lines(hapt) + _target_lines(hapt)


def _smoothers(v: dict) -> str:
    """How each seed of a delay row was smoothed: ``hmm (T)`` or ``mean`` (``–``: no delay)."""
    if "smoother" not in v["per_seed"][0]:
        return "–"
    return ", ".join("mean" if r["smoother"] == "mean" else f"hmm ({r['lag_temperature']:g})"
                     for r in v["per_seed"])  # fmt: skip


def _smoother_lines(hapt: dict) -> list[str]:
    """What serving with the fixed-lag HMM smoother where the validation users chose it
    changes against the centred mean, per delay, for single labellers and ensembles."""
    said = []
    for prefix, who in (("", "single labellers"), ("ensemble3_", "ensembles")):
        pairs = [(hapt.get(f"{prefix}delay_{ms}ms"), hapt.get(f"{prefix}delay_{ms}ms_mean"))
                 for ms in HAPT_DELAYS_MS]  # fmt: skip
        if all(a and b for a, b in pairs):
            gains = [a["macro_f1_median"] - b["macro_f1_median"] for a, b in pairs]
            said.append(f"{who} {' / '.join(_signed_points(g) for g in gains)}")
    if not said:
        return []
    delays = " / ".join(f"{ms / 1000:g}" for ms in HAPT_DELAYS_MS)
    return [f"Serving the smoother where the validation users chose it, against the centred "
            f"mean everywhere (median macro-F1, at {delays} s): {'; '.join(said)}.",
            ""]  # fmt: skip


def _median_row(name: str, v: dict) -> str:
    """A decoding table's row: ``name``'s medians, its macro-F1 per seed, and where it has
    them, its temperatures (the lag temperatures of the HMM smoother for delay rows) and
    whether workers decode (or how they smooth)."""
    seeds = v["per_seed"]
    per_seed = ", ".join(f"{r['seed']}: {r['macro_f1']:.3f}" for r in seeds)
    temps = ", ".join(f"{r['temperature']:g}" for r in seeds if "temperature" in r) or "–"
    used = ", ".join("yes" if r["enabled"] else "no" for r in seeds if "enabled" in r)
    if "delay_ms" in seeds[0]:
        temps, used = "–", _smoothers(v)
    return (f"| {name} | {v['macro_f1_median']:.3f} | {_pct(v['accuracy_median'])} | "
            f"{per_seed} | {temps} | {used or '–'} |")  # fmt: skip


def _recipe_lines(hapt: dict) -> list[str]:
    """Steadier training: the causal labels of the labellers trained with the stream recipe
    against those measured before a step of it (``causal_best_epoch``: the best validation
    epoch kept; ``causal_unrotated``: weight averaging without turned copies), with the
    commands that reproduce them."""
    steps = [("best validation epoch, stopped 15 after it", "causal_best_epoch", "best epoch"),
             (f"mean of the last {FULL.hapt_epochs // 2} of {FULL.hapt_epochs}",
              "causal_unrotated", "unrotated"),
             (f"mean of the last {FULL.hapt_epochs // 2} of {FULL.hapt_epochs}, segments turned "
              f"up to {HAPT_ROTATE_DEG:g}°", "causal_2x64", "2x64"),
             (f"the same, `{hapt['causal']['per_seed'][0]['spec']}`", "causal", "")]  # fmt: skip
    steps = [step for step in steps if step[1] in hapt]
    rows = [hapt[key]["per_seed"] for _, key, _ in steps]  # a step measured again: once
    steps = [step for step, mine, before in zip(steps, rows, [None, *rows[:-1]], strict=True)
             if mine != before]  # fmt: skip
    f1s = {key: [r["macro_f1"] for r in hapt[key]["per_seed"]] for _, key, _ in steps}
    spread = {key: max(v) - min(v) for key, v in f1s.items()}
    lines = [
        "#### Steadier training",
        "",
        "The seeds spread by more than any method difference when each labeller kept the "
        "weights of its best epoch on the validation users (four users, a noisy score) and "
        "stopped 15 epochs after it. Running the schedule to its end and keeping the mean of "
        "the weights after each of its last epochs (`--average-epochs`) follows no single "
        "noisy score, so it is the stream recipe. So is turning each training segment by a "
        f"fresh random rotation of up to {HAPT_ROTATE_DEG:g}° every epoch (`--rotate-deg`), "
        "as a phone clipped to another waist at another angle would record it: the test users "
        "are other people.",
        "",
        "| recipe | median macro-F1 | median accuracy | per seed (macro-F1) "
        "| spread (points) | measured |",
        "|---|---:|---:|---|---:|---|",
    ]
    for label, key, _ in steps:
        v = hapt[key]
        per_seed = ", ".join(f"{r['seed']}: {r['macro_f1']:.3f}" for r in v["per_seed"])
        when = v.get("measured", "with this page")
        lines.append(f"| {label} | {v['macro_f1_median']:.3f} | {_pct(v['accuracy_median'])} | "
                     f"{per_seed} | {100 * spread[key]:.1f} | {when} |")  # fmt: skip
    earlier = [{**r, "step": name} for _, key, name in steps[:-1] for r in hapt[key]["per_seed"]]
    lines += _commands(earlier, lambda r: f"{r['step']}, seed {r['seed']}")
    lines.append("")
    for (_, before, _), (label, after, _) in zip(steps, steps[1:], strict=False):
        gain = hapt[after]["macro_f1_median"] - hapt[before]["macro_f1_median"]
        lines.append(f"*{label}* changes the median causal macro-F1 by {_signed_points(gain)} "
                     f"and the spread between seeds from {100 * spread[before]:.1f} to "
                     f"{100 * spread[after]:.1f} points.")  # fmt: skip
        lines.append("")
    return lines


HAPT_TARGETS = (0.85, 0.90)
"""the macro-F1 targets the HAPT labeller is held to: causal, and with a delay of at most 2 s"""


def _delay_lines(hapt: dict) -> list[str]:
    """The delay rows of ``hapt_decoding``: the labels a worker with ``delay_ms`` emits."""
    lines = [
        "#### Waiting for a better label (`harstream run --delay-ms`)",
        "",
        "The same labellers as a worker with `[worker] delay_ms` labels the test recordings: "
        "each sample's label is emitted that much later, from the samples up to the delay "
        "after it (`models/smoothing.py`). Two ways: the *centred mean* of the probabilities "
        "(decoded where the validation users turned decoding on) of the samples up to the "
        "delay before and after it (rows *…_mean*), and the *fixed-lag HMM smoother*, each "
        "sample's posterior under the grammar given everything up to the delay after it (the "
        "forward filter's belief times a backward pass over the delay), at a temperature "
        "chosen per delay on the validation users. A worker uses the smoother where it beat "
        "the centred mean there, else the mean: the rows without a suffix are what it emits. "
        "An integration test checks that a worker over the broker emits these same labels.",
        "",
        "| labels | delay | median macro-F1 | median accuracy | per seed (macro-F1) | "
        "smoother (lag temperature) |",
        "|---|---:|---:|---:|---|---|",
    ]
    names = ["causal", *(f"delay_{ms}ms{x}" for ms in HAPT_DELAYS_MS for x in ("", "_mean"))]
    for name in [n for n in names if n in hapt]:
        v = hapt[name]
        per_seed = ", ".join(f"{r['seed']}: {r['macro_f1']:.3f}" for r in v["per_seed"])
        delay = f"{v['per_seed'][0].get('delay_ms', 0) / 1000:g} s"
        lines.append(f"| {name} | {delay} | {v['macro_f1_median']:.3f} | "
                     f"{_pct(v['accuracy_median'])} | {per_seed} | {_smoothers(v)} |")  # fmt: skip
    seeds = hapt[f"delay_{HAPT_DELAYS_MS[0]}ms"]["per_seed"]
    decoded = sum(bool(r["enabled"]) for r in hapt["causal_hmm"]["per_seed"])
    return lines + [
        "",
        f"Causal decoding was on for {decoded} of {len(seeds)} seeds (where off, the validation "
        "users refused it); the centred mean averages the probabilities the worker serves, "
        "decoded where it is on, the models' own elsewhere; the smoother starts from the "
        "models' own. *causal* is what the same workers emit at once.",
        "",
        "![macro-F1 against the delay](img/hapt-delay.png)",
        "",
    ]


def _ensemble_lines(hapt: dict, causal: dict) -> list[str]:
    """The ``hapt_ensemble`` rows: the labeller as an ensemble, its own labels, decoded and
    delayed, the median over the ensembles."""
    seeds = [r["seed"] for r in hapt["ensemble3"]["per_seed"]]
    lines = [
        "#### The labeller as an ensemble (section `hapt_ensemble`)",
        "",
        f"Ensembles of three labellers (`{hapt['ensemble3']['per_seed'][0]['spec']}`) trained "
        "as above, seeds s, s + 1 and s + 2 for s in "
        f"{', '.join(map(str, seeds))} (no seed shared), each on the training users of its "
        "s, their per-sample probabilities averaged (`--members 3`; a worker runs the three "
        "in one batched call); decoded with the ensemble's own HMM; and as a worker serving "
        "it with a label delay labels (*ensemble3_delay_…*). Medians over the ensembles, "
        "per seed: each ensemble's s.",
        "",
        "| labels | median macro-F1 | median accuracy | per seed (macro-F1) | temperature | "
        "used by workers (delays: smoother) |",
        "|---|---:|---:|---|---|---|",
    ]
    delays = [f"ensemble3_delay_{ms}ms{x}" for ms in HAPT_DELAYS_MS for x in ("", "_mean")]
    names = [n for n in ("ensemble3", "ensemble3_hmm", *delays) if n in hapt]
    lines += [_median_row(name, hapt[name]) for name in names]
    lines += _commands(hapt["ensemble3"]["per_seed"], lambda r: f"ensemble3, seed {r['seed']}")
    gain = hapt["ensemble3"]["macro_f1_median"] - causal["macro_f1_median"]
    single, ensemble = causal["per_seed"][0]["spec"], hapt["ensemble3"]["per_seed"][0]["spec"]
    said = (f"Against the single labellers' median (`{single}`), the ensembles' median changes "
            f"macro-F1 by {_signed_points(gain)}.")  # fmt: skip
    if not ensemble.startswith(f"{single}-ensemble"):
        said = (f"The single labellers (`{single}`) and these ensembles' members differ in size: "
                "no gain is stated until both are measured at the same size.")  # fmt: skip
    return [*lines, "", said, ""]


REFINED = "ensemble3_refined_"
"""the variants of ``hapt_refine``: ``ensemble3_refined_<ms>ms``"""


def _refine_lines(hapt: dict) -> list[str]:
    """The ``hapt_refine`` rows beside the fixed-lag smoother's of the same ensembles."""
    rows = [r for name, v in hapt.items() if name.startswith(REFINED) for r in v["per_seed"]]
    epochs = sorted({r["refiner_epochs"] for r in rows})
    minutes = sorted(r["refine_minutes"] for r in rows)
    lines = [
        "#### Learning the delay (section `hapt_refine`)",
        "",
        "The other way to use the delay: a small model trained on what the labeller gives a "
        "worker. Each ensemble above gets one *refiner* per delay "
        f"(`models/refine.py`, `{rows[0]['refiner']}`): a causal GRU over the ensemble's "
        "log-probabilities and its HMM filter's log-beliefs, trained on the ensemble's training "
        "users to name the sample the delay back, the epoch chosen by macro-F1 on its "
        "validation users. It sees what the fixed-lag smoother sees (the samples up to the "
        "delay after the one it labels) and, unlike a bidirectional pass over the delay, costs "
        "one GRU step per sample whatever the delay. The rows are the test users' whole "
        "recordings, the last delay of each with its last input repeated (as a stream that "
        "ends is flushed). *Mean of the two*: the refiner's probabilities averaged with the "
        "smoother's, what a worker with that `delay_ms` serves for a model trained with "
        "`harstream train --refine-delay-ms` (the refiner inside its model file; each row's "
        "command).",
        "",
        "| delay | fixed-lag smoother, as served (median; per seed) | refiner (median; per seed) "
        "| mean of the two (median; per seed) | refiner on the validation users (median) |",
        "|---:|---|---|---|---:|",
    ]

    def cell(v: dict | None) -> str:
        if v is None:
            return "not measured"
        per_seed = ", ".join(f"{r['seed']}: {r['macro_f1']:.3f}" for r in v["per_seed"])
        return f"{v['macro_f1_median']:.3f}; {per_seed}"

    for ms in HAPT_DELAYS_MS:
        if (v := hapt.get(f"{REFINED}{ms}ms")) is None:
            continue
        served, mixed = hapt.get(f"ensemble3_delay_{ms}ms"), hapt.get(f"{REFINED}{ms}ms_mixed")
        val = float(np.median([r["validation_macro_f1"] for r in v["per_seed"]]))
        lines.append(f"| {ms / 1000:g} s | {cell(served)} | {cell(v)} | {cell(mixed)} | "
                     f"{val:.3f} |")  # fmt: skip
    return lines + [
        "",
        f"The refiners trained for {epochs[0]}–{epochs[-1]} epochs, {minutes[0]:.1f}–"
        f"{minutes[-1]:.1f} minutes each (the best epoch kept); the labellers are the "
        "ensembles above.",
        "",
    ]


def _target_lines(hapt: dict) -> list[str]:
    """Whether the best median of three or more (seeds, or ensembles, named) reaches
    :data:`HAPT_TARGETS`: causal, and with a delay of at most 2 s."""

    def best(names: list[str], target: float) -> str:
        medians = [(hapt[n]["macro_f1_median"], n) for n in names
                   if n in hapt and len(hapt[n]["per_seed"]) >= 3]  # fmt: skip
        if not medians:
            return "none measured over three (--quick)"
        v, name = max(medians)
        return f"{v:.3f} ({name}): {'reached' if v >= target else 'not reached'}"

    said = [best(["causal", "causal_hmm", "ensemble3", "ensemble3_hmm"], HAPT_TARGETS[0]),
            best([f"{prefix}{ms}ms{x}" for prefix, x in (("delay_", ""), ("ensemble3_delay_", ""),
                  (REFINED, ""), (REFINED, "_mixed")) for ms in HAPT_DELAYS_MS if ms <= 2000],
                 HAPT_TARGETS[1])]  # fmt: skip
    if REFINED in said[1] and "_mixed" in said[1]:
        said[1] += " (what workers serve at that delay_ms, the model trained with its refiner)"
    elif REFINED in said[1]:
        said[1] += " (offline: workers serve the refiner's labels averaged with the smoother's)"
    return [
        f"Targets, medians over three seeds or three ensembles: causal macro-F1 "
        f"{HAPT_TARGETS[0]:.2f}, best {said[0]}; with a delay of at most 2 s "
        f"{HAPT_TARGETS[1]:.2f}, best {said[1]}.",
        "",
    ]


def _gradient_block(data: dict) -> list[str]:
    curves = data["gradients"]
    lines = [
        "## 3. Vanishing gradients",
        "",
        "Mean norm of the gradient of the classification loss at the end of "
        f"{GRADIENT_STEPS}-sample stretches of the stitched HAR test streams (128 of them) with "
        "respect to every input "
        "sample, against how far back that sample lies: the window models above run over a "
        "longer input (their recurrent weights do not depend on the length), once with their "
        "initial weights (dashed) and once trained (solid).",
        "",
        "![vanishing gradients](img/vanishing-gradients.png)",
        "",
        "| steps back | " + " | ".join(curves) + " |",
        "|---:|" + "---:|" * len(curves),
    ]
    for d in GRADIENT_DISTANCES:
        lines.append(f"| {d} | " + " | ".join(f"{c[str(d)]:.1e}" for c in curves.values()) + " |")
    lines += ["", "What the numbers say (read from this run):", ""]
    return lines + [_gradient_reading(curves), ""]


def _phones_block(data: dict) -> list[str]:
    rows = list(data["real_phones"].values())
    lines = [
        "## 4. Real phones: jittered 100 Hz in m/s², any way up, against upright 50 Hz",
        "",
        "The HAPT recordings as phones export them (`python -m pipeline.reports.phone_export`, "
        f"seed {PHONE_EXPORT.seed}): about {PHONE_EXPORT.rate_hz:g} Hz with jittered "
        f"timestamps, {100 * PHONE_EXPORT.repeat_prob:g} % of them repeated by bursty delivery, "
        "pauses of 50 to 190 ms with their samples lost, acceleration in m/s², and every "
        "recording turned to an orientation drawn uniformly over all of them (upside down "
        "included). The generic reader takes the file with its defaults: it detects the units "
        "and converts them to g, and resamples each recording to 50 Hz (repeats merged, an "
        "anti-aliasing low-pass, the label in force at each grid point). Stream models (2 "
        "layers of 64, truncated BPTT and the stream recipe as in section 2: "
        f"{FULL.hapt_epochs} epochs, the mean weights of the last {FULL.hapt_epochs // 2}; one "
        "seed) are trained on the training users and scored per annotated sample on the test "
        "users, each way: the upright 50 Hz recordings, the phone export, the phone export "
        f"with rotation augmentation (every training segment turned by a fresh rotation of up "
        f"to {PHONE_ROTATE_DEG:g}°, i.e. any orientation), and the phone export in the gravity "
        "frame (`--frame gravity`: vertical and horizontal acceleration, uprightness against "
        "how the device sat while its wearer moved, rotation about and across the vertical, "
        "estimated causally per device; no rotation of the phone changes them).",
        "",
        "| model | trained and tested on | per-sample accuracy | macro-F1 | epochs "
        "| training (min) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {_pct(r['accuracy'])} | "
            f"{r['macro_f1']:.3f} | {r['epochs']} | {r['train_minutes']:.1f} |"
        )
    lines += _commands(rows, lambda r: f"{r['model']}, {r['variant']}")
    return lines + ["", _phones_reading(rows), ""]


def _points(lost: float) -> str:
    """A macro-F1 difference in points: lost, or gained when negative."""
    return f"{100 * lost:.1f} points" if lost >= 0 else f"{-100 * lost:.1f} points gained"


def _phones_reading(rows: list[dict]) -> str:
    """Macro-F1 of each way on phones against upright 50 Hz, per model, and the target."""
    parts, worst = [], 0.0
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {r["variant"]: r["macro_f1"] for r in rows if r["model"] == model}
        upright = by.pop(PHONE_VARIANTS[0][0], None)
        by = {v: f for v, f in by.items() if v.startswith("phones")}
        if upright is None or not by:
            continue
        best = max(by.values())
        worst = max(worst, upright - best)
        parts.append(f"{model} " + ", ".join(_points(upright - f) + f" ({v})"
                                              for v, f in by.items()))  # fmt: skip
    if not parts:
        return ""
    verdict = "met" if worst <= 0.02 else "**not met**"
    ways = {}  # each way on phones: its macro-F1 summed over the models
    for r in rows:
        if r["variant"].startswith("phones"):
            ways[r["variant"]] = ways.get(r["variant"], 0.0) + r["macro_f1"]
    best = max(ways, key=ways.get)
    return (
        "Macro-F1 lost against upright 50 Hz: "
        + "; ".join(parts)
        + f". Target (at most 2 points lost by the best way on phones): {verdict}. "
        + f"The best way on phones, over both models: {best}"
        + (
            " — the default of `harstream train` (`--frame auto`) for these channels."
            if "gravity frame" in best
            else "."
        )
    )


def _anomaly_block(data: dict) -> list[str]:
    rows, windows = data["anomaly"], data.get("anomaly_windows", {})
    faulty = ", ".join(f"{f} {w['faulty']:,} of {w['windows']:,}" for f, w in windows.items())
    lines = [
        "## 5. Anomaly detection: injected sensor faults on the HAPT test users",
        "",
        "Each detector is trained on the HAPT training users' recordings (seed "
        f"{ANOMALY_SEED}; the labels unused except by the next-step model's activity head) and "
        f"scores windows of {ANOMALY_SPAN} samples taken every {ANOMALY_STRIDES[1]} samples of "
        "the test users' recordings, into which one fault at a time is injected "
        "(`models.faults`, seeded): one fault in every "
        f"{4 * ANOMALY_SPAN} samples plus its span, at a random place at least a window after "
        "the previous one. A window is faulty when it overlaps a fault; the others are the "
        f"clean ones (faulty windows: {faulty}). Faults, on one random channel unless said, in "
        "units of that channel's standard deviation in the recording: *stuck* (holds its last "
        f"value, {LENGTHS['stuck']} samples), *spike* ({LENGTHS['spike']} samples of ± "
        f"{SPIKE_STD:g} std), *drift* (a bias ramping to {DRIFT_STD:g} std over "
        f"{LENGTHS['drift']} samples), *flip* (sign flipped), *swap* (two axes of one sensor "
        f"swapped), *dropout* (every channel 0), *noise* (Gaussian, {NOISE_STD:g} std), "
        f"*glitch* (every channel repeats or skips one sample in {GLITCH_EVERY}, so it lags or "
        "leads by a growing offset); 64 samples unless said. Detectors: LSTM-64 seq2seq "
        f"models (the autoencoder over the {ANOMALY_SPAN} samples; the forecasters read "
        f"{ANOMALY_SPAN - ANOMALY_HORIZON} and predict the last {ANOMALY_HORIZON}, so a fault "
        "early in the window reaches their score only through what they read), the mean "
        "squared error of a 2-layer stream LSTM's next-sample head over the window (run from a "
        "zero state, its prediction at each sample against the next one, as `harstream train "
        "--setup stream --next-step` trains it), a memory-less MLP autoencoder over the "
        "flattened window (64-unit code), and the window's largest |z| against the training "
        "users' per-channel mean and std (no training). Recall at 1 % false positives: the "
        "share of faulty windows above the 99th percentile of the clean windows' scores.",
        "",
    ]
    for title, key in (("ROC-AUC", "roc_auc"), ("Recall at 1 % false positives",
                                                "recall_at_1pct_fpr")):  # fmt: skip
        lines += [f"{title}:", "", "| detector | " + " | ".join(FAULTS) + " |",
                  "|---|" + "---:|" * len(FAULTS)]  # fmt: skip
        lines += [f"| {name} | " + " | ".join(f"{r[f][key]:.3f}" for f in FAULTS) + " |"
                  for name, r in rows.items()]  # fmt: skip
        lines.append("")
    commands = [{"name": n, **r} for n, r in rows.items()]
    lines += _commands(commands, lambda r: f"{r['name']} (`{r['spec']}`)")
    return lines + ["", _anomaly_reading(rows), ""]


def _anomaly_reading(rows: dict[str, dict]) -> str:
    """The best detector per fault by ROC-AUC, and each detector's mean ROC-AUC."""
    best = []
    for fault in FAULTS:
        name = max(rows, key=lambda n: np.nan_to_num(rows[n][fault]["roc_auc"], nan=-1.0))
        r = rows[name][fault]
        best.append(f"{fault}: {name} ({r['roc_auc']:.3f}, recall {_pct(r['recall_at_1pct_fpr'])})")
    means = {n: float(np.nanmean([r[f]["roc_auc"] for f in FAULTS])) for n, r in rows.items()}
    order = sorted(means, key=means.get, reverse=True)
    recall = float(np.nanmedian([r[f]["recall_at_1pct_fpr"] for r in rows.values()
                                 for f in FAULTS]))  # fmt: skip
    return (
        "Best detector per fault by ROC-AUC (with its recall at 1 % false positives): "
        + "; ".join(best)
        + ". Mean ROC-AUC over the faults: "
        + ", ".join(f"{n} {means[n]:.3f}" for n in order)
        + f". The median recall at 1 % false positives over every detector and fault is "
        f"{_pct(recall)}: a threshold that only 1 % of the clean windows cross sits among the "
        "clean recordings' own most extreme windows (real jolts and transitions), which outscore "
        "nearly every injected fault: at that false-alarm rate no detector here is of use, and "
        "ROC-AUC is the fairer comparison between them."
    )


SECTIONS = ("har", "har_attention", "har_ensemble", "hapt", "hapt_decoding", "hapt_ensemble",
            "hapt_refine", "phones", "anomaly")  # fmt: skip
"""measured on their own: har (models.json keys uci_har, gradients), har_attention and
har_ensemble (more rows of uci_har), hapt, hapt_decoding, hapt_ensemble and hapt_refine (more
variants of hapt), phones (real_phones), anomaly (anomaly, anomaly_windows)"""


def write_markdown(path: Path, results: dict, quick: bool, stale: Sequence[str] = ()) -> None:
    """The page, from every section's kept results in ``results`` (models.json's content),
    naming the ``stale`` sections (code or settings changed since) and their rows so far."""
    kept = results.get("_sections", {})
    lines = [
        "# Models: what they reach on real data",
        "",
        f"Regenerate with `{COMMAND}`: it trains again only the sections that are missing or "
        "changed (`SECTIONS=phones` names sections to run again), keeps every figure in "
        "`docs/models.json` and writes this page and `docs/img/` from it. CPU only; when each "
        "section was measured:",
        "",
    ]
    lines += [f"- {name}: {info['measured']}, {info['minutes']:.0f} minutes on {info['machine']}"
              + (f" ({info['source']})" if info.get("source") else "")
              for name, info in kept.items()]  # fmt: skip
    for name in stale:
        rows = results.get("_partial", {}).get(name, {}).get("rows", [])
        seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))
        so_far = "nothing scored yet"
        if rows:
            so_far = f"{len(rows)} rows scored so far (seeds {seeds}) are kept under `_partial`"
        shown = "its figures below are from its last complete run" if name in kept else ""
        why = "being measured again (its code or settings changed)" if name in kept else (
            "being measured for the first time")  # fmt: skip
        lines.append(f"- {name}: {why}; " + "; ".join(filter(None, (so_far, shown))))
    if quick:
        lines += ["", "**--quick run: tiny trainings, the numbers below mean nothing.**"]
    lines.append("")
    blocks = [("uci_har", _har_block), ("hapt", _hapt_block), ("gradients", _gradient_block),
              ("real_phones", _phones_block), ("anomaly", _anomaly_block)]  # fmt: skip
    for key, block in blocks:
        if key in results:
            lines += block(results)
    path.write_text("\n".join(lines))


LATER_DEFAULTS = (", frame='device'", ", task='classify'", ", attention=False", ", horizon=0",
                  ", members=1")  # fmt: skip
"""settings fields added after sections were measured, as they print at their default values"""


def fingerprint(section: str, budget: Budget) -> str:
    """What a section trains, as a short hash: its code and the settings it reads (for the
    decoding sections, the library modules that decode and smooth too)."""
    import inspect  # noqa: PLC0415  (only the report computes fingerprints)

    # the labels of kept labellers: the grammar fitted and applied by today's library code
    decoding = (_decoding_rows, _labeller, _hapt_split, _hapt_model, _hapt_recipe, _refitted,
                fit_decoding, models.hmm, models.smoothing)  # fmt: skip
    code = {"har": (har_section, _har_rows, gradient_section),
            "har_attention": (har_attention_section, _har_rows),
            "har_ensemble": (har_ensemble_section, _har_rows),
            "hapt": (hapt_section, _hapt_split, _hapt_model, _hapt_recipe),
            "hapt_decoding": (hapt_decoding_section, *decoding),
            "hapt_ensemble": (hapt_ensemble_section, *decoding),
            "hapt_refine": (hapt_refine_section, *decoding, models.refine, log_inputs),
            "phones": (phones_section, _hapt_model),
            "anomaly": (anomaly_section, inject, faulty_windows)}[section]  # fmt: skip
    settings = {"budget": budget, "har": (HAR_MODELS, ROTATE_DEG),
                "har_attention": (HAR_ATTENTION, ROTATE_DEG),
                "har_ensemble": (HAR_ENSEMBLES, ROTATE_DEG),
                "hapt": (HAPT_SEEDS, HAPT_STREAM, HAPT_ROTATE_DEG, HAPT_MINUTES),
                "hapt_decoding": (HAPT_SEEDS, HAPT_STREAM, HAPT_DELAYS_MS, HAPT_ROTATE_DEG,
                                  HAPT_MINUTES),
                "hapt_ensemble": (HAPT_ENSEMBLE_SEEDS, HAPT_ENSEMBLE, HAPT_DELAYS_MS,
                                  HAPT_ROTATE_DEG, HAPT_MINUTES),
                "hapt_refine": (HAPT_ENSEMBLE_SEEDS, HAPT_ENSEMBLE, HAPT_DELAYS_MS,
                                HAPT_ROTATE_DEG, HAPT_MINUTES, HAPT_REFINE),
                "phones": (PHONE_MODELS, PHONE_EXPORT, PHONE_VARIANTS, PHONE_MINUTES),
                "anomaly": (ANOMALY_DETECTORS, ANOMALY_SPAN, ANOMALY_STRIDES, ANOMALY_SEED,
                            LENGTHS, SPIKE_STD, DRIFT_STD, NOISE_STD, GLITCH_EVERY)}  # fmt: skip
    text = "".join(inspect.getsource(f) for f in code) + repr(settings[section]) + repr(budget)
    for later in LATER_DEFAULTS:  # a field added since, at its default, changes nothing trained
        text = text.replace(later, "")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def har_key(row: dict) -> str:
    """A HAR row's key in models.json: its spec's name without the setup (``lstm-2x64``,
    ``attention-gru-2x64``), ``-unrotated`` for the LSTM trained without turned copies."""
    return row["file"].removeprefix("har-window-")


PER_LABELLER = ("hapt", "hapt_decoding", "hapt_ensemble", "hapt_refine")
"""the sections that keep their rows as each labeller is scored (:class:`Progress`) and go on
past a labeller a run does not score (all that ``--jobs`` trains side by side)"""
SCORE_ONLY = ("hapt", "hapt_decoding", "hapt_ensemble")
"""the sections that train nothing but their labellers: scored as soon as one is kept (hapt_refine
trains a refiner per labeller and delay, after them)"""
KEPT_SECTIONS = (*SCORE_ONLY, "hapt_refine", "phones")
"""the sections whose labellers the Trained store keeps (all a ``--kept-only`` run looks at: it
scores those kept and trains no labeller, hapt_refine training its refiners over them)"""

SHARED = ("uci_har", "hapt")
"""models.json keys that several sections fill (har and har_attention, hapt and hapt_decoding):
merged, not replaced"""


def _measure(section: str, budget: Budget, img: Path, saved: Path, trained: Trained,
             progress: Progress) -> dict:  # fmt: skip
    """Train and score one section (``saved``: its models to keep; ``trained``: the HAPT
    labellers trained so far; ``progress``: the HAPT sections' rows scored so far): its keys
    of models.json."""
    if section == "har":
        rows, models = har_section(budget, img, saved)
        curves = gradient_section(models, img)
        gradients = {name: {str(d): float(c[len(c) - 1 - d]) for d in GRADIENT_DISTANCES}
                     for name, c in curves.items()}  # fmt: skip
        return {"uci_har": {har_key(r): r for r in rows}, "gradients": gradients}
    if section in ("har_attention", "har_ensemble"):
        rows = (har_attention_section if section == "har_attention" else har_ensemble_section)(
            budget, img, saved)  # fmt: skip
        return {"uci_har": {har_key(r): r for r in rows}}
    if section in PER_LABELLER:
        rows = (hapt_section(budget, img, saved, trained, progress) if section == "hapt" else
                hapt_decoding_section(budget, img, trained, progress)
                if section == "hapt_decoding" else
                hapt_ensemble_section(budget, trained, progress)
                if section == "hapt_ensemble" else
                hapt_refine_section(budget, trained, progress))  # fmt: skip
        by = {v: [r for r in rows if r["variant"] == v] for v in dict.fromkeys(
            r["variant"] for r in rows)}  # fmt: skip
        return {"hapt": {v: {"macro_f1_median": float(np.median([r["macro_f1"] for r in rs])),
                             "accuracy_median": float(np.median([r["accuracy"] for r in rs])),
                             "per_seed": rs} for v, rs in by.items()}}  # fmt: skip
    if section == "anomaly":
        return anomaly_section(budget, img, saved)
    rows = phones_section(budget, trained)
    return {"real_phones": {f"{r['spec']} {r['variant']}": r for r in rows}}


SCORE_EVERY_S = 30.0
"""how often ``--jobs`` looks for labellers its processes have just kept, to score them"""
TRAINING_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                "OMP_NUM_THREADS": "1"}  # fmt: skip
"""the environment of each training process of ``--jobs``: one thread each, side by side"""


def _lanes(missing: dict[str, str], jobs: int) -> list[list[str]]:
    """The labellers ``missing`` (name: what trains it) dealt to ``jobs`` processes, longest
    first (an ensemble counts its members) onto the least loaded one; the non-empty lanes."""
    lanes: list[list[str]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    cost = {name: int(re.search(r"members=(\d+)", what).group(1)) for name, what in missing.items()}
    for name in sorted(cost, key=lambda n: -cost[n]):
        k = load.index(min(load))
        lanes[k].append(name)
        load[k] += cost[name]
    return [lane for lane in lanes if lane]


def _side_by_side(lanes: list[list[str]], passed: list[str], root: Path,
                  score: Callable[[], None]) -> None:  # fmt: skip
    """Train each lane's labellers in a process of its own (this script with ``passed`` and
    ``--train``, :data:`TRAINING_ENV`), all at once, calling ``score`` whenever one has been
    kept under ``root`` (so a run stopped before the end keeps the rows of all it trained);
    return when every one has finished."""
    stderr.print(f"training {sum(map(len, lanes))} labellers in {len(lanes)} processes: {lanes}")
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline.reports.models_report", *passed,
                               "--train", ",".join(lane)], env={**os.environ, **TRAINING_ENV})
             for lane in lanes]  # fmt: skip
    seen = set(root.glob("*.json"))
    while any(p.poll() is None for p in procs):
        time.sleep(SCORE_EVERY_S)
        if (now := set(root.glob("*.json"))) != seen:
            seen = now
            score()
    if failed := [p.args for p in procs if p.returncode != 0]:
        raise PipelineError(f"a training process failed: {failed}")


@dataclass(frozen=True)
class ReportRun:
    """One run of the report: where its figures (``store``, ``img``) and models (``saved``) go,
    the figures kept so far (``results``, written back as each unit is scored), the sections
    ``named`` with --only, and when the run began (HAPT labellers kept before it are trained
    again for named sections)."""

    budget: Budget
    img: Path
    store: Path
    saved: Path
    results: dict
    named: frozenset[str] = frozenset()
    started: float = 0.0

    @property
    def partial(self) -> dict:
        """Sections being measured again: their fingerprint, rows scored so far, minutes."""
        return self.results.setdefault("_partial", {})

    @property
    def kept(self) -> dict:
        """Sections complete: when, where and how long they were measured, and their fingerprint."""
        return self.results.setdefault("_sections", {})

    def plots(self, section: str) -> Path:
        """Where a section's plots go until it is complete (the page shows its last run's)."""
        (folder := self.img / "next" / section).mkdir(parents=True, exist_ok=True)
        return folder

    def trained(self, section: str, **kw) -> Trained:
        """The HAPT labellers a section finds kept (``kw``: see :class:`Trained`)."""
        return Trained(self.saved / "trained", self.started if section in self.named else 0.0,
                       **kw)  # fmt: skip

    def save(self) -> None:
        """Write models.json: every figure, and the rows of the sections not complete."""
        rows = {k: v for k, v in self.partial.items() if v["rows"]}
        text = json.dumps({k: v for k, v in {**self.results, "_partial": rows}.items() if v},
                          indent=1)  # fmt: skip
        self.store.write_text(text + "\n")

    def measure(self, section: str, only: Trained, keep: bool = True) -> dict:
        """Measure a section with the labellers ``only`` lets it use, skipping the units kept
        and keeping those it scores (``keep=False``: a run that only finds or trains labellers,
        which keeps nothing); its keys of models.json."""
        rows = self.partial[section]["rows"]
        progress = Progress(rows, self.save) if keep else Progress(list(rows))
        return _measure(section, self.budget, self.plots(section), self.saved, only, progress)

    def complete(self, section: str, mark: str, measured: dict, minutes: float) -> None:
        """Keep a section measured to the end (fingerprint ``mark``): its figures, when and where,
        its plots moved beside the page's."""
        for key, value in measured.items():
            self.results[key] = {**self.results.get(key, {}), **value} if key in SHARED else value
        self.kept[section] = {"fingerprint": mark, "measured": time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "minutes": minutes,
            "machine": f"{platform.node() or 'this machine'} "
            f"({platform.processor() or platform.machine()})"}  # fmt: skip
        del self.partial[section]
        self.save()  # kept as soon as measured
        for plot in self.plots(section).iterdir():
            plot.replace(self.img / plot.name)
        self.plots(section).rmdir()
        if not any((self.img / "next").iterdir()):
            (self.img / "next").rmdir()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny trainings (checks the script)")
    parser.add_argument("--out", default=None,
                        help="the page; its figures go beside it as .json (default: "
                        "docs/models.md, with --quick models-out/quick/models.md)")  # fmt: skip
    parser.add_argument(
        "--only",
        default="",
        help="run these sections again, besides those missing or changed, comma-separated "
        f"({', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--render", action="store_true", help="train nothing: write the page from models.json"
    )
    parser.add_argument(
        "--kept-only",
        action="store_true",
        help="train no labeller: score the HAPT and phones labellers already kept (training the "
        "refiners of hapt_refine over the ensembles kept), keeping the rows of a section not "
        "complete yet for the run that trains the rest",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train the HAPT labellers the run needs in this many processes side by side (one "
        "thread each) before scoring (default: 1, one after another)",
    )
    parser.add_argument(
        "--models-dir",
        default=None,
        help="where the models go (default: models-out/report, with --quick models-out/quick)",
    )
    parser.add_argument("--train", default=None, help=argparse.SUPPRESS)  # a --jobs process
    parser.add_argument("--since", type=float, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    named = [n for n in args.only.split(",") if n.strip()]
    unknown = [n for n in named if n not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown sections {unknown}: give some of {', '.join(SECTIONS)}")
    if args.kept_only and named:
        parser.error("--kept-only scores kept labellers; --only trains its sections again")
    if args.jobs < 1:
        parser.error(f"--jobs: at least 1, not {args.jobs}")
    budget = QUICK if args.quick else FULL
    default = REPO / ("models-out/quick" if args.quick else "docs") / "models.md"
    out = Path(args.out) if args.out else default
    (img := out.parent / "img").mkdir(parents=True, exist_ok=True)
    store = out.with_suffix(".json")
    saved = Path(args.models_dir or REPO / "models-out" / ("quick" if args.quick else "report"))
    run = ReportRun(budget, img, store, saved,
                    json.loads(store.read_text()) if store.is_file() else {}, frozenset(named),
                    time.time() if args.since is None else args.since)  # fmt: skip
    stale = {
        section: mark
        for section in SECTIONS
        if section in named
        or run.kept.get(section, {}).get("fingerprint") != (mark := fingerprint(section, budget))
    }
    todo = [] if args.render else [
        (section, mark) for section, mark in stale.items()
        if not (args.kept_only and section not in KEPT_SECTIONS)
    ]  # fmt: skip
    for section in SECTIONS:
        if section not in stale:
            run.partial.pop(section, None)  # its code is back to what was measured
            if section in run.kept and not args.render:
                stderr.print(f"{section}: kept from {run.kept[section]['measured']} (unchanged)")
        elif section in named or run.partial.get(section, {}).get("fingerprint") != stale[section]:
            run.partial[section] = {"fingerprint": stale[section], "rows": [], "minutes": 0.0}
    hapt_todo = [section for section, _ in todo if section in PER_LABELLER]
    if args.train is not None:  # one of --jobs's processes: train these in order, score nothing
        for name in args.train.split(","):  # the order dealt, not the sections'
            for section in hapt_todo:
                only = run.trained(section, trains=frozenset({name}), only_trains=True)
                run.measure(section, only, keep=False)
        return 0
    if args.jobs > 1 and not args.kept_only:
        missing: dict[str, str] = {}
        for section in hapt_todo:  # find the labellers the run needs, scoring nothing
            finder = run.trained(section, trains=frozenset(), only_trains=True)
            run.measure(section, finder, keep=False)
            missing |= finder.missing
        passed = ["--quick"] if args.quick else []
        passed += [f"--out={out}", f"--models-dir={saved}", f"--only={args.only}",
                   "--since", str(run.started)]  # fmt: skip

        def score() -> None:  # what is kept so far, each unit once (the rows are kept)
            for section in [s for s in hapt_todo if s in SCORE_ONLY]:
                run.measure(section, run.trained(section, trains=frozenset()))

        _side_by_side(_lanes(missing, args.jobs), passed, saved / "trained", score)
    for section, mark in todo:
        started = time.time()
        only = run.trained(section, trains=frozenset() if args.kept_only else None)
        try:
            measured = run.measure(section, only)
        except Unscored:  # phones: a section that does not keep its rows as they come
            measured = {}
        minutes = run.partial[section]["minutes"] + (time.time() - started) / 60  # every sitting
        if only.missing:
            run.partial[section]["minutes"] = minutes
            run.save()
            stderr.print(
                f"{section}: {len(only.missing)} labellers not trained yet; "
                f"{len(run.partial[section]['rows'])} rows kept in {store} (_partial)"
            )
            continue
        run.complete(section, mark, measured, minutes)
        stderr.print(f"{section}: measured, kept in {store}")
    write_markdown(out, run.results, args.quick, [s for s in stale if s in run.partial])
    stderr.print(f"written {out} from {store}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
