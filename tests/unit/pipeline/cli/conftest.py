"""Fixtures of the CLI tests: the ``harstream`` entry point in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from corpus import tiny_model_file

HEAVY = ("tensorflow", "keras", "matplotlib", "kafka", "confluent_kafka")
"""packages the CLI must not import unless a command builds, trains, loads or plots a model, or
talks to Kafka"""

_RUN = """
import contextlib, io, json, sys
from pipeline.cli.main import main

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help, argparse's refusals
            code = exc.code
    heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
    results.append({"argv": argv, "code": code, "heavy": heavy,
                    "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture
def cli_in_subprocess(tmp_path: Path) -> Callable[..., list[dict]]:
    """Factory: ``run(*argvs)`` runs each argv through ``harstream``'s ``main`` in turn, in one
    fresh interpreter whose working directory is ``tmp_path``; per argv it returns the exit code,
    stdout, stderr and which of :data:`HEAVY` had been imported by then."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARSTREAM_REGISTRY")}

    def run(*argvs: list[str]) -> list[dict]:
        done = subprocess.run(
            [sys.executable, "-c", _RUN, json.dumps(argvs), json.dumps(HEAVY)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    return run


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny harstream window model file (made once per session)."""
    return tiny_model_file(tmp_path_factory.mktemp("tiny-model"), cell="gru")[2]
