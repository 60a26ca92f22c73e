"""One module per ``harstream`` subcommand, each with ``add_parser`` and ``run``."""
