"""What a learner sees: JupyterLab started as `make lab` starts it, notebook 01 run from the Run menu in a
real browser, and the rendered check reports, errors and plots read back from the page.

tests/test_notebooks.py executes the notebooks with nbclient; this test drives the interface instead.
The server runs with ATTNLAB_SRC=solutions (the setup cell's `use_package()` then imports the
instructor's package), a token, a free port, and its own settings, workspace and runtime folders;
autosave is off and the notebook file is compared before and after, so the committed notebook keeps
no outputs. Skips, with the reason, where Chromium, its driver or selenium is missing.
"""
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import chromium, need_browser
from conftest import ROOT

NOTEBOOK = "notebooks/01_what_attention_computes.ipynb"
JUPYTER = str(Path(sys.executable).parent / "jupyter")
SERVER_START_S, LOAD_S, RUN_S = 60, 60, 90

_STATE = """
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!nb) { return null; }
const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
return {
  cells: nb.querySelectorAll(':scope .jp-Cell').length,
  prompts: Array.from(nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')).map(e => e.textContent.trim()),
  kernel: indicator ? indicator.getAttribute('data-status') : null,
};
"""

_OUTPUTS = """
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
return Array.from(nb.querySelectorAll(':scope .jp-Cell')).map(cell => ({
  // one entry per line of a check report: the report renders each line as its own <div>
  html: Array.from(cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="text/html"]'))
             .flatMap(o => {
               const leaves = Array.from(o.querySelectorAll('div')).filter(d => !d.querySelector('div'));
               return leaves.length ? leaves.map(d => d.textContent) : [o.textContent];
             }),
  errors: Array.from(cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
             .map(o => o.textContent.slice(0, 500)),
  images: Array.from(cell.querySelectorAll('.jp-OutputArea-output img'))
             .map(img => ({complete: img.complete, width: img.naturalWidth})),
}));
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, timeout, probe, describe):
    """Poll probe() until it returns a truthy value; fail with describe() after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}: {describe()}")
        time.sleep(0.5)


def _write_settings(folder):
    """User settings for this server only: no autosave (the test must not write outputs into the repo),
    no news fetched from the network."""
    files = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }
    for rel, value in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server as `make lab` starts it (plus headless-only options); yields (base URL, token,
    log path). The server and its kernels are stopped at the end."""
    need_browser()  # skip before starting a server for nothing
    port, token = _free_port(), secrets.token_hex(16)
    settings = tmp_path / "settings"
    _write_settings(settings)
    log = tmp_path / "jupyter-lab.log"
    env = dict(os.environ, ATTNLAB_SRC="solutions", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    env.pop("ATTNLAB_STRICT", None)
    command = [JUPYTER, "lab", f"--ServerApp.root_dir={ROOT}", "--LabApp.default_url=/lab/tree/notebooks",
               # the Makefile's command above; what follows makes it headless, reachable and isolated
               "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if os.getuid() == 0:
        command.append("--allow-root")
    with open(log, "wb") as sink:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        started = time.monotonic()
        _wait("the Jupyter server", SERVER_START_S, up, lambda: log.read_text()[-3000:])
        print(f"jupyter lab up in {time.monotonic() - started:.1f} s")
        yield base, token, log
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # the server shuts its kernels down
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        try:
            os.killpg(server.pid, signal.SIGKILL)  # anything of its session left behind (kernels)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_notebook_01_run_all_in_jupyterlab_shows_every_check_passing(lab):
    from selenium.webdriver.common.by import By

    base, token, log = lab
    path = ROOT / NOTEBOOK
    before = path.read_bytes()
    source = json.loads(before)
    cells = source["cells"]
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    checks = [i for i, c in enumerate(cells) if "check" in c.get("metadata", {}).get("tags", [])]
    plots = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "plt.show()" in "".join(c["source"])]
    assert checks and plots, "notebook 01 should have check cells and plots"
    try:
        with chromium(1400, 1000) as driver:
            state = lambda: driver.execute_script(_STATE)  # noqa: E731
            started = time.monotonic()
            driver.get(f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}")
            _wait("the notebook to open with all its cells and an idle kernel", LOAD_S,
                  lambda: (s := state()) and s["cells"] == len(cells) and s["kernel"] == "idle", state)
            print(f"notebook open, kernel idle in {time.monotonic() - started:.1f} s")

            # Run > Run All Cells, the way a learner does it
            run_all = "//div[contains(@class,'lm-Menu-itemLabel') and text()='Run All Cells']"
            driver.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']").click()
            _wait("the Run menu", 10, lambda: driver.find_elements(By.XPATH, run_all), state)
            driver.find_element(By.XPATH, run_all).click()
            started = time.monotonic()

            def begun():
                s = state()
                return s and any(p != "[ ]:" for p in s["prompts"])

            settled = []

            def stopped():  # the kernel is idle and nothing is queued: all ran, or a cell failed
                s = state()
                quiet = bool(s) and s["kernel"] == "idle" and not any("*" in p for p in s["prompts"])
                settled.append(quiet)
                return len(settled) > 1 and settled[-1] and settled[-2]

            def running():
                s = state() or {}
                waiting = [f"code cell {n} {p}" for n, p in enumerate(s.get("prompts", []))
                           if not re.fullmatch(r"\[\d+\]:", p)]
                return f"kernel {s.get('kernel')}, not finished: {waiting[:5]}; server log:\n" \
                       f"{log.read_text()[-2000:]}"

            _wait("Run All Cells to start", 30, begun, running)
            _wait("Run All Cells to finish", RUN_S, stopped, running)
            print(f"Run All finished in {time.monotonic() - started:.1f} s")
            prompts = state()["prompts"]
            rendered = driver.execute_script(_OUTPUTS)
            driver.save_screenshot(str(log.parent / "lab.png"))
    finally:
        if path.read_bytes() != before:  # never leave outputs in the committed notebook
            path.write_bytes(before)
            pytest.fail(f"{NOTEBOOK} was modified by the browser session (restored); autosave must be off")

    assert len(rendered) == len(cells)
    errors = {i: out["errors"] for i, out in enumerate(rendered) if out["errors"]}
    assert not errors, f"error or stderr output in cells {sorted(errors)}: {errors}"
    not_run = [code[n] for n, p in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", p)]
    assert not not_run, f"Run All stopped before cells {not_run}"
    for i in checks:
        lines = [line.strip() for line in rendered[i]["html"] if line.strip()]
        report = "\n".join(lines)
        where = f"check cell {i} ({''.join(cells[i]['source']).strip()})"
        assert lines, f"{where}: no report rendered"
        headers = [line for line in lines if re.match(r"^[\w.]+: [\d.]+/[\d.]+ \(", line)]
        assert headers, f"{where}: no exercise line in the report:\n{report}"
        for header in headers:
            got, full = re.match(r"^[\w.]+: ([\d.]+)/([\d.]+)", header).groups()
            assert got == full, f"{where}: not full marks: {header}"
        cases = [line for line in lines if line not in headers]
        assert cases and all(line.startswith("PASS") for line in cases), f"{where}: not every case PASS:\n{report}"
    for i in plots:
        images = rendered[i]["images"]
        assert images and all(img["complete"] and img["width"] > 0 for img in images), \
            f"cell {i} calls plt.show() but shows no loaded image: {images}"
    print(f"{len(checks)} check reports all PASS, {sum(len(r['images']) for r in rendered)} plots, no errors")
