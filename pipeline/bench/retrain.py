"""Retraining benchmark on UCI HAPT: does the trainer's candidate beat the champion on users the
champion never saw, and does the gate refuse a bad candidate?

1. Champion: a stream LSTM trained on the official HAPT training users within a time budget,
   registered and promoted as v1 of ``har`` in a temporary registry.
2. New users (the official test users): each one's first recording is replayed, labels inline,
   into an in-memory bus; the product's :class:`~pipeline.trainer.service.Trainer` fills its
   buffer from it and retrains once (fine-tuning the champion), gates the candidate on the
   held-out devices and registers it. ``holdout_percent`` is 25: the CRC-32 split then holds out
   two of the nine first recordings (users 4 and 18) and trains on the other seven, so both parts
   have data.
3. Later data: champion and candidate run over each new user's remaining recordings, whole,
   state never reset; per-sample accuracy over annotated samples.
4. Bad candidate: the same fine-tune on the buffer's training windows with their label rows
   shuffled; the gate judges it against the champion and the registry records it as rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.io import save_model
from models.registry import Registry
from models.spec import ModelSpec
from models.training import (
    TrainConfig,
    TrainResult,
    masked_accuracy,
    predict_streams,
    train_stream_model,
)
from pipeline.trainer.buffer import BufferConfig, Windows, is_holdout
from pipeline.trainer.gate import GateConfig, Verdict, judge
from pipeline.trainer.labelling import JoinConfig
from pipeline.trainer.modelling import recordings
from pipeline.trainer.service import TRAINING, Retrain, Trainer, TrainerConfig, train_candidate
from streams.datasets import HAPT_TEST_USERS, StreamDataset, load_dataset, split_by_user
from streams.datasets.uci_hapt import HAPT_FILE
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay

NAME = "har"
HOLDOUT_PERCENT = 25.0
WINDOW, STRIDE = 256, 128
MIN_HOLDOUT_WINDOWS = 20
SAMPLES_PER_RECORD = 50
POLL_RECORDS = 64
"""records per trainer poll: the joiner cuts windows after each poll and keeps at most
``JoinConfig.max_pending`` (4096) samples per device, so a poll must not bring one device more"""
QUICK_CHAMPION_USERS = 4

Log = Callable[[str], None]


def _load(data_dir: str | None) -> StreamDataset:
    return load_dataset(str(Path(data_dir) / HAPT_FILE) if data_dir else "uci_hapt")


def _earlier_and_later(test: StreamDataset) -> tuple[StreamDataset, StreamDataset]:
    """Each user's first recording (in experiment order) and the rest of their recordings."""
    firsts: dict[int | None, str] = {}
    for s in test.streams:
        firsts.setdefault(s.user, s.device)
    first = set(firsts.values())
    earlier = tuple(s for s in test.streams if s.device in first)
    later = tuple(s for s in test.streams if s.device not in first)
    return replace(test, streams=earlier), replace(test, streams=later)


def _train_champion(
    train: StreamDataset, minutes: float, quick: bool, on_log: Log
) -> tuple[TrainResult, int]:
    """The champion and how many users it was trained on (validation users included)."""
    if quick:
        train = train.select_users(train.users[:QUICK_CHAMPION_USERS])
    spec = ModelSpec(setup="stream", cell="lstm", hidden=16 if quick else 64)
    config = TrainConfig(epochs=1 if quick else 30, max_seconds=minutes * 60)
    recs, users = recordings(train)
    on_log(f"champion: training {spec.name} on {len(recs)} recordings of {len(train.users)} "
           f"users for at most {minutes:g} min")  # fmt: skip
    result = train_stream_model(
        spec, recs, users, channels=train.channels, classes=train.activities,
        rate_hz=train.rate_hz, config=config,
        provenance={"dataset": train.name, "train_users": list(train.users)},
        on_epoch=lambda e, n, logs: on_log(f"  epoch {e}/{n}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in logs.items())),
    )  # fmt: skip
    on_log(f"champion: trained in {result.seconds:.0f} s")
    return result, len(train.users)


def _registry_with_champion(root: Path, champion: TrainResult) -> Registry:
    registry = Registry(root / "registry")
    path = save_model(champion.model, champion.meta, root / "champion.keras")
    version = registry.register(NAME, path, training_data="uci_hapt official training users")
    registry.promote(NAME, version.version)
    return registry


def _trainer_config(quick: bool) -> TrainerConfig:
    return TrainerConfig(
        name=NAME, every_windows=None, interval_s=None, drift=False, min_windows=1,
        max_records=POLL_RECORDS,
        train=replace(TRAINING, epochs=1) if quick else TRAINING,  # the trainer's own defaults
        buffer=BufferConfig(window=WINDOW, holdout_percent=HOLDOUT_PERCENT),
        join=JoinConfig(window=WINDOW, stride=STRIDE),
        gate=GateConfig(margin=0.0, min_holdout_windows=MIN_HOLDOUT_WINDOWS),
    )  # fmt: skip


def _fill(trainer: Trainer, bus: MemoryBus, earlier: StreamDataset, on_log: Log) -> None:
    """Replay the earlier recordings into the bus and let the trainer buffer their windows."""
    started = time.perf_counter()
    report = replay(earlier, MemorySink(bus), ReplayConfig(samples_per_record=SAMPLES_PER_RECORD))
    trainer.run(timeout=1.0)
    train, held = trainer.buffer.count(holdout=False), trainer.buffer.count(holdout=True)
    on_log(f"trainer: {report.records_sent:,} records of {len(earlier.streams)} recordings -> "
           f"{train:,} training and {held:,} held-out windows in "
           f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    if trainer.joiner.stats.overflow:
        on_log(f"trainer: the joiner dropped {trainer.joiner.stats.overflow:,} samples")
    if train == 0 or held < MIN_HOLDOUT_WINDOWS:
        raise RuntimeError(f"the buffer needs training and held-out windows: {train} / {held}")


def _later_probs(model, later: StreamDataset) -> list[np.ndarray]:
    return predict_streams(model, [s.values for s in later.streams])


def _accuracy(probs: list[np.ndarray], later: StreamDataset, users: set[int | None]) -> float:
    """Per-sample accuracy over the annotated samples of ``users``' later recordings."""
    chosen = [i for i, s in enumerate(later.streams) if s.user in users]
    return masked_accuracy([probs[i] for i in chosen], [later.streams[i].labels for i in chosen])


def _later_figures(champion, candidate, earlier: StreamDataset, later: StreamDataset) -> dict:
    """Champion and candidate on the later data: all new users, then those whose earlier data
    the candidate trained on and those held out for the gate."""
    held = {s.user for s in earlier.streams if is_holdout(s.device, HOLDOUT_PERCENT)}
    groups = {"": set(later.users), "_trained_users": set(later.users) - held,
              "_holdout_users": held}  # fmt: skip
    p_champ, p_cand = _later_probs(champion, later), _later_probs(candidate, later)
    out: dict[str, object] = {}
    for suffix, users in groups.items():
        champ, cand = _accuracy(p_champ, later, users), _accuracy(p_cand, later, users)
        if not suffix:
            out.update(champion_later_accuracy=champ, candidate_later_accuracy=cand)
        out[f"later_gain_points{suffix}"] = round(100.0 * (cand - champ), 2)
    return out


def _shuffled(windows: Windows, seed: int = 0) -> Windows:
    """``windows`` with whole label rows permuted: labels no longer match the signals."""
    order = np.random.default_rng(seed).permutation(len(windows))
    return Windows(windows.devices, windows.values, windows.labels[order])


def _bad_candidate(
    trainer: Trainer, champion: TrainResult, registry: Registry, on_log: Log
) -> tuple[Verdict, float]:
    """Fine-tune on shuffled labels, gate it against the champion, record it as rejected."""
    started = time.perf_counter()
    train = _shuffled(trainer.buffer.windows(holdout=False))
    on_log(f"bad candidate: fine-tuning on {len(train):,} windows with shuffled labels")
    model, meta = train_candidate(champion.model, champion.meta, train, trainer.config)
    holdout = trainer.buffer.windows(holdout=True)
    verdict = judge(
        model,
        champion.model,
        meta,
        holdout,
        GateConfig(margin=0.0),
        stride=trainer.config.join.stride,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, meta, Path(tmp) / "shuffled.keras")
        version = registry.register(NAME, path, {"gate": verdict.to_dict()}, parent=1,
                                    notes="bench: labels shuffled")  # fmt: skip
    if not verdict.promote:
        registry.reject(NAME, version.version, verdict.reason)
    on_log(f"bad candidate {version.label}: {verdict.reason}")
    return verdict, time.perf_counter() - started


def bench_retrain(
    *,
    data_dir: str | None = None,
    champion_minutes: float = 4.0,
    quick: bool = False,
    on_log: Log = print,
) -> dict[str, object]:
    """Train a champion, let the trainer fine-tune it on new users' earlier data, measure the
    gain on their later data and check the gate refuses a candidate trained on shuffled labels.

    ``quick``: a tiny model, one epoch each and four champion users (a smoke run).
    """
    started = time.perf_counter()
    data = _load(data_dir)
    train, test = split_by_user(data, HAPT_TEST_USERS)
    earlier, later = _earlier_and_later(test)
    champion, champion_users = _train_champion(train, champion_minutes, quick, on_log)
    with tempfile.TemporaryDirectory() as tmp:
        registry = _registry_with_champion(Path(tmp), champion)
        bus = MemoryBus()
        trainer = Trainer(MemorySource(bus, ["sensor.raw"]), registry, _trainer_config(quick))
        _fill(trainer, bus, earlier, on_log)
        on_log("trainer: retraining once (fine-tune, then gate on the held-out devices)")
        result: Retrain = trainer.retrain("bench")
        candidate, _ = registry.load(NAME, result.version)
        on_log("later data: running champion and candidate over the later recordings")
        later_figures = _later_figures(champion.model, candidate, earlier, later)
        bad, bad_s = _bad_candidate(trainer, champion, registry, on_log)
        trainer.close()
    verdict = result.verdict
    return {
        "dataset": data.name,
        "model": champion.meta.spec.name,
        "champion_users": champion_users,
        "new_users": len(test.users),
        "earlier_recordings": len(earlier.streams),
        "later_recordings": len(later.streams),
        "champion_train_s": round(champion.seconds, 1),
        "windows_buffered": len(trainer.buffer),
        "joiner_dropped_samples": trainer.joiner.stats.overflow,
        "train_windows": result.train_windows,
        "holdout_windows": verdict.holdout_windows,
        "champion_holdout_accuracy": verdict.champion_accuracy,
        "candidate_holdout_accuracy": verdict.candidate_accuracy,
        "promoted": verdict.promote,
        "gate_reason": verdict.reason,
        **later_figures,
        "shuffled_candidate_holdout_accuracy": bad.candidate_accuracy,
        "shuffled_promoted": bad.promote,
        "shuffled_reason": bad.reason,
        "retrain_s": round(result.seconds, 1),
        "shuffled_retrain_s": round(bad_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }


def _main() -> None:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.retrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny model, one epoch (smoke run)")
    p.add_argument("--champion-minutes", type=float, default=4.0, help="champion time budget")
    p.add_argument("--data-dir", default=None, help="directory holding uci_hapt_raw.npz")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()
    figures = bench_retrain(
        data_dir=args.data_dir, champion_minutes=args.champion_minutes, quick=args.quick,
        on_log=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    _main()
