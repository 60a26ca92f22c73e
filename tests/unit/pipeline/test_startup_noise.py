"""``pipeline.startup_noise``: Abseil's start-up lines are dropped, everything else kept."""

from __future__ import annotations

import os

from pipeline.startup_noise import _filtered


def test_only_abseil_info_and_warning_lines_are_dropped(capfd):
    error = b"E0000 00:00:1795955408.164035    8667 kernel.cc:12] a real error\n"
    with _filtered():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\n"
                    b"I0000 00:00:1795955408.164035    8667 port.cc:153] oneDNN custom "
                    b"operations are on.\n"
                    b"a line of our own\n" + error)  # fmt: skip
    assert capfd.readouterr().err == "a line of our own\n" + error.decode()
