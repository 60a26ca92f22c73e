"""``harstream train``: train a model on a dataset, evaluate it on held-out users, save it."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

from models.frame import GravityFrame
from models.registry import Registry, check_name
from models.spec import ModelSpec
from models.train_config import RECIPES, TrainConfig
from models.windowing import windows_from_recordings
from pipeline.cli.checks import (
    int_list,
    only_with,
    output_dir,
    output_file,
    positive_float,
    positive_int,
    registry_root,
)
from pipeline.cli.dataset_args import add_dataset_arguments, check_dataset_args, dataset_from_args
from pipeline.cli.progress import progress_bar, stderr
from pipeline.exceptions import ConfigError

DEFAULT_RATE_HZ = 50.0
"""the grid a CSV/NPZ dataset is resampled onto unless --rate says otherwise"""
WINDOW_ONLY = {"window": 128, "stride": 64}
"""flags of --setup window and seq2seq, and their defaults (refused with --setup stream)"""
STREAM_ONLY = {"tbptt_steps": 128, "chunks_per_lane": 16, "lanes": 32, "average_epochs": 0}
SEQ2SEQ_ONLY = {"task": "reconstruct", "horizon": 25, "attention": False}
"""flags of one --setup and their defaults (the flags are refused with the others)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model and evaluate it on held-out users",
                       description=__doc__)  # fmt: skip
    add_dataset_arguments(p, default="synthetic")
    m = p.add_argument_group("model")
    m.add_argument("--setup", choices=["window", "stream", "seq2seq"], default="window",
                   help="window: many-to-one; stream: many-to-many, stateful; seq2seq: an "
                   "unlabelled encoder-decoder whose error is an anomaly score")  # fmt: skip
    m.add_argument("--architecture", choices=["recurrent", "birnn", "mlp", "cnn", "attention"],
                   default="recurrent", help="attention (window): the hidden states pooled by "
                   "learnt weights over time")  # fmt: skip
    m.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    m.add_argument("--layers", type=int, default=1)
    m.add_argument("--hidden", type=int, default=64)
    m.add_argument("--dropout", type=float, help=_recipe_help("dropout"))
    m.add_argument("--conv-filters", type=int, default=0, help="Conv1D front end (window models)")
    m.add_argument("--next-step", action="store_true", help="add the next-sample head (stream)")
    m.add_argument(
        "--members",
        type=positive_int,
        default=1,
        help="an ensemble of this many models, trained one after another on seeds "
        "--seed, --seed + 1, ... (the same training users), their probabilities "
        "averaged; workers run them all in one batched call (default 1; not seq2seq)",
    )
    m.add_argument("--frame", choices=["auto", "device", "gravity"], default="auto",
                   help="device: the sensors' own x/y/z axes; gravity: quantities no rotation "
                   "of the phone changes, estimated causally (vertical and horizontal "
                   "acceleration, uprightness against how the device sat while walking, "
                   "rotation about the vertical and across it), for phones worn any way up; "
                   "it needs acc_x/y/z (with gravity) and optionally gyro_x/y/z and nothing "
                   "else; auto (default): gravity for activity classifiers when the channels "
                   "allow it, else device (seq2seq anomaly models: device, a flipped axis is "
                   "a fault)")  # fmt: skip
    m.add_argument("--window", type=positive_int,
                   help="window, seq2seq: samples per window (default 128)")  # fmt: skip
    m.add_argument("--stride", type=positive_int,
                   help="window, seq2seq: samples between windows (default 64)")  # fmt: skip
    m.add_argument("--task", choices=["reconstruct", "forecast"],
                   help="seq2seq: reconstruct the window from one vector (autoencoder) or "
                   "forecast the next --horizon samples (default reconstruct)")  # fmt: skip
    m.add_argument("--horizon", type=positive_int,
                   help="seq2seq forecast: samples predicted (default 25)")  # fmt: skip
    m.add_argument("--attention", action="store_true",
                   help="seq2seq forecast: dot-product attention from each decoder step to the "
                   "encoder's states")  # fmt: skip
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, help=_recipe_help("epochs"))
    t.add_argument("--batch-size", type=positive_int, help=_recipe_help("batch_size"))
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--clipnorm", type=float, default=1.0, help="gradient clipping (0 = off)")
    t.add_argument("--patience", type=positive_int,
                   help="epochs without a better validation accuracy before stopping " +
                   _recipe_help("patience"))  # fmt: skip
    t.add_argument("--no-class-weights", action="store_true")
    t.add_argument("--validation-users", type=float, default=0.2,
                   help="fraction of training users held out for early stopping")  # fmt: skip
    t.add_argument("--max-minutes", type=positive_float,
                   help="training time budget, per member of an ensemble " +
                   _recipe_help("max_minutes"))  # fmt: skip
    t.add_argument("--train-stride", type=positive_int,
                   help="window: training windows are taken every this many samples (--stride: "
                   f"how often a worker classifies; default {RECIPES['window']['train_stride']})"
                   )  # fmt: skip
    t.add_argument("--rotate-deg", type=float, default=0.0,
                   help="phones worn at other angles: window models also train on a copy of "
                   "each window, stream models on each segment, turned by a fresh random "
                   "rotation of up to this many degrees every epoch (180: any orientation); "
                   "held-out users are validated with one turned copy too "
                   "(default 0 = off)")  # fmt: skip
    t.add_argument("--tbptt-steps", type=int, help="stream: steps per BPTT chunk (default 128)")
    t.add_argument("--chunks-per-lane", type=int,
                   help="stream: chunks the state is carried over (1 = fixed windows; "
                   "default 16)")  # fmt: skip
    t.add_argument("--lanes", type=int, help="stream: segments per batch (default 32)")
    t.add_argument(
        "--average-epochs",
        type=int,
        help="stream: keep the mean of the weights after each of the last this many "
        "epochs (weight averaging over the end of the learning-rate schedule, which then "
        "runs to its end: --patience is not used) instead of the best validation epoch's "
        f"(0); default the stream recipe's {RECIPES['stream']['average_epochs']:g}, at most "
        "half of --epochs",
    )
    t.add_argument("--refine-delay-ms", type=positive_float,
                   help="stream: also train a refiner (a small GRU over the model's "
                   "probabilities and HMM beliefs that names the sample this many ms back), "
                   "saved inside the model file: a worker with [worker] delay_ms at this delay "
                   "emits the mean of its labels and the smoother's (trained with the "
                   "settings of models.refine.RefineConfig, its seed included; "
                   "default: none)")  # fmt: skip
    t.add_argument("--test-users", type=int_list, default=None,
                   help="comma-separated test users (default: the official split for UCI "
                   "data, else 30%% of users)")  # fmt: skip
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="model file (default: models-out/<name>.keras)")
    o.add_argument("--registry", default=None, help="also register it in this registry root")
    o.add_argument("--name", help="registry model name (default har)")
    o.add_argument("--promote", action="store_true", help="make the new version the champion")
    p.set_defaults(run=run)


def _recipe_help(key: str) -> str:
    """``--help``'s word on a flag whose default is the setup's recipe."""
    values = " / ".join(f"{RECIPES[s][key]:g}" for s in ("window", "stream", "seq2seq"))
    return f"(default the setup's measured recipe: {values} for window / stream / seq2seq)"


def _checked(args: argparse.Namespace):
    """The model spec, the training config and the model file's path, every flag checked
    before any work (a refusal after minutes of training helps no one)."""
    for setups, flags in ((("window", "seq2seq"), WINDOW_ONLY), (("stream",), STREAM_ONLY),
                          (("seq2seq",), SEQ2SEQ_ONLY)):  # fmt: skip
        given = {dest: "--" + dest.replace("_", "-") for dest in flags}
        where = "to --setup " + " and ".join(setups)
        only_with(args, args.setup in setups, where, **given)
    only_with(args, args.task == "forecast", "with --task forecast", horizon="--horizon",
              attention="--attention")  # fmt: skip
    only_with(args, args.setup == "window", "to --setup window", train_stride="--train-stride")
    only_with(args, args.setup == "stream", "to --setup stream",
              refine_delay_ms="--refine-delay-ms")  # fmt: skip
    recipe = RECIPES[args.setup]
    averaged = args.average_epochs is None  # not given: the recipe's, over a shorter schedule too
    patience = args.patience
    for key in recipe:  # the flags not given: the setup's recipe
        setattr(args, key, _given(args, key, recipe))
    if args.setup == "stream" and averaged:
        args.average_epochs = int(min(args.average_epochs, args.epochs // 2))
    if args.setup == "stream" and args.average_epochs and (patience or args.epochs) < args.epochs:
        raise ConfigError(f"--patience {patience} would stop early, but weight averaging "
                          f"(the mean of the last {args.average_epochs} epochs) runs the "
                          "schedule to its end: add --average-epochs 0 to keep the best "
                          "epoch instead")  # fmt: skip
    if args.setup == "seq2seq" and (args.rotate_deg or args.no_class_weights):
        raise ConfigError("--rotate-deg and --no-class-weights are for classifiers, not for "
                          "--setup seq2seq")  # fmt: skip
    only_with(args, bool(args.registry), "with --registry", name="--name", promote="--promote")
    check_dataset_args(args)
    seq2seq = {}
    if args.setup == "seq2seq":
        seq2seq = {key: _given(args, key, SEQ2SEQ_ONLY) for key in SEQ2SEQ_ONLY}
        if seq2seq["task"] == "reconstruct":
            seq2seq["horizon"] = 0
    spec = ModelSpec(
        setup=args.setup, architecture=args.architecture, cell=args.cell, layers=args.layers,
        hidden=args.hidden, dropout=args.dropout, conv_filters=args.conv_filters,
        next_step=args.next_step, frame="device" if args.frame == "auto" else args.frame,
        members=args.members, **seq2seq,
    )  # fmt: skip
    stream = {key: _given(args, key, STREAM_ONLY) for key in STREAM_ONLY}
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        clipnorm=args.clipnorm or None, patience=args.patience,
        class_weights=not args.no_class_weights, validation_users=args.validation_users,
        seed=args.seed, max_seconds=args.max_minutes * 60,
        rotate_deg=args.rotate_deg, **stream,
    )  # fmt: skip
    out = _out(args.out, spec) if args.out else None  # the default's name waits for the frame
    if args.registry:
        registry_root(args.registry, "--registry", write=True)
        check_name(args.name or "har")
    return spec, config, out


def _out(path: str | None, spec: ModelSpec) -> Path:
    """The model file (``--out``, else ``models-out/<name>.keras``), checked writable."""
    out = output_file(path or f"models-out/{spec.name}.keras", "--out", suffix=".keras")
    output_dir(out.with_suffix(""), "--out (its evaluation directory)")
    return out


def _given(args: argparse.Namespace, key: str, defaults: dict[str, object]) -> object:
    """The flag's value, or its setup's default when it was not given."""
    value = getattr(args, key)
    return defaults[key] if value is None else value


def run(args: argparse.Namespace) -> int:
    spec, config, out = _checked(args)
    from models.io import save_model  # Keras: not at start-up
    from models.training import (  # Keras: not at start-up
        train_seq2seq_model,
        train_stream_model,
        train_window_model,
    )
    from pipeline.trainer.modelling import (  # the datasets package: not at start-up
        evaluate_model,
        recordings,
        train_test_split,
        write_evaluation,
    )

    window, stride = _given(args, "window", WINDOW_ONLY), _given(args, "stride", WINDOW_ONLY)
    data = dataset_from_args(args, DEFAULT_RATE_HZ)
    if args.frame == "auto" and spec.setup != "seq2seq" and GravityFrame.reads(data.channels):
        spec = replace(spec, frame="gravity")
        stderr.print("frame: gravity (the channels allow it; --frame device reads the raw axes)")
    if spec.frame == "gravity":  # can it read these channels? (before any training)
        GravityFrame.for_channels(data.channels, data.rate_hz)
    out = out or _out(None, spec)
    train, test = train_test_split(data, args.test_users, seed=args.seed)
    recs, users = recordings(train)
    provenance = {
        "dataset": data.name,
        "train_users": sorted(train.users),
        "test_users": sorted(test.users),
        "command": "harstream train",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    common = dict(channels=data.channels, rate_hz=data.rate_hz, config=config,
                  provenance=provenance)  # fmt: skip
    stderr.print(f"training {spec.name} on {len(train.streams)} streams of users "
                 f"{sorted(train.users)}; testing on {sorted(test.users)}")  # fmt: skip
    with progress_bar(f"train {spec.name}") as update:

        def on_epoch(epoch: int, epochs: int, logs: dict) -> None:
            update(epoch, epochs)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
            stderr.print(f"  epoch {epoch}/{epochs}: {shown}")

        if spec.setup == "window":
            X, y, g = windows_from_recordings(recs, window, args.train_stride, users)
            result = train_window_model(spec, X, y, g, stride=stride, classes=data.activities,
                                        on_epoch=on_epoch, **common)  # fmt: skip
        elif spec.setup == "stream":
            result = train_stream_model(spec, recs, users, classes=data.activities,
                                        on_epoch=on_epoch, **common)  # fmt: skip
        else:
            result = train_seq2seq_model(spec, recs, users, window=window, stride=stride,
                                         on_epoch=on_epoch, **common)  # fmt: skip
    evaluation = evaluate_model(result.model, result.meta, test)
    stderr.print(evaluation.evaluation.to_text())
    if evaluation.thirds:
        stderr.print("accuracy by third: " + ", ".join(f"{a:.4f}" for a in evaluation.thirds))
    meta, refiner = replace(result.meta, units=asdict(data.units)), None
    if args.refine_delay_ms:
        refiner, figures = _refiner(result, recs, users, test, args.refine_delay_ms)
        meta = replace(meta, provenance={**meta.provenance, "refiner": figures})
        evaluation.delayed = figures
    save_model(result.model, meta, out, refiner)
    written = write_evaluation(evaluation, out.with_suffix(""), f"{spec.name} on {data.name}")
    stderr.print(f"trained in {result.seconds:.0f} s; model → {out}; evaluation → {written[0]}")
    if args.registry:
        reg, name = Registry(args.registry), args.name or "har"
        version = reg.register(
            name, out, evaluation.to_dict(), training_data=f"{data.name} users "
            f"{sorted(train.users)}",
        )  # fmt: skip
        stderr.print(f"registered {name} {version.label}")
        if args.promote:
            reg.promote(name, version.version)
            stderr.print(f"{name}: champion is now {version.label}")
    return 0


def _refiner(result, recs, users, test, delay_ms: float):
    """The refiner of the stream model ``result`` for labels ``delay_ms`` late (its model and
    metadata), trained on its training users' ``recs`` and chosen on its validation users;
    and what it does on the ``test`` users: macro-F1 of the smoother's labels and of their mean
    with the refiner's (printed too)."""
    from models.refine import RefineConfig, RefinerData, fit_refiner  # Keras: not at start-up
    from models.smoothing import lag_samples  # with the others: only a refiner needs it
    from models.training import split_recordings  # Keras: not at start-up
    from pipeline.trainer.modelling import evaluate_delayed  # Keras: not at start-up

    meta = result.meta
    if meta.grammar is None:
        raise ConfigError("--refine-delay-ms: the model has no grammar to read beliefs from")
    lag, config = lag_samples(delay_ms, meta.rate_hz), RefineConfig()
    data = RefinerData.of(result.model, meta.grammar,
                          *split_recordings(recs, users, result.validation_users))  # fmt: skip
    stderr.print(f"training a refiner of {config.spec.name} for {delay_ms:g} ms ({lag} samples)")
    with progress_bar(f"refiner {delay_ms:g} ms") as update:

        def on_epoch(epoch: int, f1: float) -> None:
            update(epoch + 1, config.epochs)
            stderr.print(f"  epoch {epoch + 1}/{config.epochs}: validation macro-F1 {f1:.4f}")

        model, refiner_meta, history = fit_refiner(data, meta.classes, meta.rate_hz, lag, config,
                                                   on_epoch)  # fmt: skip
    tested = evaluate_delayed(result.model, meta, (model, refiner_meta), test, delay_ms)
    figures = {"delay_ms": delay_ms, "lag": lag, "epochs": len(history["loss"]),
               "validation_macro_f1": max(history["val_macro_f1"]), **tested}  # fmt: skip
    stderr.print(f"test users at {delay_ms:g} ms: macro-F1 {figures['smoother_macro_f1']:.4f} "
                 f"smoother, {figures['refined_macro_f1']:.4f} with the refiner")  # fmt: skip
    return (model, refiner_meta), figures
