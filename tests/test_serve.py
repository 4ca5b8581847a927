"""The web page and its API, on a real uvicorn server, driven over HTTP and in headless Chromium."""
from __future__ import annotations

import base64
import concurrent.futures
import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cli_helpers import free_port, smartecg_command, wait_until_answering
from PIL import Image

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "test-artifacts"


@pytest.fixture(scope="module")
def model_dir(synthetic_train, tmp_path_factory):
    """A pipeline over the ``signals`` features, saved as SmartECG saves registered models."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from automl.model import ECGModel
    from automl.registry import write_model_files
    from features.handcrafted import PageFeatures

    paths = sorted(str(p) for p in synthetic_train.glob("*/*.jpg"))
    labels = [Path(p).parent.name for p in paths]
    X = PageFeatures(sets=("signals",), n_jobs=2).transform(paths)
    model = ECGModel(PageFeatures(sets=("signals",)), make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
                     .fit(X, labels), sorted(set(labels)), engine="tpot", description="scaler + logistic regression")
    model.uncertain_below = 0.6
    return write_model_files(model, tmp_path_factory.mktemp("served") / "model")


class Server:
    """``smartecg serve`` in its own process; its stderr (the access log among it) goes to ``self.log``."""

    def __init__(self, *args, env=None, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp / "server-tmp"
        self.tmp.mkdir(exist_ok=True)
        self.log = tmp / f"serve-{self.port}.log"
        with open(self.log, "w") as stderr:
            self.process = subprocess.Popen(
                smartecg_command() + ["serve", "--port", str(self.port), *map(str, args)],
                env={**os.environ, "TMPDIR": str(self.tmp), **(env or {})}, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)
        try:
            wait_until_answering(f"{self.url}/healthz", self.process, "smartecg serve", seconds=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()}") from None

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (VmHWM), in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    running = Server("--model", model_dir, "--lime-samples", "30", "--max-upload-mb", "2", "--allow-lime",
                     tmp=tmp_path_factory.mktemp("serve"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(synthetic_test) -> Path:
    return sorted(synthetic_test.glob("MI/*.jpg"))[0]


def test_a_good_page_gets_its_class_probabilities_and_an_overlay(server, page):
    health = requests.get(f"{server.url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and len(health["classes"]) == 5 and health["uncertain_below"] == 0.6
    answer = requests.post(f"{server.url}/api/predict", data=page.read_bytes(), timeout=120).json()
    assert answer["class"] in health["classes"] and answer["type"] == "jpeg"
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert answer["probability"] == max(answer["probabilities"].values())
    assert answer["method"] == "lime" and answer["summary"].startswith(answer["class"])
    assert isinstance(answer["uncertain"], bool) and set(answer["lead_shares"]) >= {"I", "V6"}
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"])))
    assert overlay.format == "PNG" and overlay.width > 500
    # The same page as a form's file (curl -F file=@page.jpg), without an explanation.
    form = requests.post(f"{server.url}/api/predict?explain=none", files={"file": (page.name, page.read_bytes())},
                         timeout=60).json()
    assert form["class"] == answer["class"] and form["file"] == page.name and "overlay_png" not in form
    assert form["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-4)


def test_bad_uploads_get_a_4xx_json_error_and_the_server_stays_up(server, page, tmp_path):
    def post(data, **kwargs):
        return requests.post(f"{server.url}/api/predict?explain=none", data=data, timeout=60, **kwargs)

    text = post(b"Patient notes, not an image", headers={"Content-Type": "image/jpeg"})  # the name lies
    assert text.status_code == 415 and "judged from its bytes" in text.json()["error"]
    truncated = post(page.read_bytes()[:4000])
    assert truncated.status_code == 422 and "error" in truncated.json()
    oversized = post(b"\xff\xd8\xff" + os.urandom(3 * 2 ** 20))  # over the server's 2 MB
    assert oversized.status_code == 413 and "larger than 2 MB" in oversized.json()["error"]
    assert post(b"").status_code == 400
    assert requests.post(f"{server.url}/api/predict?explain=everything", data=page.read_bytes(),
                         timeout=60).status_code == 400
    tiny = io.BytesIO()
    Image.new("L", (40, 30), 255).save(tiny, format="PNG")
    assert post(tiny.getvalue()).status_code == 422  # an image, but too small to hold 12 leads
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert post(page.read_bytes()).status_code == 200
    assert list(server.tmp.iterdir()) == []  # no upload was ever written to disk


def test_a_page_s_signals_download_as_csv_or_a_wfdb_zip(server, page, tmp_path):
    import zipfile

    import wfdb

    from features.pages import LEADS, RHYTHM

    with open(page, "rb") as handle:
        files = {"file": (page.name, handle.read(), "image/jpeg")}
    as_csv = requests.post(f"{server.url}/api/digitize?fs=250", files=files, timeout=120)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert f'filename="{page.stem}.csv"' in as_csv.headers["content-disposition"]
    lines = as_csv.text.splitlines()
    assert lines[0].split(",")[0] == "time_s" and len(lines) == 1 + 2500
    as_wfdb = requests.post(f"{server.url}/api/digitize?format=wfdb&fs=500", files=files, timeout=120)
    assert as_wfdb.status_code == 200 and as_wfdb.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(as_wfdb.content)).extractall(tmp_path)
    record = wfdb.rdrecord(str(tmp_path / "page"))
    assert (record.fs, record.sig_name[:12], set(record.units)) == (500, list(LEADS), {"mV"})
    assert record.sig_name[12:] in ([], [RHYTHM])
    blank = io.BytesIO()
    Image.new("RGB", (1100, 800), "white").save(blank, "PNG")
    refused = requests.post(f"{server.url}/api/digitize", files={"file": ("blank.png", blank.getvalue(), "image/png")},
                            timeout=60)
    assert refused.status_code == 422 and "blank.png" in refused.json()["error"] and "layout" in refused.json()["error"]
    assert requests.post(f"{server.url}/api/digitize?format=edf", files=files, timeout=60).status_code == 400
    assert list(server.tmp.iterdir()) == []  # the WFDB record's temporary folder is gone


def test_twenty_concurrent_requests_are_all_answered(server, synthetic_test):
    pages = sorted(synthetic_test.glob("*/*.jpg"))[:20]

    def ask(path):
        return requests.post(f"{server.url}/api/predict?explain=none", data=path.read_bytes(), timeout=300)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, pages))
    assert [a.status_code for a in answers] == [200] * 20
    alone = [ask(path).json()["class"] for path in pages[:3]]
    assert [a.json()["class"] for a in answers[:3]] == alone  # nothing mixed up between requests


def blank_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def test_healthz_and_answers_name_the_model_without_a_local_path(server, model_dir, page):
    health = requests.get(f"{server.url}/healthz", timeout=10).text
    answer = requests.post(f"{server.url}/api/predict?explain=none", data=page.read_bytes(), timeout=60).json()
    for shown in (health, str(answer["model"])):
        assert str(model_dir) not in shown and model_dir.parent.name not in shown and "/tmp" not in shown


@pytest.fixture(scope="module")
def guarded(model_dir, tmp_path_factory):
    """A server with a token and one extra allowed host name, LIME left at its default (off)."""
    tmp = tmp_path_factory.mktemp("guarded")
    (tmp / "token").write_text(secrets.token_urlsafe(32) + "\n")
    running = Server("--model", model_dir, "--token-file", tmp / "token", "--allowed-host", "ecg.example.org",
                     tmp=tmp)
    running.token = (tmp / "token").read_text().strip()
    yield running
    running.stop()


def test_a_pixel_bomb_is_refused_from_its_header_before_a_pixel_is_decoded(guarded):
    """On a server that has read few pages yet, so that its peak memory would show one decoded."""
    auth = {"Authorization": f"Bearer {guarded.token}"}
    bomb = blank_png(10_000, 7_900)  # 79 megapixels in about 100 KB: the "Covid_19 1.00" page
    peak_before = guarded.peak_rss_mb()
    answer = requests.post(f"{guarded.url}/api/predict?explain=none", files={"file": ("blank.png", bomb)},
                           headers=auth, timeout=120)
    assert answer.status_code == 413 and "10000x7900" in answer.json()["error"]
    assert guarded.peak_rss_mb() - peak_before < 40  # its pixels alone are 79 MB, as floats 316 MB
    # Its header with the pixel data cut off: judged by the header (413), never decoded (422 "truncated").
    header_only = requests.post(f"{guarded.url}/api/predict?explain=none", data=bomb[:2000], headers=auth,
                                timeout=60)
    assert header_only.status_code == 413, header_only.text
    assert requests.get(f"{guarded.url}/healthz", timeout=10).status_code == 200


def test_a_configured_token_is_required_on_the_api(guarded, page):
    def predict(**headers):
        return requests.post(f"{guarded.url}/api/predict?explain=none", data=page.read_bytes(), headers=headers,
                             timeout=60)

    assert predict().status_code == 401 and "Authorization: Bearer" in predict().json()["error"]
    assert predict(Authorization=f"Bearer {guarded.token[:-1]}x").status_code == 401
    assert requests.post(f"{guarded.url}/api/digitize", data=page.read_bytes(), timeout=60).status_code == 401
    assert predict(Authorization=f"Bearer {guarded.token}").status_code == 200
    assert requests.get(f"{guarded.url}/healthz", timeout=10).status_code == 200  # a liveness probe needs no secret


def test_a_host_header_from_another_site_is_refused(guarded, page):
    """DNS rebinding: evil.example resolved to 127.0.0.1 still sends Host: evil.example."""
    def health(host):
        return requests.get(f"{guarded.url}/healthz", headers={"Host": host}, timeout=10)

    assert health("evil.example").status_code == 421 and "--allowed-host" in health("evil.example").json()["error"]
    assert health(f"evil.example:{guarded.port}").status_code == 421
    answer = requests.post(f"{guarded.url}/api/predict?explain=none", data=page.read_bytes(), timeout=60,
                           headers={"Host": "evil.example", "Authorization": f"Bearer {guarded.token}"})
    assert answer.status_code == 421
    for allowed in (f"localhost:{guarded.port}", f"127.0.0.1:{guarded.port}", "ecg.example.org", f"[::1]:{guarded.port}"):
        assert health(allowed).status_code == 200, allowed


def test_lime_is_off_unless_the_operator_allows_it(guarded, page):
    auth = {"Authorization": f"Bearer {guarded.token}"}
    lime = requests.post(f"{guarded.url}/api/predict?explain=lime", data=page.read_bytes(), headers=auth, timeout=60)
    assert lime.status_code == 403 and "--allow-lime" in lime.json()["error"]
    auto = requests.post(f"{guarded.url}/api/predict", data=page.read_bytes(), headers=auth, timeout=60).json()
    assert "overlay_png" not in auto and any("--allow-lime" in note for note in auto["notes"])
    assert requests.get(f"{guarded.url}/healthz", timeout=10).json()["lime_allowed"] is False


def test_the_access_log_has_each_request_but_no_page_or_file_name(guarded, page):
    auth = {"Authorization": f"Bearer {guarded.token}"}
    answer = requests.post(f"{guarded.url}/api/predict?explain=none", headers=auth, timeout=60,
                           files={"file": ("Jane-Doe-1970-03-14.jpg", page.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["file"] == "Jane-Doe-1970-03-14.jpg"  # hers, not the log's
    requests.get(f"{guarded.url}/healthz", headers={"Host": "evil.example"}, timeout=10)
    deadline = time.monotonic() + 30
    while "GET /healthz 421" not in guarded.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, guarded.log.read_text(errors="replace")
        time.sleep(0.2)
    log = guarded.log.read_text(errors="replace")
    assert re.search(r"POST /api/predict 200 \d+\.\d+s in=\d+ out=\d+", log), log
    assert "Jane-Doe" not in log and "JFIF" not in log and "explain=" not in log


@pytest.fixture(scope="module")
def gated(model_dir, synthetic_train, tmp_path_factory):
    """A server over the same model with the page gate its search would fit (on its training pages)."""
    import pickle

    from automl.registry import write_model_files
    from features.gate import PageGate

    model = pickle.loads((model_dir / "artifacts" / "ecg_model.pkl").read_bytes())
    model.gate = PageGate().fit(sorted(str(p) for p in synthetic_train.glob("*/*.jpg")))
    tmp = tmp_path_factory.mktemp("gated")
    running = Server("--model", write_model_files(model, tmp / "model"), "--allow-lime", "--lime-samples", "20", tmp=tmp)
    yield running
    running.stop()


def test_a_page_the_model_refuses_gets_422_with_its_reason_and_a_turned_one_is_read_upright(gated, page):
    refused = requests.post(f"{gated.url}/api/predict?explain=none", data=blank_png(1100, 800), timeout=60)
    assert refused.status_code == 422, refused.text
    assert refused.json()["status"] == "refused" and "the page is blank" in refused.json()["reason"]
    assert "the page is blank" in refused.json()["error"] and "class" not in refused.json()
    read = requests.post(f"{gated.url}/api/predict?explain=none", data=page.read_bytes(), timeout=60).json()
    assert read["status"] == "read" and read["reason"] == "" and "class" in read
    quarter_turn = io.BytesIO()
    Image.open(page).transpose(Image.Transpose.ROTATE_90).save(quarter_turn, format="PNG")
    turned = requests.post(f"{gated.url}/api/predict?explain=lime", data=quarter_turn.getvalue(), timeout=120)
    answer = turned.json()
    assert turned.status_code == 200 and answer["status"] == "turned" and "quarter turn" in answer["reason"]
    assert answer["class"] == read["class"] and answer["lead_shares"] and answer["overlay_png"]
    # Drawn on the page the right way round, as the model read it: landscape like the page, not as uploaded.
    width, height = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"]))).size
    assert width > height and Image.open(page).width > Image.open(page).height


def test_a_request_over_the_time_limit_gets_504_and_the_server_goes_on(model_dir, page, tmp_path):
    running = Server("--model", model_dir, "--allow-lime", "--lime-samples", "5000", "--request-timeout", "1",
                     tmp=tmp_path)
    try:
        slow = requests.post(f"{running.url}/api/predict?explain=lime", data=page.read_bytes(), timeout=120)
        assert slow.status_code == 504 and "--request-timeout" in slow.json()["error"]
        # LIME stops at its next batch; a quick page is then answered (retried while the model thread frees up).
        deadline = time.monotonic() + 60
        while (quick := requests.post(f"{running.url}/api/predict?explain=none", data=page.read_bytes(),
                                      timeout=60)).status_code != 200:
            assert quick.status_code in (503, 504) and time.monotonic() < deadline, quick.text
        assert running.process.poll() is None
    finally:
        running.stop()


def test_the_served_model_follows_the_champion_alias(model_dir, tmp_path):
    from automl.tracking import use_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = use_store(uri)
    experiment = client.create_experiment("serve-test", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model("served")

    def register() -> str:
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(model_dir), "model")
        version = client.create_model_version("served", f"runs:/{run.info.run_id}/model", run.info.run_id).version
        client.set_registered_model_alias("served", "champion", version)
        return str(version)

    first = register()
    running = Server("--model", "models:/served@champion", "--tracking-uri", uri, "--poll-seconds", "1",
                     tmp=tmp_path, env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri})
    try:
        assert requests.get(f"{running.url}/healthz", timeout=10).json()["version"] == first
        second = register()
        deadline = time.monotonic() + 60
        while requests.get(f"{running.url}/healthz", timeout=10).json()["version"] != second:
            assert time.monotonic() < deadline, "the server kept the old version"
            time.sleep(0.5)
    finally:
        running.stop()


@pytest.fixture
def chromium():
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed here (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    yield browser
    browser.quit()


def test_a_page_uploaded_in_a_real_browser_shows_its_class_and_overlay(server, page, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(server.url)
    WebDriverWait(chromium, 30).until(lambda b: "classes:" in b.find_element(By.ID, "model").text)
    chromium.find_element(By.ID, "file").send_keys(str(page))
    WebDriverWait(chromium, 120).until(
        lambda b: b.execute_script("const i = document.getElementById('overlay'); return i.complete && i.naturalWidth")
        or b.find_element(By.ID, "error").text)
    assert chromium.find_element(By.ID, "error").text == ""
    shown = chromium.find_element(By.ID, "class").text
    classes = requests.get(f"{server.url}/healthz", timeout=10).json()["classes"]
    assert shown.split()[0] in classes and float(shown.split()[1]) > 0
    assert "most evidence in" in chromium.find_element(By.ID, "summary").text or \
        "no lead stands out" in chromium.find_element(By.ID, "summary").text
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 5
    # The page's signals, fetched by the browser and offered as a CSV download.
    chromium.find_element(By.ID, "signals").click()
    WebDriverWait(chromium, 60).until(
        lambda b: b.find_element(By.ID, "signals-link").get_attribute("download") or b.find_element(By.ID, "error").text)
    assert chromium.find_element(By.ID, "error").text == ""
    link = chromium.find_element(By.ID, "signals-link")
    assert link.get_attribute("download") == f"{page.stem}.csv" and link.get_attribute("href").startswith("blob:")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "web-page.png"
    chromium.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] >= 800
    # A bad file shows an error on the page, and the page keeps working.
    bad = ARTIFACTS / "not-an-ecg.jpg"
    bad.write_text("not an image")
    chromium.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(chromium, 30).until(lambda b: b.find_element(By.ID, "error").text)
    assert "not an image" in chromium.find_element(By.ID, "error").text
    bad.unlink()


def test_a_refused_page_shows_its_reason_in_the_browser(gated, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    blank = tmp_path / "blank.png"
    blank.write_bytes(blank_png(1100, 800))
    chromium.get(gated.url)
    WebDriverWait(chromium, 30).until(lambda b: "classes:" in b.find_element(By.ID, "model").text)
    chromium.find_element(By.ID, "file").send_keys(str(blank))
    WebDriverWait(chromium, 60).until(lambda b: b.find_element(By.ID, "refused").is_displayed()
                                      or b.find_element(By.ID, "error").text)
    assert "the page is blank" in chromium.find_element(By.ID, "refused").text
    assert chromium.find_element(By.ID, "class").text == "No class" and not chromium.find_elements(
        By.CSS_SELECTOR, "#bars .bar")
