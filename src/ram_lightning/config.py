"""Where the Hydra configuration lives, in a checkout and in an installed wheel."""

from pathlib import Path

_packaged = Path(__file__).parent / "conf"  # a wheel ships conf/ inside the package
CONF_DIR: str = str(_packaged if _packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf")
