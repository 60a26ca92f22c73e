"""``harstream train`` and ``harstream evaluate`` end to end on a small synthetic fleet."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from models.io import load_model, load_refiner, read_meta
from models.refiner_runtime import LAG_KEY
from models.registry import Registry
from pipeline.cli import main
from pipeline.cli.commands.train import _checked
from pipeline.cli.main import build_parser
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams.memory import MemoryBus, MemorySink, MemorySource

FLEET = ["--dataset", "synthetic", "--devices", "6", "--duration-s", "60", "--seed", "2"]


def test_train_window_model_register_and_evaluate(tmp_path, capsys):
    model = tmp_path / "m.keras"
    code = main(
        ["train", *FLEET, "--cell", "gru", "--hidden", "8", "--epochs", "2", "--window", "32",
         "--stride", "16", "--rotate-deg", "15", "--test-users", "1,2", "--out", str(model),
         "--registry", str(tmp_path / "reg"), "--promote"]
    )  # fmt: skip
    assert code == 0 and model.is_file()
    meta = read_meta(model)
    assert meta.window == 32 and meta.provenance["test_users"] == [1, 2]
    assert (tmp_path / "m" / "confusion.png").is_file()
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["unit"] == "window" and 0.0 <= saved["accuracy"] <= 1.0
    assert Registry(tmp_path / "reg").aliases("har") == {"champion": 1}
    capsys.readouterr()
    code = main(
        ["evaluate", "--registry", str(tmp_path / "reg"), *FLEET, "--test-users", "1,2",
         "--out-dir", str(tmp_path / "ev"), "--json"]
    )  # fmt: skip
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and printed["accuracy"] == pytest.approx(saved["accuracy"])


def test_train_stream_model_with_truncated_bptt(tmp_path):
    model = tmp_path / "s.keras"
    code = main(
        ["train", *FLEET, "--setup", "stream", "--hidden", "8", "--epochs", "1",
         "--tbptt-steps", "50", "--chunks-per-lane", "4", "--lanes", "2", "--test-users", "3",
         "--out", str(model)]
    )  # fmt: skip
    assert code == 0
    saved = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert saved["unit"] == "sample" and len(saved["accuracy_by_third"]) == 3


def test_train_a_stream_model_with_a_refiner_that_a_delayed_worker_serves(tmp_path, capsys):
    model = tmp_path / "r.keras"
    code = main(
        ["train", *FLEET, "--setup", "stream", "--hidden", "8", "--epochs", "1",
         "--tbptt-steps", "50", "--chunks-per-lane", "4", "--lanes", "2", "--test-users", "3",
         "--refine-delay-ms", "200", "--out", str(model)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "with the refiner" in capsys.readouterr().err
    refiner = load_refiner(model)
    assert refiner is not None and refiner[1].provenance[LAG_KEY] == 10  # 200 ms at 50 Hz
    figures = read_meta(model).provenance["refiner"]
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())["delayed"]
    assert saved == figures and figures["lag"] == 10 and figures["epochs"] >= 1
    assert 0.0 <= figures["refined_macro_f1"] <= 1.0 and "smoother_accuracy" in figures
    serving = ServingModel.load(*load_model(model), "file:r", refiner=refiner)
    for delay_ms, mixed in ((200.0, True), (400.0, False)):
        worker = Worker(MemorySource(MemoryBus(1, 10), ["sensor.raw"]),
                        MemorySink(MemoryBus(1, 10)), replace(serving, refiner=serving.refiner),
                        config=WorkerConfig(delay_ms=delay_ms))  # fmt: skip
        assert (worker.stream_model.refiner is not None) == mixed


@pytest.mark.parametrize(
    ("flags", "epochs", "averaged"),
    [([], 80, 40), (["--epochs", "10"], 10, 5),
     (["--epochs", "10", "--average-epochs", "8"], 10, 8), (["--average-epochs", "0"], 80, 0)],
)  # fmt: skip
def test_stream_models_average_the_second_half_of_their_schedule_by_default(
    flags, epochs, averaged, tmp_path
):
    """The stream recipe: the mean of the last 40 of 80 epochs, at most half of a shorter
    schedule; given, the flag wins."""
    argv = ["train", *FLEET, "--setup", "stream", *flags, "--out", str(tmp_path / "m.keras")]
    _, config, _ = _checked(build_parser().parse_args(argv))
    assert (config.epochs, config.average_epochs) == (epochs, averaged)


def test_early_stopping_with_weight_averaging_is_refused_before_training(tmp_path, capsys):
    argv = ["train", *FLEET, "--setup", "stream", "--patience", "5", "--out",
            str(tmp_path / "m.keras")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--average-epochs 0" in err and "epoch 1" not in err
    _, config, _ = _checked(build_parser().parse_args([*argv[:-2], "--average-epochs", "0"]))
    assert (config.patience, config.average_epochs) == (5, 0)


def test_train_a_gravity_frame_stream_model_and_evaluate_it(tmp_path, capsys):
    """Phone channels (acc_x/y/z, gyro_x/y/z): the gravity frame by default."""
    model = tmp_path / "g.keras"
    code = main(
        ["train", *FLEET, "--setup", "stream", "--next-step",
         "--hidden", "8", "--epochs", "1", "--tbptt-steps", "50", "--chunks-per-lane", "2",
         "--lanes", "2", "--test-users", "3", "--out", str(model)]
    )  # fmt: skip
    assert code == 0
    meta = read_meta(model)
    assert meta.spec.frame == "gravity" and len(meta.mean) == 5  # the frame's features
    assert "frame: gravity (the channels allow it" in capsys.readouterr().err
    code = main(["evaluate", "--model", str(model), *FLEET, "--test-users", "3", "--json",
                 "--out-dir", str(tmp_path / "ev")])  # fmt: skip
    accuracy = json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"]
    assert code == 0 and 0.0 <= accuracy <= 1.0


def test_the_gravity_frame_refuses_channels_it_cannot_read_before_training(tmp_path, capsys):
    csv = tmp_path / "x.csv"
    csv.write_text(
        "device,timestamp,x,y,z,label\n"
        + "".join(f"d{i % 2},{1000 + 20 * (i // 2)},0.5,0,1,SITTING\n" for i in range(200))
    )
    code = main(["train", "--dataset", str(csv), "--frame", "gravity", "--epochs", "1",
                 "--out", str(tmp_path / "m.keras")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "gravity frame reads one accelerometer" in err and "epoch" not in err


def test_train_a_seq2seq_autoencoder_and_evaluate_its_anomaly_scores(tmp_path, capsys):
    model = tmp_path / "ae.keras"
    code = main(
        ["train", *FLEET, "--setup", "seq2seq", "--task", "reconstruct", "--cell", "gru",
         "--hidden", "8", "--epochs", "1", "--window", "32", "--stride", "16", "--clipnorm",
         "0.5", "--max-minutes", "5", "--test-users", "1,2", "--out", str(model)]
    )  # fmt: skip
    assert code == 0
    meta = read_meta(model)
    assert meta.spec.name == "seq2seq-reconstruct-gru-1x8" and meta.classes == ()
    assert meta.threshold > 0 and meta.threshold_quantile == 0.99 and meta.window == 32
    saved = json.loads((tmp_path / "ae" / "metrics.json").read_text())
    assert saved["windows"] > 0 and saved["threshold"] == meta.threshold
    assert 0 < saved["median"] <= saved["p99"] and 0.0 <= saved["above_threshold"] <= 1.0
    assert (tmp_path / "ae" / "scores.png").is_file()
    capsys.readouterr()
    code = main(["evaluate", "--model", str(model), *FLEET, "--test-users", "1,2", "--json",
                 "--out-dir", str(tmp_path / "ev")])  # fmt: skip
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and printed["mean"] == pytest.approx(saved["mean"], rel=1e-5)
    assert "99th percentile" in (tmp_path / "ev" / "evaluation.txt").read_text()


def test_train_a_seq2seq_forecaster_with_attention(tmp_path):
    model = tmp_path / "f.keras"
    code = main(
        ["train", *FLEET, "--setup", "seq2seq", "--task", "forecast", "--attention",
         "--horizon", "5", "--hidden", "8", "--epochs", "1", "--window", "24", "--stride", "24",
         "--test-users", "3", "--validation-users", "0.3", "--out", str(model)]
    )  # fmt: skip
    assert code == 0
    meta = read_meta(model)
    assert (meta.spec.task, meta.spec.horizon, meta.spec.attention) == ("forecast", 5, True)
    assert json.loads((tmp_path / "f" / "metrics.json").read_text())["windows"] > 0


def test_train_an_attention_window_model_and_plot_its_weights(tmp_path):
    model = tmp_path / "a.keras"
    code = main(
        ["train", *FLEET, "--architecture", "attention", "--cell", "gru", "--hidden", "8",
         "--epochs", "1", "--window", "32", "--stride", "16", "--test-users", "1,2",
         "--out", str(model)]
    )  # fmt: skip
    assert code == 0 and read_meta(model).spec.name == "window-attention-gru-gravity-1x8"
    assert (tmp_path / "a" / "attention.png").is_file()
    assert (tmp_path / "a" / "confusion.png").is_file()
    code = main(["evaluate", "--model", str(model), *FLEET, "--test-users", "1",
                 "--out-dir", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0 and (tmp_path / "ev" / "attention.png").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--task", "forecast"], "--task applies only to --setup seq2seq"),
        (["--attention"], "--attention applies only to --setup seq2seq"),
        (["--setup", "stream", "--horizon", "5"], "--horizon applies only to --setup seq2seq"),
        (["--setup", "stream", "--window", "32"], "--window applies only to --setup window"),
        (["--setup", "seq2seq", "--lanes", "4"], "--lanes applies only to --setup stream"),
        (["--refine-delay-ms", "500"], "--refine-delay-ms applies only to --setup stream"),
        (["--setup", "seq2seq", "--horizon", "5"], "--horizon applies only with --task forecast"),
        (["--setup", "seq2seq", "--attention"], "--attention applies only with --task forecast"),
        (["--setup", "seq2seq", "--rotate-deg", "90"], "--rotate-deg"),
        (["--setup", "seq2seq", "--no-class-weights"], "--no-class-weights"),
        (["--setup", "seq2seq", "--dropout", "0.2"], "no dropout"),
        (["--setup", "seq2seq", "--architecture", "attention"], "window (many-to-one)"),
        (["--setup", "stream", "--architecture", "attention"], "unidirectional recurrent"),
    ],
)
def test_options_of_another_setup_are_refused_before_training(flags, message, tmp_path, capsys):
    code = main(["train", *FLEET, *flags, "--epochs", "1", "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "epoch" not in err
    assert not (tmp_path / "m.keras").exists()


def test_evaluate_needs_exactly_one_model_source(capsys):
    assert main(["evaluate", *FLEET]) == 2
    assert "--model" in capsys.readouterr().err


def test_model_and_dataset_channels_must_match(tmp_path, capsys):
    model = tmp_path / "m.keras"
    main(["train", *FLEET, "--hidden", "4", "--epochs", "1", "--window", "32", "--stride", "32",
          "--out", str(model)])  # fmt: skip
    csv = tmp_path / "other.csv"
    csv.write_text(
        "device,timestamp,x,label\n"
        + "".join(f"d{i % 2},{1000 + 20 * (i // 2)},0.5,SITTING\n" for i in range(200))
    )
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--dataset", str(csv)]) == 2
    assert "channels" in capsys.readouterr().err
    # channels the gravity frame cannot read: the default trains on the raw axes
    csv.write_text(
        "device,user,timestamp,x,label\n"
        + "".join(f"d{i % 4},{i % 4},{1000 + 20 * (i // 4)},0.5,SITTING\n" for i in range(400))
    )
    code = main(["train", "--dataset", str(csv), "--hidden", "4", "--epochs", "1", "--window",
                 "32", "--stride", "32", "--out", str(model)])  # fmt: skip
    assert code == 0 and read_meta(model).spec.frame == "device"
    assert "frame: gravity" not in capsys.readouterr().err


def test_train_on_a_phone_export_resamples_and_converts_with_no_extra_flags(tmp_path, capfd):
    """A 100 Hz, jittery, bursty export in m/s² from phones worn any way up: the stream and the
    window setup train at 50 Hz in g with nothing but the split, and say what they did."""
    from pipeline.reports.phone_export import PhoneExport, export
    from streams.datasets import load_dataset
    from streams.datasets.generic import write_columns

    fleet = load_dataset("synthetic", devices=6, duration_s=20, seed=4)
    phone = tmp_path / "phone.csv"
    write_columns(export(fleet, PhoneExport(seed=1)), phone)
    for setup in ("stream", "window"):
        model = tmp_path / f"{setup}.keras"
        code = main(["train", "--dataset", str(phone), "--setup", setup, "--test-users", "1,2",
                     "--hidden", "4", "--epochs", "1", "--out", str(model)])  # fmt: skip
        err = capfd.readouterr().err
        assert code == 0, err
        assert "6 of 6 devices resampled to 50 Hz (low-pass before downsampling)" in err
        assert "converted to acc=g,gyro=rad/s" in err
        meta = read_meta(model)
        assert meta.rate_hz == 50.0 and meta.units == {"acceleration": "g", "angular_rate": "rad/s"}
