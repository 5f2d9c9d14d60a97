"""New file names that never overwrite what a user already has."""

from pathlib import Path


def fresh_paths(out_dir: Path, names: list[str]) -> list[Path]:
    """``names`` inside ``out_dir``, all with the first suffix ('', '_1', '_2', ...) that none of them uses yet.

    One suffix for the whole set keeps files written together recognisable; nothing existing is overwritten.
    """
    n = 0
    while True:
        tag = f"_{n}" if n else ""
        paths = [out_dir / f"{Path(m).stem}{tag}{Path(m).suffix}" for m in names]
        if not any(p.exists() for p in paths):
            return paths
        n += 1


def free_path(path: Path) -> Path:
    """``path``, or ``name_1.ext``, ``name_2.ext``, ... : the first that does not exist yet."""
    return fresh_paths(path.parent, [path.name])[0]
