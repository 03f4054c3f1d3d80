"""The examples and the notebook run as written (on their generated samples) and print what they promise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> str:
    """Run an example script with this interpreter; return its standard output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_reports_the_collection_and_its_speed() -> None:
    output = run_example("demo.py")
    assert "count:      262144 embeddings in 8 files" in output
    assert "dimension:  768 (float16, 1536 bytes each)" in output
    assert "GB/s" in output


def test_npy_example_reads_every_row() -> None:
    output = run_example("npy_example.py")
    assert "40000 embeddings of dimension 512 (float16)" in output
    assert "rows 30000 to 39999" in output
    assert "mean norm 1.000" in output
    assert "first batch kept as float16: (1000, 512)" in output


def test_parquet_example_reads_the_range_with_metadata() -> None:
    output = run_example("parquet_example.py")
    assert "(15000, 512) ['caption', 'url', 'i'] a photo of item 5000" in output
    assert "(15000, 512) ['caption', 'url', 'i'] a photo of item 20000" in output


def test_parquet_npy_example_aligns_metadata() -> None:
    output = run_example("parquet_npy_example.py")
    for first in range(0, 40000, 8000):
        assert f"(8000, 512) {{'i': {first}, 'caption': 'a photo of item {first}'}}" in output


def test_notebook_runs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "notebook" / "embedding_reader_getting_started.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = [output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any("bytes pickled" in text for text in outputs)
    read_cell = next(cell for cell in notebook.cells if "reader(batch_size=4000" in "".join(cell.source))
    assert any(shows_a_finished_bar(output, 11000) for output in read_cell.outputs), read_cell.outputs


def shows_a_finished_bar(output, rows: int) -> bool:
    """Whether a cell output is tqdm's bar for `rows` rows, finished: a notebook widget, or text on stderr."""
    if output.get("output_type") == "display_data":
        return "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    text = output.get("text", "")
    return output.get("name") == "stderr" and "100%" in text and f"{rows / 1000:.1f}k/{rows / 1000:.1f}k" in text


def test_spark_by_ranges_example_reads_every_range_once() -> None:
    output = run_example("spark_by_ranges.py")
    assert "range [35000, 40000): 5000 rows, mean norm 1.000, first caption 'a photo of item 35000'" in output
    assert "40000 rows read once each by 2 processes" in output


def test_ray_example_labels_every_row() -> None:
    pytest.importorskip("ray")
    output = run_example("ray_example.py")
    assert "200000 rows labelled" in output
    counts = output.split("rows per label: [")[1].split("]")[0]
    assert sum(int(count) for count in counts.split(",")) == 200000


def test_interrupted_sample_is_rebuilt_not_taken(tmp_path, monkeypatch) -> None:
    """A sample whose writing stops halfway (Ctrl-C during `make demo`) leaves nothing where the next run looks:
    that run writes it whole (it used to find the folder and read a collection missing files)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import numpy as np
        import sample_data
    finally:
        sys.path.remove(str(EXAMPLES))
    monkeypatch.setattr(sample_data, "SAMPLE_ROOT", str(tmp_path))
    real_save, saved = np.save, []

    def save_then_stop(path, array):
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        real_save(path, array)

    monkeypatch.setattr(sample_data.np, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sample_data.npy_sample(files=3, rows=10, dimension=4)
    monkeypatch.setattr(sample_data.np, "save", real_save)
    folder = sample_data.npy_sample(files=3, rows=10, dimension=4)
    assert sorted(os.listdir(folder)) == [f"img_emb_{k:04d}.npy" for k in range(3)]
    assert [name for name in os.listdir(os.path.dirname(folder)) if name.startswith(".partial-")] == []


def test_torch_recipe_trains_on_every_row_once_per_epoch() -> None:
    pytest.importorskip("torch")
    output = run_example("torch_dataset.py")
    for epoch in range(2):  # two DataLoader workers, 40,000 rows in batches of 1,000: 20 full batches each
        assert f"epoch {epoch}: 40 batches, 40000 rows, 40000 distinct" in output
