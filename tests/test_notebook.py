"""The tour notebook runs top to bottom, headless, in tiny mode on made-up images."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "ram_tour.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_tour_notebook_runs_in_tiny_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # RAM_ROOT holds data/ and outputs/: an empty folder, so no MNIST is found and nothing is fetched
    monkeypatch.setenv("RAM_ROOT", str(tmp_path))
    monkeypatch.setenv("RAM_TOUR_TINY", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "synthetic data=True" in text and "stopping after t glimpses" in text
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert sum("image/png" in o.data for o in shown) >= 2 and sum("image/gif" in o.data for o in shown) == 1
    assert list((tmp_path / "outputs" / "tour").glob("*/checkpoints/last.ckpt"))
    assert not (tmp_path / "data" / "MNIST").exists()
