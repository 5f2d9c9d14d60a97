"""What every command shares: user errors become one line on stderr and exit status 2."""

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from .errors import RAMError


def run_reporting_errors(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call a command's plain function; a mistake of the user's ends the process with a message, not a traceback."""
    try:
        return fn(cfg)
    except (RAMError, OmegaConfBaseException) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
