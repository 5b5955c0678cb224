"""A real browser: JupyterLab + headless Chromium run notebook 02 and move the eps slider.

The test starts ``jupyter lab`` on 127.0.0.1 (random free port, random token) over a
temporary copy of ``notebooks/``, opens ``02_soft_token_alignment.ipynb`` in Debian's
``chromium`` driven by Playwright, runs all cells from the Run menu, drags the eps slider
of the alignment explorer and asserts that the rendered heatmap changed (a new image,
different pixels). Screenshots before and after go to ``$OPTICAL_VIZ_SCREENSHOTS`` (default:
the test's tmp folder). Chromium is installed with apt-get when /usr/bin/chromium is
missing; a missing browser that cannot be installed fails the test, it never skips.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "02_soft_token_alignment.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LAB_START_TIMEOUT_S = 90
RUN_ALL_TIMEOUT_S = 900  # the whole notebook (it scores the gold sets), kernel start and model loading included
UPDATE_TIMEOUT_S = 60  # one re-alignment after the slider moved

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"could not install chromium ({' '.join(cmd)}): {proc.stderr[-2000:]}", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} does not exist", pytrace=False)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path, data_root, default_model_dir):
    """A JupyterLab server over a copy of notebooks/; yields (base_url, token, workdir)."""
    work = tmp_path / "lab"
    shutil.copytree(REPO / "notebooks", work / "notebooks")
    for shared in ("configs", "results"):  # notebooks read ../configs and ../results (02: the alignment sweep)
        (work / shared).symlink_to(REPO / shared)
    # render every cell: JupyterLab's default windowing keeps cells below the fold out of the DOM
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        OPTICAL_VIZ_DATA=str(data_root),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
    )
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work / 'notebooks'}",
        f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
        "--LabApp.news_url=", "--LabApp.extension_manager=readonly", "--ServerApp.port_retries=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work / "notebooks")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}", pytrace=False)
            time.sleep(0.5)
        yield base, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_all_cells(page, attempts: int = 6) -> None:
    """Run > Run All Cells once the kernel is idle, retried until a cell shows it is queued
    or running ([*]); the menu entry does nothing while the kernel is still starting."""
    status = page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first
    status.wait_for(timeout=LAB_START_TIMEOUT_S * 1000)
    running = page.locator(".jp-NotebookPanel .jp-InputPrompt", has_text="*")
    for _ in range(attempts):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if running.count() > 0:
                return
            time.sleep(0.1)
        page.keyboard.press("Escape")
    pytest.fail("Run All Cells did not start the notebook (kernel not ready?)", pytrace=False)


def test_eps_slider_changes_the_heatmap_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, work = lab
    shots = Path(os.environ.get("OPTICAL_VIZ_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    executable = _ensure_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", timeout=LAB_START_TIMEOUT_S * 1000)
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=LAB_START_TIMEOUT_S * 1000)
            _run_all_cells(page)

            # the explorer's heatmap: an <img> of the Image widget, next to an "eps" slider
            explorer = page.locator(".widget-vbox", has=page.locator(".widget-image")).filter(
                has=page.locator(".widget-slider", has_text="eps")).last
            image = explorer.locator("img.widget-image, .widget-image").last
            try:
                image.wait_for(state="visible", timeout=RUN_ALL_TIMEOUT_S * 1000)
            except Exception:
                page.screenshot(path=str(shots / "jupyterlab_notebook_02_failed.png"), full_page=True)
                raise
            page.wait_for_function(  # the image holds a decoded picture
                "el => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=UPDATE_TIMEOUT_S * 1000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .jp-RenderedText",
                                  has_text="Error")
            assert errors.count() == 0, errors.first.inner_text()
            image.scroll_into_view_if_needed()
            src_before = image.get_attribute("src")
            png_before = image.screenshot(path=str(shots / "alignment_explorer_before.png"))

            # drag the eps slider's handle to the right (larger eps: a blurrier plan)
            slider = explorer.locator(".widget-slider", has_text="eps")
            handle = slider.locator(".noUi-handle").first
            track = slider.locator(".noUi-target, .slider").first
            hb, tb = handle.bounding_box(), track.bounding_box()
            assert hb is not None and tb is not None
            readout = slider.locator(".widget-readout").first
            eps_before = readout.inner_text()
            page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
            page.mouse.down()
            page.mouse.move(tb["x"] + tb["width"] * 0.95, hb["y"] + hb["height"] / 2, steps=12)
            page.mouse.up()
            page.wait_for_function(
                "([el, old]) => el.getAttribute('src') !== old && el.complete && el.naturalWidth > 0",
                arg=[image.element_handle(), src_before], timeout=UPDATE_TIMEOUT_S * 1000)
            eps_after = readout.inner_text()
            png_after = image.screenshot(path=str(shots / "alignment_explorer_after.png"))
            page.screenshot(path=str(shots / "jupyterlab_notebook_02.png"))
        finally:
            browser.close()
    assert float(eps_after) > float(eps_before), (eps_before, eps_after)
    assert png_after != png_before, "the heatmap did not change after moving the eps slider"
