"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium) against a
real `bitmatch serve` whose SQLite file holds jobs that two real `bitmatch worker`s ran.

Jobs, on the bundled `tiny` set (3 images):
- the seeded int16 package and its float twin, encoders and decoders cpu and cpu-1t-noopt: 2 codecs x 2 x 2
  = 8 matrix positions holding 2 x 3 x 2 x 2 = 24 cells;
- the shipped rate families, packages/int16/q1..q4 and packages/float/q1..q4, encoders cpu and cpu-1t-noopt,
  decoder cpu: its RD curves, BD-rates against each other and against JPEG and WebP.
The API docs (Swagger UI, ReDoc) and the shipped RD evidence page render too, with no request leaving the
coordinator. Screenshots are left in /tmp/bitmatch-browser/ for a person to look at.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from server_harness import (
    ROOT,
    WORKER_TOKEN,
    auth,
    start_coordinator,
    start_worker,
    subprocess_env,
)

from codec.package import CodecPackage, archive_bytes

pytestmark = [pytest.mark.slow, pytest.mark.browser]

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
PACKAGES = ROOT / "packages"
RATE_POINTS = ("q1", "q2", "q3", "q4")


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
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory, packages):
    """A coordinator with two real healthy workers: its process, URL and data directory."""
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
        with httpx.Client(base_url=coordinator.url, headers=auth(), timeout=120) as client:
            wait_for(lambda: healthy_workers(client) == len(TARGETS), "both workers healthy", 300)
        yield SimpleNamespace(coordinator=coordinator, url=coordinator.url, data_dir=workdir / "data")
    finally:
        if coordinator is not None:
            coordinator.stop()
        for worker in workers.values():
            worker.stop()


@pytest.fixture(scope="module")
def finished_job(site, packages):
    """The seeded pair's job run to the end: (base URL, job id, job summary)."""
    archives = {packages[p].digest: packages[p].archive for p in ("int16", "float")}
    request = {"codecs": list(archives), "images": IMAGE_SET, "encoders": TARGETS, "decoders": TARGETS}
    summary = run_job(site.url, archives, request)
    return site.url, summary["id"], summary


@pytest.fixture(scope="module")
def rate_family_job(site):
    """The shipped int16 and float families (q1..q4) run to the end: (base URL, job id)."""
    archives = {}
    for precision in ("int16", "float"):
        for point in RATE_POINTS:
            package = CodecPackage.load(PACKAGES / precision / point)
            archives[package.digest] = archive_bytes(package)
    request = {"codecs": list(archives), "images": IMAGE_SET, "encoders": TARGETS, "decoders": ["cpu"]}
    return site.url, run_job(site.url, archives, request)["id"]


def healthy_workers(client: httpx.Client) -> int:
    return sum(d["status"] == "healthy" for d in client.get("/api/workers").json())


def run_job(base: str, archives: dict[str, bytes], request: dict) -> dict:
    with httpx.Client(base_url=base, headers=auth(), timeout=120) as client:
        for digest, archive in archives.items():
            response = client.put(f"/api/codecs/{digest}", content=archive)
            assert response.status_code in (200, 201), response.text
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
    assert "bitmatch replay bitmatch-job" in browser.find_element(By.CSS_SELECTOR, "pre.cli.replay").text
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
    """The bundle's replay.sh, run as shipped from its extracted folder, replays the decoder side on the
    decoder's target and reproduces its stage hashes."""
    base, job_id, _ = finished_job
    cells = httpx.get(f"{base}/api/jobs/{job_id}/cells", timeout=60).json()
    cell = next(c for c in cells if c["encoder"] != c["decoder"])
    detail = httpx.get(f"{base}/api/cells/{cell['id']}", timeout=60).json()
    bundle = httpx.get(f"{base}/cells/{cell['id']}/repro.zip", timeout=60)
    assert bundle.status_code == 200
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        archive.extractall(tmp_path)
    root = next(tmp_path.iterdir())
    env = subprocess_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # bitmatch
    replay = subprocess.run(
        ["sh", str(root / "replay.sh"), "--side", "decoder", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    (replayed,) = json.loads(replay.stdout)["bundles"]
    assert replayed["sides"]["decoder"]["outcome"] == "reproduced"
    assert replayed["sides"]["decoder"]["replayed_as"]["target"] == cell["decoder"]
    assert replayed["sides"]["decoder"]["stage_hashes"] == detail["decode"]["stage_hashes"]


LEGEND_BOXES = """
const svg = arguments[0], box = svg.viewBox.baseVal, plot = svg.querySelector('rect.plot').getBBox();
const entries = [...svg.querySelectorAll('text.legend-entry')].map(t => {
  const b = t.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height];
});
return {width: box.width, height: box.height, plot_right: plot.x + plot.width, entries: entries};
"""


def chart_labels(chart) -> list[str]:
    from selenium.webdriver.common.by import By

    return [g.get_attribute("data-label") for g in chart.find_elements(By.CSS_SELECTOR, "g.series")]


def assert_legend_inside(browser, chart) -> None:
    """Every legend entry lies inside the figure, right of the axes."""
    boxes = browser.execute_script(LEGEND_BOXES, chart)
    assert len(boxes["entries"]) == len(chart_labels(chart)) > 0
    for left, top, right, bottom in boxes["entries"]:
        assert boxes["plot_right"] < left and right <= boxes["width"], boxes
        assert top >= 0 and bottom <= boxes["height"], boxes


def test_rd_section_draws_rate_families_against_jpeg_and_webp(browser, rate_family_job):
    from selenium.webdriver.common.by import By

    base, job_id = rate_family_job
    browser.get(f"{base}/jobs/{job_id}")
    charts = browser.find_elements(By.CSS_SELECTOR, ".charts svg.rd-chart")
    families = charts[0]
    labels = chart_labels(families)
    # one curve per family, or per family and encoder where the two encoders disagree
    assert {label.split(" @")[0] for label in labels[:-2]} == {"float (q1..q4)", "int16 (q1..q4)"}
    assert labels[-2:] == ["JPEG (q=5..90)", "WebP (q=5..90)"]
    for series in families.find_elements(By.CSS_SELECTOR, "g.series.curve"):
        assert len(series.find_elements(By.CSS_SELECTOR, "polyline")) == 1  # four points joined: a curve
    assert_legend_inside(browser, families)
    comparisons = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.bd-rates td.comparison")]
    assert any(c.startswith("int16 (q1..q4)") and "vs float (q1..q4)" in c for c in comparisons)
    table = browser.find_element(By.CSS_SELECTOR, "table.bd-rates").text
    failed = " ".join(li.text for li in browser.find_elements(By.CSS_SELECTOR, "ul.bd-failed li"))
    for anchor in (
        "JPEG (q=5..90)",
        "WebP (q=5..90)",
    ):  # in the table, or why not (the curves may not overlap)
        assert sum(f"vs {anchor}" in text for text in (table, failed)) >= 1
    assert "n/a" not in table and "@encoder" not in table
    assert not browser.find_elements(By.CSS_SELECTOR, "g.series.scatter")  # per image only on request
    screenshot(browser, "rd.png")

    browser.find_element(By.CSS_SELECTOR, "a.per-image-toggle").click()
    assert browser.current_url.endswith(f"/jobs/{job_id}?per_image=1#rd")
    scatters = [
        chart
        for chart in browser.find_elements(By.CSS_SELECTOR, ".charts svg.rd-chart")
        if chart.find_elements(By.CSS_SELECTOR, "g.series.scatter")
    ]
    assert len(scatters) == 2  # one per family
    for chart in scatters:
        assert_legend_inside(browser, chart)
    screenshot(browser, "rd-per-image.png")


def test_rd_evidence_page_draws_the_shipped_curves_and_bd_rates(browser, site):
    from selenium.webdriver.common.by import By

    evidence = json.loads((PACKAGES / "rd.json").read_text())
    browser.get(f"{site.url}/")
    browser.find_element(By.LINK_TEXT, "RD evidence").click()
    assert browser.current_url == f"{site.url}/rd"
    charts = browser.find_elements(By.CSS_SELECTOR, ".charts svg.rd-chart")
    assert [c.get_attribute("aria-label").split(" ")[0] for c in charts] == ["PSNR", "MS-SSIM"]
    for chart in charts:
        assert len(chart_labels(chart)) == len(evidence["packages"])
        assert_legend_inside(browser, chart)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.evidence-bd tbody tr")
    assert len(rows) == sum("error" not in value for value in evidence["bd_rate"].values())
    int16 = browser.find_element(By.CSS_SELECTOR, 'table.evidence-bd tr[data-key="int16_vs_float"]').text
    assert "bitmatch-int16 (q1..q4) vs bitmatch-float (q1..q4)" in int16
    assert f"{evidence['bd_rate']['int16_vs_float']['bd_rate_pct']:+.2f} %" in int16
    screenshot(browser, "rd-evidence.png")


def requests_made(browser) -> tuple[set[str], set[str]]:
    """(every URL the page asked for, those its Content-Security-Policy blocked), from the performance log."""
    asked, blocked, url_of = set(), set(), {}
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url_of[params["requestId"]] = params["request"]["url"]
            asked.add(params["request"]["url"])
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            blocked.add(url_of.get(params["requestId"], ""))
    return asked, blocked


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_api_docs_render_from_the_coordinators_own_assets(browser, site, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("performance")  # drop what earlier pages asked for
    browser.get(f"{site.url}/{page}")
    if page == "docs":  # Swagger UI lists the operations
        found = WebDriverWait(browser, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '.opblock-summary-path[data-path="/api/jobs"]')
        )
        assert found
    else:  # ReDoc: the title and the menu of tags
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".menu-content label"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "bitmatch coordinator (0.1.0)"
        menu = {
            e.get_attribute("title")
            for e in browser.find_elements(By.CSS_SELECTOR, ".menu-content span[title]")
        }
        assert {"jobs", "codecs", "workers"} <= menu
    assets = browser.execute_script(
        "return [...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href)"
    )
    assert assets and all(url.startswith(f"{site.url}/") for url in assets), assets
    asked, blocked = requests_made(browser)
    # ReDoc's sidebar credit asks for the Redocly logo on its CDN: the policy blocks it before it leaves
    foreign = {url for url in asked if not url.startswith((f"{site.url}/", "data:", "blob:"))}
    assert foreign <= blocked, f"requests that left for another host: {foreign - blocked}"
    screenshot(browser, f"api-{page}.png")


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
