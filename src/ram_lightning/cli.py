"""What every command shares: user errors become one line on stderr and exit status 2."""

import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from .errors import RAMError


def user_error(err: BaseException) -> BaseException | None:
    """The user-facing error behind ``err`` (Hydra wraps errors raised while it builds objects), if any."""
    while err is not None:
        if isinstance(err, RAMError | OmegaConfBaseException):
            return err
        if not isinstance(err, InstantiationException):
            return None
        err = err.__cause__
    return None


def run_reporting_errors(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call a command's plain function; a mistake of the user's ends the process with a message, not a traceback."""
    try:
        return fn(cfg)
    except (RAMError, OmegaConfBaseException, InstantiationException) as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, but a RAMError raised by the object's constructor comes out unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = user_error(err)
        if cause is None:
            raise
        raise cause from None
