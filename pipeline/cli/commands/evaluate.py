"""``harstream evaluate``: a saved or registered model on a dataset's users."""

from __future__ import annotations

import argparse
import json

from models.registry import Registry
from pipeline.cli.checks import input_file, int_list, only_with, output_dir, registry_root
from pipeline.cli.dataset_args import add_dataset_arguments, check_dataset_args, dataset_from_args
from pipeline.cli.progress import stderr
from pipeline.exceptions import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on held-out users", description=__doc__)
    src = p.add_argument_group("model (a file, or a registry entry)")
    src.add_argument("--model", help="path of a .keras model file")
    src.add_argument("--registry", help="registry root")
    src.add_argument("--name", help="registry model name (default har)")
    src.add_argument("--ref", help="version, vNNNN, latest or alias (default champion)")
    add_dataset_arguments(p, default="synthetic")
    p.add_argument("--test-users", type=int_list, default=None,
                   help="users to evaluate on (default: the official test split for UCI data, "
                   "else all users of --users / the dataset)")  # fmt: skip
    p.add_argument("--out-dir", default="evaluation", help="where metrics.json, evaluation.txt "
                   "and confusion.png go (seq2seq models: scores.png; attention models also "
                   "attention.png) (%(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    """Every flag, before a model or a dataset is loaded."""
    if bool(args.model) == bool(args.registry):
        raise ConfigError("give either --model PATH or --registry ROOT (with --name/--ref)")
    only_with(args, bool(args.registry), "with --registry", name="--name", ref="--ref")
    if args.model:
        input_file(args.model, "--model", suffix=".keras")
    else:
        if not registry_root(args.registry, "--registry").is_dir():
            raise ConfigError(f"--registry {args.registry}: no such directory")
        Registry(args.registry).get(args.name or "har", args.ref or "champion")
    check_dataset_args(args)
    output_dir(args.out_dir, "--out-dir")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from models.io import load_model  # Keras: not at start-up
    from pipeline.trainer.modelling import (  # the datasets package: not at start-up
        evaluate_model,
        train_test_split,
        write_evaluation,
    )
    from streams.units import Units  # numpy: not at start-up

    if args.model:
        model, meta = load_model(args.model)
    else:
        model, meta = Registry(args.registry).load(args.name or "har", args.ref or "champion")
    data = dataset_from_args(args, meta.rate_hz, Units(**meta.units))
    if args.test_users:
        _, data = train_test_split(data, args.test_users)
    elif data.name in ("uci_har", "uci_hapt"):
        _, data = train_test_split(data, None)
    run_ = evaluate_model(model, meta, data)
    written = write_evaluation(run_, args.out_dir, f"{meta.spec.name} on {data.name}")
    if args.json:
        print(json.dumps(run_.to_dict()))
    else:
        print(run_.evaluation.to_text())
        if run_.thirds:
            print("accuracy by third of each recording: "
                  + ", ".join(f"{a:.4f}" for a in run_.thirds))  # fmt: skip
    stderr.print(f"written: {', '.join(written)}")
    return 0
