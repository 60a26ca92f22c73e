"""The running system: worker, trainer, CLI. Uses ``models`` and ``streams``."""

import os

# TensorFlow's C++ start-up chatter drowns the CLI's own output; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
