"""The running system: worker, trainer, CLI. Uses ``models`` and ``streams``."""

from pipeline import startup_noise

# TensorFlow's C++ start-up chatter drowns the CLI's own output (``--log-level debug`` shows it;
# a TF_CPP_MIN_LOG_LEVEL of the user's is kept).
startup_noise.install()
