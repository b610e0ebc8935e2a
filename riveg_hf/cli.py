"""``python -m riveg_hf.cli ...`` (and ``accelerate launch -m riveg_hf.cli ...``, ``torchrun -m riveg_hf.cli``): the
``riveg`` command. The command line itself is the package :mod:`riveg_cli`; this module only runs it, and the rest
of the library never imports it.
"""

from __future__ import annotations

import sys

from riveg_cli import CLIError, build_parser, main

__all__ = ["CLIError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
