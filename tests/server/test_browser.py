"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium) against a
real `bitmatch serve` whose SQLite file holds a job that two real `bitmatch worker`s ran.

Job: the seeded int16 package and its float twin on the bundled `tiny` set (3 images), encoders and decoders
cpu and cpu-1t-noopt: 2 codecs x 2 x 2 = 8 matrix positions holding 2 x 3 x 2 x 2 = 24 cells.
Screenshots of the job and cell pages are left in /tmp/bitmatch-browser/ for a person to look at.
"""

import io
import json
import os
import shlex
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from server_harness import (
    WORKER_TOKEN,
    auth,
    bitmatch_command,
    start_coordinator,
    start_worker,
    subprocess_env,
)

pytestmark = pytest.mark.slow

TARGETS = ["cpu", "cpu-1t-noopt"]
IMAGE_SET, IMAGES_IN_SET = "tiny", 3
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
SCREENSHOTS = Path("/tmp/bitmatch-browser")
JOB_TIMEOUT_S = 600


def provision_chromium() -> None:
    """Install Debian's chromium and chromium-driver when they are missing (CI runs as root on a fresh
    machine); never skip: a missing browser is an error."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{CHROMIUM} or {CHROMEDRIVER} missing; as root: apt-get install -y chromium chromium-driver"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    provision_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory, packages):
    """A coordinator with two real workers: its process, URL and data directory."""
    workdir = tmp_path_factory.mktemp("browser-site")
    workers = {target: start_worker(target, workdir) for target in TARGETS}
    coordinator = None
    try:
        for worker in workers.values():
            worker.wait_ready()
        config = workdir / "workers.json"
        config.write_text(
            json.dumps(
                {
                    "workers": [
                        {"name": f"{target}-worker", "url": w.url, "token": WORKER_TOKEN, "target": target}
                        for target, w in workers.items()
                    ]
                }
            )
        )
        coordinator = start_coordinator(
            workdir, "--workers-config", str(config), "--health-package", str(packages["int16"].path)
        )
        yield SimpleNamespace(coordinator=coordinator, url=coordinator.url, data_dir=workdir / "data")
    finally:
        if coordinator is not None:
            coordinator.stop()
        for worker in workers.values():
            worker.stop()


@pytest.fixture(scope="module")
def finished_job(site, packages):
    """One job run to the end: (base URL, job id, job summary)."""
    with httpx.Client(base_url=site.url, headers=auth(), timeout=120) as client:
        summary = run_job(client, packages)
    return site.url, summary["id"], summary


def run_job(client: httpx.Client, packages) -> dict:
    def all_healthy() -> bool:
        return sum(d["status"] == "healthy" for d in client.get("/api/workers").json()) == len(TARGETS)

    wait_for(all_healthy, "both workers healthy", 300)
    for precision in ("int16", "float"):
        package = packages[precision]
        response = client.put(f"/api/codecs/{package.digest}", content=package.archive)
        assert response.status_code in (200, 201), response.text
    request = {
        "codecs": [packages["int16"].digest, packages["float"].digest],
        "images": IMAGE_SET,
        "encoders": TARGETS,
        "decoders": TARGETS,
    }
    response = client.post("/api/jobs", json=request)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(
        lambda: client.get(f"/api/jobs/{job_id}").json()["status"] in ("done", "failed", "cancelled"),
        f"job {job_id} to finish",
        JOB_TIMEOUT_S,
    )
    summary = client.get(f"/api/jobs/{job_id}").json()
    assert summary["status"] == "done", summary
    return summary


def wait_for(predicate, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.set_window_size(1400, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height, 800), 4000))
    driver.save_screenshot(str(path))
    return path


def test_matrix_renders_every_cell_and_a_cell_page_opens(browser, finished_job):
    from selenium.webdriver.common.by import By

    base, job_id, summary = finished_job
    cell_total = 2 * IMAGES_IN_SET * len(TARGETS) ** 2
    assert summary["progress"]["cells"] == {
        "done": cell_total,
        "cancelled": 0,
        "not_run": 0,
        "total": cell_total,
    }

    browser.get(f"{base}/")
    browser.find_element(By.CSS_SELECTOR, f'table.jobs a[href="/jobs/{job_id}"]').click()
    assert browser.current_url == f"{base}/jobs/{job_id}"
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Job {job_id}"
    matrices = browser.find_elements(By.CSS_SELECTOR, "table.matrix:not(.drift-matrix)")
    assert len(matrices) == 2
    drift_matrices = browser.find_elements(By.CSS_SELECTOR, "table.drift-matrix")
    assert len(drift_matrices) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "td.drift-cell")) == 2 * len(TARGETS) ** 2
    positions = browser.find_elements(By.CSS_SELECTOR, "td.matrix-cell")
    assert len(positions) == 2 * len(TARGETS) ** 2
    chips = browser.find_elements(By.CSS_SELECTOR, "td.matrix-cell a.chip")
    assert len(chips) == cell_total
    assert sum(int(p.get_attribute("data-cells")) for p in positions) == cell_total
    assert browser.find_element(By.CSS_SELECTOR, "b.cell-total").text == str(cell_total)
    int16 = (
        matrices[0]
        if "int16" in browser.find_elements(By.CSS_SELECTOR, "h2.codec-heading")[0].text
        else matrices[1]
    )
    assert {
        p.get_attribute("data-verdict") for p in int16.find_elements(By.CSS_SELECTOR, "td.matrix-cell")
    } <= {"bit-exact"}  # the integer package is exact across these devices
    int16_drift = drift_matrices[matrices.index(int16)]
    assert {
        c.get_attribute("class") for c in int16_drift.find_elements(By.CSS_SELECTOR, "td.drift-cell")
    } == {"drift-cell d-exact"}
    float_chip = matrices[1 - matrices.index(int16)].find_element(By.CSS_SELECTOR, "a.chip")
    float_cell = float_chip.get_attribute("href")
    colour = positions[0].value_of_css_property("background-color")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")  # the stylesheet loaded and coloured the cell
    assert browser.find_elements(By.CSS_SELECTOR, "svg.rd-chart")
    screenshot(browser, "job.png")

    chips[0].click()
    assert "/cells/" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "table.hashes tr[data-stage]")
    stages = [row.get_attribute("data-stage") for row in rows]
    assert stages == ["z_hat", "scale_index", "symbols", "mean", "y_hat", "recon"]
    assert "bitmatch codec decode bits.bmc" in browser.find_element(By.CSS_SELECTOR, "pre.cli").text
    for image in browser.find_elements(By.CSS_SELECTOR, ".images img"):
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    screenshot(browser, "cell.png")

    browser.get(float_cell)  # a float cell: its risk was measured, and its histogram draws
    assert browser.find_element(By.CSS_SELECTOR, ".facts.risk").get_attribute("data-risk") == "measured"
    margins = browser.find_element(By.CSS_SELECTOR, "img.margins")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", margins) > 0
    screenshot(browser, "float-cell.png")

    browser.get(f"{base}/devices")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.device")) == len(TARGETS)
    assert {r.get_attribute("data-status") for r in browser.find_elements(By.CSS_SELECTOR, "tr.device")} == {
        "healthy"
    }
    screenshot(browser, "devices.png")


def test_repro_bundle_replays_the_decoder_side(finished_job, tmp_path: Path):
    """The bundle's replay line, run as written, reproduces the decoder's stage hashes of the cell."""
    base, job_id, _ = finished_job
    cells = httpx.get(f"{base}/api/jobs/{job_id}/cells", timeout=60).json()
    cell = next(c for c in cells if c["encoder"] != c["decoder"])
    detail = httpx.get(f"{base}/api/cells/{cell['id']}", timeout=60).json()
    bundle = httpx.get(f"{base}/cells/{cell['id']}/repro.zip", timeout=60)
    assert bundle.status_code == 200
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        archive.extractall(tmp_path)
    root = next(tmp_path.iterdir())
    line = next(
        text
        for text in (root / "replay.sh").read_text().splitlines()
        if text.startswith("bitmatch codec decode ")
    )
    argv = shlex.split(line)
    replay = subprocess.run(
        [*bitmatch_command(argv[1]), *argv[2:]],
        cwd=root,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["stage_hashes"] == detail["decode"]["stage_hashes"]


# --- a cancelled job, and the static reports opened from file:// with the coordinator stopped (keep last) --

CANCEL_IMAGES = 24  # 2 codecs x 24 images x 2 x 2 = 192 cells: far more than are done when the cancel lands


@pytest.fixture(scope="module")
def cancelled_job(site, finished_job, packages) -> dict:
    """A job cancelled once its first cell was recorded: its summary once the coordinator closed it."""
    from codec.images import encode_png
    from codec.networks import synthetic_images

    with httpx.Client(base_url=site.url, headers=auth(), timeout=120) as client:
        digests = [
            client.post("/api/images", content=encode_png(image)).json()["digest"]
            for image in synthetic_images(3, CANCEL_IMAGES, 64)
        ]
        codecs = [packages["int16"].digest, packages["float"].digest]
        request = {"codecs": codecs, "images": digests, "encoders": TARGETS, "decoders": TARGETS}
        job_id = client.post("/api/jobs", json=request).json()["id"]

        def progress() -> dict:
            return client.get(f"/api/jobs/{job_id}").json()["progress"]

        wait_for(lambda: progress()["cells"]["done"] >= 1, "the first cell", JOB_TIMEOUT_S)
        cancel = client.post(f"/api/jobs/{job_id}/cancel")
        assert cancel.status_code == 202, f"the job ended before the cancel: {cancel.text}"
        wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled", "cancel", 120)
        summary = client.get(f"/api/jobs/{job_id}").json()
        summary["cell_rows"] = client.get(f"/api/jobs/{job_id}/cells").json()
    return summary


def test_a_cancelled_job_shows_what_was_done_and_that_the_rest_was_cancelled(browser, site, cancelled_job):
    from selenium.webdriver.common.by import By

    progress = cancelled_job["progress"]
    cells = progress["cells"]
    assert cells["total"] == 2 * CANCEL_IMAGES * len(TARGETS) ** 2
    assert cells["done"] >= 1 and cells["cancelled"] >= 1 and cells["not_run"] == 0
    assert cells["done"] + cells["cancelled"] == cells["total"]
    assert cells["done"] == sum(c["verdict"] != "not-run" for c in cancelled_job["cell_rows"])
    assert progress["fraction"] == pytest.approx(cells["done"] / cells["total"]) and progress["fraction"] < 1
    for stage in ("encodes", "decodes"):
        counts = progress[stage]
        assert counts["done"] + counts["cancelled"] == counts["total"] and counts["cancelled"] >= 1

    browser.get(f"{site.url}/jobs/{cancelled_job['id']}")
    bar = browser.find_element(By.CSS_SELECTOR, ".facts .progress")
    cancelled = bar.find_element(By.CSS_SELECTOR, "div.cancelled")
    width = browser.execute_script("return arguments[0].clientWidth", bar)
    assert abs(cancelled.size["width"] - width * cells["cancelled"] / cells["total"]) <= 2
    assert "repeating-linear-gradient" in cancelled.value_of_css_property("background-image")  # hatched
    label = browser.find_element(By.CSS_SELECTOR, ".facts .progress-label").text
    assert label == f"{cells['done']} / {cells['total']} done, {cells['cancelled']} cancelled"
    screenshot(browser, "cancelled-job.png")


def test_the_static_reports_render_from_file_with_the_coordinator_stopped(
    browser, site, finished_job, cancelled_job, tmp_path: Path
):
    from selenium.webdriver.common.by import By
    from server_harness import outside_references

    from server.report import write_report
    from server.settings import Settings

    _, job_id, _ = finished_job
    site.coordinator.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{site.url}/healthz", timeout=5)
    database = Settings(data_dir=site.data_dir).database_url
    jobs = (job_id, cancelled_job["id"])
    reports = {job: write_report(database, job, tmp_path / f"job-{job}.html") for job in jobs}
    for report in reports.values():
        assert outside_references(report.read_text()) == []

    browser.get(reports[job_id].as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Job {job_id} report"
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.matrix:not(.drift-matrix)")) == 2
    positions = browser.find_elements(By.CSS_SELECTOR, "td.matrix-cell")
    assert len(positions) == 2 * len(TARGETS) ** 2
    colour = positions[0].value_of_css_property("background-color")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")  # the inline stylesheet applies
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    screenshot(browser, "report.png")
    chip = browser.find_element(By.CSS_SELECTOR, "td.matrix-cell a.chip")
    target = chip.get_attribute("href").rsplit("#", 1)[1]
    chip.click()
    assert browser.current_url == f"{reports[job_id].as_uri()}#{target}"
    row = browser.find_element(By.ID, target)
    assert row.tag_name == "tr" and row.is_displayed()

    browser.get(reports[cancelled_job["id"]].as_uri())
    label = browser.find_element(By.CSS_SELECTOR, ".facts .progress-label").text
    cells = cancelled_job["progress"]["cells"]
    assert label == f"{cells['done']} / {cells['total']} done, {cells['cancelled']} cancelled"
    assert browser.find_element(By.CSS_SELECTOR, ".facts .progress div.cancelled").size["width"] > 0
