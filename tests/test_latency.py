"""`attnlab latency` measures and prints; it never asserts on time. Checked here: it runs, and bad input is
one clear line with a non-zero exit."""
import pytest

from autograde.latency import main


def test_latency_measures_a_cold_check_and_a_small_batch(tmp_path):
    lines = []
    csv_path = tmp_path / "latency.csv"
    rc = main(["--skip", "grade", "notebooks", "nbgrader", "--students", "1", "--csv", str(csv_path)], out=lines.append)
    assert rc == 0, lines
    text = "\n".join(lines)
    assert "attnlab check softmax.softmax (cold process)" in text and "target 3" in text
    assert "students/min" in text
    assert csv_path.read_text().splitlines()[0] == "what,value,unit,target,verdict"


@pytest.mark.parametrize("argv, message", [(["--students", "0"], "--students must be at least 1"),
                                           (["--notebooks", "13"], "unknown notebook"),
                                           (["--skip", "everything"], "invalid choice")])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv, out=lambda *_: None) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_notebook_s_kernel_stderr_is_kept_out_of_the_output_unless_the_run_fails(tmp_path, monkeypatch, capfd):
    """ipykernel prints start-up warnings on its stderr: they go to a file, echoed only when a cell fails."""
    import types

    import nbformat
    from nbclient.exceptions import CellExecutionError

    from autograde import latency

    (tmp_path / "notebooks").mkdir()
    for name, tail in (("quiet", ""), ("broken", "\nraise ValueError('broken cell')")):
        cell = nbformat.v4.new_code_cell(f"import os\nos.write(2, b'kernel says {name}\\n')" + tail)
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "notebooks" / f"{name}.ipynb")
    monkeypatch.setattr(latency, "ROOT", tmp_path)
    assert latency._notebook_seconds(types.SimpleNamespace(name="quiet")) > 0
    assert "kernel says" not in capfd.readouterr().err
    with pytest.raises(CellExecutionError, match="broken cell"):
        latency._notebook_seconds(types.SimpleNamespace(name="broken"))
    assert "kernel says broken" in capfd.readouterr().err
