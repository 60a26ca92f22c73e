"""The demo's default models, made by the project's own training code on the synthetic fleet.

``make demo-models`` (or ``python -m pipeline.demo_models``) retrains them (well under a minute
on 2 cores) into ``pipeline/assets/``; ``harstream demo`` trains them there on first run if the
files are missing. Their metadata records how they were made.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from models.io import save_model
from models.spec import ModelSpec
from models.training import TrainConfig, train_stream_model, train_window_model
from models.windowing import windows_from_recordings
from pipeline.trainer.modelling import recordings
from streams.datasets import SyntheticConfig, simulate

ASSETS = Path(__file__).resolve().parent / "assets"
STREAM_FILE = ASSETS / "demo-stream.keras"
WINDOW_FILE = ASSETS / "demo-window.keras"
TRAIN_SEED = 11
"""the synthetic fleet the demo models learn from (the demo replays other seeds)"""


def build(out: Path = ASSETS, quiet: bool = False) -> tuple[Path, Path]:
    say = (lambda *a: None) if quiet else print
    fleet = SyntheticConfig(devices=48, duration_s=240, seed=TRAIN_SEED)
    data = simulate(fleet)
    recs, users = recordings(data)
    provenance = {
        "dataset": f"synthetic fleet, {fleet}",
        "made_by": "python -m pipeline.demo_models",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    common = dict(channels=data.channels, classes=data.activities, rate_hz=data.rate_hz)
    started = time.perf_counter()
    stream = train_stream_model(
        ModelSpec(setup="stream", cell="gru", layers=1, hidden=32, next_step=True),
        recs, users, config=TrainConfig(epochs=6, tbptt_steps=50, chunks_per_lane=10, lanes=16,
                                        learning_rate=3e-3, seed=1),
        provenance=provenance, **common,
    )  # fmt: skip
    say(f"stream model: {stream.history['val_accuracy'][-1]:.3f} validation accuracy")
    X, y, g = windows_from_recordings(recs, 100, 50, users)
    window = train_window_model(
        ModelSpec(architecture="cnn", layers=2, hidden=32), X, y, g, stride=50,
        config=TrainConfig(epochs=8, learning_rate=3e-3, seed=1), provenance=provenance, **common,
    )  # fmt: skip
    say(f"window model: {window.history['val_accuracy'][-1]:.3f} validation accuracy")
    paths = (
        save_model(stream.model, stream.meta, out / STREAM_FILE.name),
        save_model(window.model, window.meta, out / WINDOW_FILE.name),
    )
    say(f"trained in {time.perf_counter() - started:.0f} s → {', '.join(map(str, paths))}")
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ASSETS))
    build(Path(parser.parse_args().out))
