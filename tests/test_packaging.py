import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_configs_and_the_commands_find_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("ram_lightning-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    assert {"ram_lightning/conf/train.yaml", "ram_lightning/conf/experiment/cluttered60.yaml"} <= names
    probe = (
        "from hydra import compose, initialize_config_dir\n"
        "from ram_lightning.config import CONF_DIR\n"
        "with initialize_config_dir(config_dir=CONF_DIR, version_base='1.3'):\n"
        "    cfg = compose('train', overrides=['experiment=cluttered100'])\n"
        "print(CONF_DIR, cfg.data.canvas)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    conf_dir, canvas = out.split()
    assert Path(conf_dir) == tmp_path / "site" / "ram_lightning" / "conf" and canvas == "100"


def test_a_checkout_uses_the_top_level_conf() -> None:
    from ram_lightning.config import CONF_DIR

    assert Path(CONF_DIR) == ROOT / "conf"
