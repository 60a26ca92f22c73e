"""``harstream train``: train a model on a dataset, evaluate it on held-out users, save it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.cli.dataset_args import add_dataset_arguments, dataset_from_args
from pipeline.cli.progress import progress_bar, stderr


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model and evaluate it on held-out users",
                       description=__doc__)  # fmt: skip
    add_dataset_arguments(p, default="synthetic")
    m = p.add_argument_group("model")
    m.add_argument("--setup", choices=["window", "stream"], default="window",
                   help="window: many-to-one; stream: many-to-many, stateful")  # fmt: skip
    m.add_argument("--architecture", choices=["recurrent", "birnn", "mlp", "cnn"],
                   default="recurrent")  # fmt: skip
    m.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    m.add_argument("--layers", type=int, default=1)
    m.add_argument("--hidden", type=int, default=64)
    m.add_argument("--dropout", type=float, default=0.0)
    m.add_argument("--conv-filters", type=int, default=0, help="Conv1D front end (window models)")
    m.add_argument("--next-step", action="store_true", help="add the next-sample head (stream)")
    m.add_argument("--window", type=int, default=128, help="samples per window (%(default)s)")
    m.add_argument("--stride", type=int, default=64, help="samples between windows (%(default)s)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--clipnorm", type=float, default=1.0, help="gradient clipping (0 = off)")
    t.add_argument("--patience", type=int, default=6)
    t.add_argument("--no-class-weights", action="store_true")
    t.add_argument("--validation-users", type=float, default=0.2,
                   help="fraction of training users held out for early stopping")  # fmt: skip
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--rotate-deg", type=float, default=0.0,
                   help="window models: every epoch also trains on a copy of each window "
                   "turned by a fresh random rotation of up to this many degrees; held-out "
                   "users are validated with one turned copy too (0 = off)")  # fmt: skip
    t.add_argument("--tbptt-steps", type=int, default=128, help="stream: steps per BPTT chunk")
    t.add_argument("--chunks-per-lane", type=int, default=16,
                   help="stream: chunks the state is carried over (1 = fixed windows)")  # fmt: skip
    t.add_argument("--lanes", type=int, default=32, help="stream: segments per batch")
    t.add_argument("--test-users", default=None,
                   help="comma-separated test users (default: the official split for UCI "
                   "data, else 30%% of users)")  # fmt: skip
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="model file (default: models-out/<name>.keras)")
    o.add_argument("--registry", default=None, help="also register it in this registry root")
    o.add_argument("--name", default="har", help="registry model name (%(default)s)")
    o.add_argument("--promote", action="store_true", help="make the new version the champion")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models.io import save_model
    from models.registry import Registry
    from models.spec import ModelSpec
    from models.training import TrainConfig, train_stream_model, train_window_model
    from models.windowing import windows_from_recordings
    from pipeline.trainer.modelling import (
        evaluate_model,
        recordings,
        train_test_split,
        write_evaluation,
    )

    spec = ModelSpec(
        setup=args.setup, architecture=args.architecture, cell=args.cell, layers=args.layers,
        hidden=args.hidden, dropout=args.dropout, conv_filters=args.conv_filters,
        next_step=args.next_step,
    )  # fmt: skip
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        clipnorm=args.clipnorm or None, patience=args.patience,
        class_weights=not args.no_class_weights, validation_users=args.validation_users,
        seed=args.seed, max_seconds=args.max_minutes * 60 if args.max_minutes else None,
        tbptt_steps=args.tbptt_steps, chunks_per_lane=args.chunks_per_lane, lanes=args.lanes,
        rotate_deg=args.rotate_deg,
    )  # fmt: skip
    data = dataset_from_args(args)
    test_users = [int(u) for u in args.test_users.split(",")] if args.test_users else None
    train, test = train_test_split(data, test_users, seed=args.seed)
    recs, users = recordings(train)
    provenance = {
        "dataset": data.name,
        "train_users": sorted(train.users),
        "test_users": sorted(test.users),
        "command": "harstream train",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    common = dict(
        channels=data.channels, classes=data.activities, rate_hz=data.rate_hz, config=config,
        provenance=provenance,
    )  # fmt: skip
    stderr.print(f"training {spec.name} on {len(train.streams)} streams of users "
                 f"{sorted(train.users)}; testing on {sorted(test.users)}")  # fmt: skip
    with progress_bar(f"train {spec.name}") as update:

        def on_epoch(epoch: int, epochs: int, logs: dict) -> None:
            update(epoch, epochs)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
            stderr.print(f"  epoch {epoch}/{epochs}: {shown}")

        if spec.setup == "window":
            X, y, g = windows_from_recordings(recs, args.window, args.stride, users)
            result = train_window_model(spec, X, y, g, stride=args.stride, on_epoch=on_epoch,
                                        **common)  # fmt: skip
        else:
            result = train_stream_model(spec, recs, users, on_epoch=on_epoch, **common)
    evaluation = evaluate_model(result.model, result.meta, test)
    stderr.print(evaluation.evaluation.to_text())
    if evaluation.thirds:
        stderr.print("accuracy by third: " + ", ".join(f"{a:.4f}" for a in evaluation.thirds))
    out = Path(args.out or f"models-out/{spec.name}.keras")
    save_model(result.model, result.meta, out)
    written = write_evaluation(evaluation, out.with_suffix(""), f"{spec.name} on {data.name}")
    stderr.print(f"trained in {result.seconds:.0f} s; model → {out}; evaluation → {written[0]}")
    if args.registry:
        reg = Registry(args.registry)
        version = reg.register(
            args.name, out, evaluation.to_dict(), training_data=f"{data.name} users "
            f"{sorted(train.users)}",
        )  # fmt: skip
        stderr.print(f"registered {args.name} {version.label}")
        if args.promote:
            reg.promote(args.name, version.version)
            stderr.print(f"{args.name}: champion is now {version.label}")
    return 0
