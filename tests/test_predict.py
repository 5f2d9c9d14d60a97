"""The predict command: a tiny model trained on a made-up image folder, then your own files through it."""

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ckpt_utils import MNIST_RECIPE, save_untrained, train_on_folder
from conftest import compose_cfg, run_cli, write_shapes_folder
from ram_lightning.data.own_images import digit_canvas
from ram_lightning.errors import ConfigError, DataError
from ram_lightning.predict import _list_syntax, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, image folder) of a RAM trained for a few steps on two classes, 'left' and 'right'."""
    base = tmp_path_factory.mktemp("trained")
    root = write_shapes_folder(base / "shapes")
    return train_on_folder(root, base / "run"), root


def predict_cfg(ckpt: Path, inputs: list, out: Path, **keys: object):
    cfg = compose_cfg("predict", [])
    cfg.ckpt_path, cfg.inputs, cfg.out = str(ckpt), [str(p) for p in inputs], str(out)
    for k, v in keys.items():
        cfg[k] = v
    return cfg


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose header then claims width x height (CRC fixed, so only the size is a lie)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")  # the chunk type; its 13 data bytes follow, then their CRC
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def test_predict_writes_one_row_per_file_with_folder_class_names(trained, tmp_path, capsys) -> None:
    ckpt, root = trained
    out = tmp_path / "preds.csv"
    rows = predict(predict_cfg(ckpt, [root / "left", root / "right" / "0.png"], out))
    assert len(rows) == 12 + 1
    table = read_csv(out)
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert list(table[0]) == ["file", "class", "probability", "prob_left", "prob_right", "note"]
    for r in table:
        probs = [float(r["prob_left"]), float(r["prob_right"])]
        assert sum(probs) == pytest.approx(1, abs=1e-5) and r["class"] in ("left", "right")
        assert float(r["probability"]) == pytest.approx(max(probs), abs=1e-6)
    printed = capsys.readouterr().out
    assert f"{root / 'right' / '0.png'}: {rows[-1]['class']}" in printed and str(out) in printed
    again = predict(predict_cfg(ckpt, [root / "right" / "0.png"], out))  # same out: a new file, the old one kept
    assert len(read_csv(out)) == 13 and len(read_csv(tmp_path / "preds_1.csv")) == len(again) == 1
    assert again[0]["probs"] == rows[-1]["probs"]  # one file's answer does not depend on the others


def test_non_images_and_links_leaving_the_folder_are_skipped(trained, tmp_path, capsys) -> None:
    ckpt, root = trained
    folder, outside = tmp_path / "mine", tmp_path / "elsewhere"
    folder.mkdir(), outside.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes((root / "left" / "0.png").read_bytes())
    (folder / "fake.png").write_text("not a picture")
    (folder / "notes.txt").write_text("read me")
    (outside / "c.png").write_bytes((root / "right" / "0.png").read_bytes())
    (folder / "away.png").symlink_to(outside / "c.png")
    (folder / "same.png").symlink_to(folder / "a.png")  # inside the folder: read
    rows = predict(predict_cfg(ckpt, [folder], tmp_path / "p.csv"))
    assert sorted(Path(r["file"]).name for r in rows) == ["a.png", "b.png", "same.png"]
    err = capsys.readouterr().err
    assert f"{folder / 'fake.png'} is not an image" in err
    assert f"{folder / 'away.png'}: a symbolic link to {outside / 'c.png'}, outside {folder}" in err
    assert "notes.txt" in err
    rows = predict(predict_cfg(ckpt, [folder], tmp_path / "q.csv", follow_symlinks=True))
    assert "away.png" in {Path(r["file"]).name for r in rows}


@pytest.mark.parametrize("side", [10_000, 100_000])  # over max_pixels; far over Pillow's own guard
def test_a_file_claiming_a_huge_size_is_refused_before_decoding(trained, tmp_path, capsys, side: int) -> None:
    ckpt, root = trained
    bomb = png_claiming(tmp_path / "bomb.png", side, side)
    rows = predict(predict_cfg(ckpt, [bomb, root / "left" / "0.png"], tmp_path / "p.csv"))
    assert [Path(r["file"]).name for r in rows] == ["0.png"]
    err = capsys.readouterr().err
    assert f"{bomb} refused" in err and "max_pixels=64,000,000" in err
    with pytest.raises(DataError, match="nothing could be classified"):
        predict(predict_cfg(ckpt, [bomb], tmp_path / "q.csv"))


def test_gif_writes_a_glimpse_animation_per_file(trained, tmp_path) -> None:
    ckpt, root = trained
    rows = predict(predict_cfg(ckpt, [root / "left" / "0.png", root / "right" / "0.png"], tmp_path / "p.csv", gif=True))
    gifs = [Path(r["gif"]) for r in rows]
    assert [g.name for g in gifs] == ["0.gif", "0_1.gif"] and gifs[0].parent == tmp_path / "p_gifs"
    with Image.open(gifs[0]) as im:
        assert im.n_frames == 2 + 1  # T glimpses and the answer


@pytest.mark.parametrize(
    "keys, expected",
    [
        ({"mc": 0}, "mc=0"),
        ({"max_pixels": 10**9}, "max_pixels=1000000000"),
        ({"deterministic": "yes"}, "true or false"),
    ],
)
def test_bad_settings_name_the_key(trained, tmp_path, keys: dict, expected: str) -> None:
    ckpt, root = trained
    with pytest.raises(ConfigError, match=expected):
        predict(predict_cfg(ckpt, [root], tmp_path / "p.csv", **keys))


# ----------------------------------------------------------------------------- MNIST recipes


def paper_digit(size: tuple[int, int] = (300, 200)) -> np.ndarray:
    """A dark stroke on light-grey paper, off centre: what a phone photo of a written '1' looks like."""
    gray = np.full(size[::-1], 200.0)  # (h, w)
    gray[40:160, 200:215] = 30
    return gray


def test_a_dark_digit_on_paper_becomes_a_centred_light_mnist_digit() -> None:
    canvas, inverted = digit_canvas(paper_digit(), "mnist", 28)
    a = canvas[0].numpy().astype(float)  # (28, 28)
    assert inverted and a.max() == 255 and a[0].sum() == a[:, 0].sum() == 0  # light ink, black border
    ys, xs = np.nonzero(a)
    assert ys.max() - ys.min() + 1 == 20  # the longer side fills MNIST's 20-pixel box
    cy, cx = (np.indices(a.shape) * a).sum((1, 2)) / a.sum()
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5  # centred by mass, as MNIST is
    big, _ = digit_canvas(paper_digit(), "mnist", 60)  # translated recipes: the 28x28 square in the middle
    assert (big[0, 16:44, 16:44] == canvas[0]).all() and big.sum() == canvas.sum()


def test_mnist_checkpoints_name_digits_and_say_when_they_inverted(tmp_path, capsys) -> None:
    ckpt = save_untrained(tmp_path / "digits.ckpt", MNIST_RECIPE)
    Image.fromarray(paper_digit().astype(np.uint8)).save(tmp_path / "one.jpg")
    (row,) = predict(predict_cfg(ckpt, [tmp_path / "one.jpg"], tmp_path / "p.csv", mc=2))
    assert row["class"] in [str(d) for d in range(10)] and row["note"].startswith("inverted")
    assert "inverted: dark on light" in capsys.readouterr().out
    assert read_csv(tmp_path / "p.csv")[0]["note"] == row["note"]
    fc = save_untrained(tmp_path / "fc.ckpt", MNIST_RECIPE, {"kind": "fc", "hidden": 8})
    with pytest.raises(ConfigError, match="gif=true draws glimpses"):
        predict(predict_cfg(fc, [tmp_path / "one.jpg"], tmp_path / "q.csv", gif=True))


# ----------------------------------------------------------------------------- the command line


def test_comma_separated_inputs_become_a_list() -> None:
    assert _list_syntax("inputs=a.png,b c/d.png") == "inputs=['a.png','b c/d.png']"
    assert _list_syntax("inputs=[a,b]") == "inputs=[a,b]" and _list_syntax("out=x,y") == "out=x,y"


def test_command_exits_2_with_a_message_when_nothing_could_be_classified(trained, tmp_path) -> None:
    ckpt, _ = trained
    (tmp_path / "fake.png").write_text("text")
    res = run_cli("predict", f"ckpt_path={ckpt}", "inputs=fake.png,missing.png", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "fake.png is not an image" in res.stderr and "missing.png: no such file" in res.stderr
    assert "nothing could be classified" in res.stderr and not list(tmp_path.glob("predictions_*.csv"))
