"""``smartecg serve``: a web page and a JSON API that classify uploaded ECG pages, with explanations.

* ``GET /``: the page (``automl/web/index.html``): drop or pick an image, see the class, every
  class's probability, the uncertainty flag and the Grad-CAM or LIME overlay with its summary.
* ``POST /api/predict[?explain=auto|gradcam|lime|none]``: the image as the request body, or as
  the file of a ``multipart/form-data`` form; answers JSON (class, probabilities, uncertain,
  summary, per-lead shares, the overlay as a base64 PNG, the model version, seconds, and the
  model's ``status``/``reason`` when it says whether it could read the page as an ECG).
* ``POST /api/digitize[?format=csv|wfdb&fs=500]``: the page's leads as signals in mV
  (:mod:`features.digitize`): a CSV, or a zip of the WFDB record (``.hea`` + ``.dat``), as a
  download; a page whose lead rows cannot be found gets 422 and one line.
* ``GET /healthz``: the model being served (its registry name and version, never a local path).

Safety: bound to 127.0.0.1 unless told otherwise; Host header, token and access log as in
:mod:`automl.serve_guards`. Uploads are read into memory up to a limit (20 MB by default) and
never written to disk; the file type is judged from the bytes, not the name; the pixel count is
read from the header and a page above ``max_pixels`` is refused (413) before a pixel is decoded.
Each request has ``request_seconds`` (504 when the model overruns, 503 when it waited that long
for its turn); LIME (a hundred model runs per page) only when the operator allows it. A bad
upload gets a 4xx JSON error and the server goes on. The model is loaded once; when it is named
by an alias (``models:/smartecg@champion``) the alias is watched and the new version is loaded
whole, then swapped in, when a search promotes one.
"""

import asyncio
import base64
import concurrent.futures
import io
import logging
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)

__all__ = ["MAX_PAGE_PIXELS", "MAX_UPLOAD_BYTES", "REQUEST_SECONDS", "ServedModel", "create_app", "image_kind",
           "serve"]

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Real pages are 3.5 MP at most (2213x1572 in ecg-real-sample); an A4 or US-letter scan at 600 dpi
# is 34-35 MP. 40 MP takes every honest scan and bounds a decoded page to 160 MB of float32.
MAX_PAGE_PIXELS = 40_000_000
REQUEST_SECONDS = 60.0
# Requests being read or waiting for the model at once; beyond this, 503 at once (each holds its upload in memory).
MAX_IN_FLIGHT = 24
_FORM_OVERHEAD = 64 * 1024  # a multipart form's own lines around the file
_PAGE = Path(__file__).with_name("web") / "index.html"
# What an image file starts with; anything else is refused before it is decoded.
_SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"BM": "bmp", b"II*\x00": "tiff",
               b"MM\x00*": "tiff"}
EXPLAIN_CHOICES = ("auto", "gradcam", "lime", "none")
LIME_OFF = "LIME explanations are off on this server (each costs a hundred model runs); the operator can allow them "\
           "with --allow-lime"


def image_kind(data: bytes) -> str | None:
    """"jpeg", "png", "bmp" or "tiff" from the first bytes; None for anything else."""
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


class Refusal(Exception):
    """A request answered with HTTP status ``code`` and one line (and any JSON ``fields``), instead of a prediction."""

    def __init__(self, code: int, message: str, **fields):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields


class Deadline:
    """A request's time limit, and where it stood: "reading" the upload, "waiting" for the model, "working"."""

    def __init__(self, seconds: float):
        self.seconds, self.at, self.stage = seconds, time.monotonic() + seconds, "reading"

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def check(self, *_) -> None:
        """Stop a long computation (LIME's progress calls this) once the request has been answered 504."""
        if time.monotonic() > self.at:
            raise self.refusal()

    def refusal(self) -> Refusal:
        if self.stage == "reading":
            return Refusal(408, f"the upload did not arrive within {self.seconds:g} s; send it again")
        if self.stage == "waiting":
            return Refusal(503, f"the server is busy with other pages and could not start this one within "
                                f"{self.seconds:g} s; try again in a moment")
        return Refusal(504, f"the page took longer than this server's {self.seconds:g} s limit per request; "
                            "try explain=none, or ask the operator for a longer --request-timeout")


@dataclass
class _Loaded:
    pyfunc: object  # the MLflow pyfunc: its prediction frame is what every other client of the model sees
    model: object  # automl.model.ECGModel inside it, for explanations
    uri: str
    version: str | None


class ServedModel:
    """The model behind the API: loaded once, replaced whole when its alias moves to another version.

    Calls are serialised (one page at a time): networks and the feature code use every core
    already, and a model must not be swapped under a page it is reading.
    """

    def __init__(self, uri: str, tracking_uri: str | None = None) -> None:
        self.uri, self.tracking_uri = uri, tracking_uri
        self._lock = threading.Lock()
        self._loaded = self._load()
        self._stop = threading.Event()

    @property
    def current(self) -> _Loaded:
        return self._loaded

    def run(self, work, deadline: Deadline | None = None):
        """``work(loaded)`` with the model, one call at a time; a Refusal (503) when ``deadline`` passes first."""
        if not self._lock.acquire(timeout=deadline.left() if deadline else -1):
            raise deadline.refusal()
        try:
            return work(self._loaded)
        finally:
            self._lock.release()

    def watch(self, every: float = 30.0) -> threading.Thread | None:
        """Poll the alias every ``every`` seconds and load a new version when it moves (alias URIs only)."""
        if "@" not in self.uri or not self.uri.startswith("models:/"):
            return None
        thread = threading.Thread(target=self._watch, args=(every,), name="smartecg-model-watch", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()

    def reload_if_moved(self) -> bool:
        """Load the alias's version if it is not the one served; True when the model was replaced."""
        version = self._alias_version()
        if version is None or version == self._loaded.version:
            return False
        fresh = self._load()  # loaded whole before anything changes; requests go on meanwhile
        with self._lock:
            self._loaded = fresh
        log.warning("serving %s version %s (the alias moved)", self.uri, fresh.version)
        return True

    def _watch(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.reload_if_moved()
            except Exception as exc:  # a registry hiccup: keep serving the model we have
                log.warning("could not check %s for a new version (%s)", self.uri, exc)

    def _load(self) -> _Loaded:
        from automl.predict import ecg_model, load_pyfunc

        version = self._alias_version()
        # Paths off: the server sends the uploaded bytes, and never reads a file a client names.
        loaded, shown = load_pyfunc(self.uri, self.tracking_uri, read_paths=False)
        return _Loaded(loaded, ecg_model(loaded), shown, version)

    def _alias_version(self) -> str | None:
        if "@" not in self.uri or not self.uri.startswith("models:/"):
            return None
        from automl.tracking import resolve_tracking_uri, use_store

        name, alias = self.uri[len("models:/"):].split("@", 1)
        client = use_store(resolve_tracking_uri(self.tracking_uri))
        return str(client.get_model_version_by_alias(name, alias).version)


def public_name(uri: str) -> str:
    """How the API names the model: a registry or run URI as given, a local folder only as such (no path)."""
    return uri if uri.startswith(("models:/", "runs:/")) else "a local model folder"


def create_app(served: ServedModel, *, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PAGE_PIXELS,
               explain: str = "auto", lime_samples: int = 100, allow_lime: bool = False,
               request_seconds: float = REQUEST_SECONDS, bound_host: str = "127.0.0.1", allowed_hosts=(),
               token: str | None = None):
    """The FastAPI application over ``served``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from automl.serve_guards import install_guards

    app = FastAPI(title="SmartECG", docs_url=None, redoc_url=None, openapi_url=None)
    install_guards(app, bound_host=bound_host, extra_hosts=allowed_hosts, token=token)
    # Parsing forms and reading headers happen on these threads, never on the event loop; the model runs on
    # one thread of its own (pages are read one at a time anyway, and each thread that decodes pages keeps
    # its own malloc arena: twenty threads took the server from 0.4 to 0.95 GB in bench/abuse.py).
    workers = concurrent.futures.ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="smartecg-upload")
    model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smartecg-model")
    in_flight = 0

    def error(code: int, message: str, **fields) -> JSONResponse:
        return JSONResponse({"error": message, **fields}, status_code=code)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_PAGE.read_text())

    @app.get("/healthz")
    async def healthz() -> dict:
        current = served.current
        return {"status": "ok", "model": public_name(current.uri), "version": current.version,
                "classes": current.model.classes, "engine": current.model.engine,
                "uncertain_below": current.model.uncertain_below, "calibrated": current.model.calibrator is not None,
                "lime_allowed": allow_lime}

    async def handled(request: Request, work):
        """(``work(image bytes, deadline)`` run off the event loop, file name, kind), or the error response."""
        nonlocal in_flight
        if in_flight >= MAX_IN_FLIGHT:
            return error(503, f"the server is busy with {in_flight} pages; try again in a moment")
        in_flight += 1
        deadline = Deadline(request_seconds)
        loop = asyncio.get_running_loop()
        name = "the upload"
        try:
            async with asyncio.timeout(request_seconds):
                body = await _read_capped(request, max_upload_bytes + _FORM_OVERHEAD, _too_large(max_upload_bytes))
                deadline.stage = "waiting"
                data, name, kind = await loop.run_in_executor(
                    workers, _checked_upload, body, request.headers.get("content-type", ""), max_upload_bytes,
                    max_pixels)
                del body  # a form's copy; the page's bytes are all that is kept
                return await loop.run_in_executor(model_thread, _begun, work, data, deadline), name, kind
        except TimeoutError:
            refused = deadline.refusal()
            return error(refused.code, refused.message)
        except Refusal as refused:
            return error(refused.code, refused.message, **refused.fields)
        except Exception as exc:
            return _failure(exc, name)
        finally:
            in_flight -= 1

    def method_for(requested: str, model) -> tuple[str, list[str]]:
        """(the explanation to run, notes for the answer): LIME only when the operator allows it."""
        if requested == "lime" and not allow_lime:
            raise Refusal(403, LIME_OFF)
        if requested == "auto" and not model.is_network:
            return ("lime", []) if allow_lime else ("none", [LIME_OFF])
        return requested, []

    @app.post("/api/predict")
    async def predict(request: Request, explain: str = explain):
        if explain not in EXPLAIN_CHOICES:
            return error(400, f"explain must be one of {', '.join(EXPLAIN_CHOICES)}, got {explain!r}")
        try:
            method, notes = method_for(explain, served.current.model)
        except Refusal as refused:
            return error(refused.code, refused.message)
        outcome = await handled(request, lambda data, deadline: served.run(
            lambda loaded: _answer(loaded, data, method, notes, lime_samples, deadline), deadline))
        if not isinstance(outcome, tuple):
            return outcome
        answer, name, kind = outcome
        current = served.current
        return {**answer, "file": name, "type": kind,
                "model": {"uri": public_name(current.uri), "version": current.version}}

    @app.post("/api/digitize")
    async def digitize(request: Request, format: str = "csv", fs: int = 500):
        if format not in ("csv", "wfdb"):
            return error(400, f"format must be csv or wfdb, got {format!r}")
        if not 50 <= fs <= 10_000:
            return error(400, f"fs must be 50-10000 Hz, got {fs}")
        outcome = await handled(request, lambda data, deadline: _signal_file(data, format, fs))
        if not isinstance(outcome, tuple):
            return outcome
        (content, media_type, suffix), name, _ = outcome
        stem = _download_stem(name)
        return Response(content, media_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="{stem}{suffix}"'})

    for pool in (workers, model_thread):
        app.router.on_shutdown.append(lambda pool=pool: pool.shutdown(wait=False, cancel_futures=True))
    return app


def _begun(work, data: bytes, deadline: Deadline):
    """``work(data, deadline)`` once its turn has come, unless its answer (503) went out while it queued."""
    deadline.stage = "working"
    deadline.check()
    return work(data, deadline)


def _checked_upload(body: bytes, content_type: str, max_upload_bytes: int, max_pixels: int) -> tuple[bytes, str, str]:
    """(image bytes, file name, kind) of a request body, or a Refusal: size, type and pixel count, nothing decoded."""
    from features.imageio import ImageReadError, read_header

    data, name = _uploaded_image(body, content_type)
    if len(data) > max_upload_bytes:
        raise Refusal(413, _too_large(max_upload_bytes))
    if not data:
        raise Refusal(400, "no image in the request: send the image file as the body, or as a form's file")
    kind = image_kind(data)
    if kind is None:
        raise Refusal(415, f"{name} is not an image SmartECG reads (judged from its bytes): send a JPEG, PNG, "
                      "BMP or TIFF scan of the ECG page")
    try:
        header = read_header(data, name)  # the header only
    except ImageReadError as exc:
        raise Refusal(422, str(exc)) from None
    if header.width * header.height > max_pixels:
        raise Refusal(413, f"{name} is {header.width}x{header.height} pixels ({header.width * header.height / 1e6:.0f} "
                      f"megapixels), above this server's {max_pixels / 1e6:g} MP limit for a page (a 600 dpi A4 "
                      "scan is 35 MP); downscale it and send it again")
    return data, name, kind


def _too_large(max_upload_bytes: int) -> str:
    return f"upload larger than {max_upload_bytes / 2 ** 20:g} MB; send a smaller scan"


def _gate(frame) -> dict:
    """The model's own word on whether it could read the page (``status``, ``reason``), where its frame has one."""
    row = frame.iloc[0]
    return {column: str(row[column]) for column in ("status", "reason")
            if column in frame.columns and row[column] is not None and row[column] == row[column]}


def _answer(loaded: _Loaded, data: bytes, explain: str, notes: list[str], lime_samples: int,
            deadline: Deadline | None = None) -> dict:
    """Class, probabilities, flag, the model's status and (unless ``explain`` is "none") the explanation of one page."""
    import pandas as pd

    from automl.explain import UNCERTAIN, explain as explain_page
    from automl.overlay import overlay_image
    from automl.pyfunc import BYTES_COLUMN

    started = time.perf_counter()
    frame = loaded.pyfunc.predict(pd.DataFrame({BYTES_COLUMN: [data]}))
    gate = _gate(frame)
    if gate.get("status") == "refused":
        reason = gate.get("reason") or "the model refused it"
        raise Refusal(422, f"not read as an ECG page: {reason}", status="refused", reason=reason)
    classes = loaded.model.classes
    probabilities = {c: float(frame[f"p_{c}"].iloc[0]) for c in classes}
    top, uncertain = str(frame["class"].iloc[0]), bool(frame["uncertain"].iloc[0])
    if explain == "none":
        extra = {"summary": f"{top} {probabilities[top]:.2f}" + (f" - {UNCERTAIN}" if uncertain else "")}
    else:
        # A turned page is explained, and drawn, the right way round: as the model read it.
        page = loaded.model.check_pages([data])[0].source if gate.get("status") == "turned" else data
        found = explain_page(loaded.model, page, method=explain, lime_samples=lime_samples,
                             progress=deadline.check if deadline else None)
        # The frame's flag also says when the page is unlike the training pages; the explanation's does not.
        probabilities, top, uncertain = found.probabilities, found.class_name, uncertain or found.uncertain
        buffer = io.BytesIO()
        overlay_image(found, page).save(buffer, format="PNG", compress_level=3)
        extra = {"summary": found.summary, "method": found.method, "lead_shares": found.to_dict()["lead_shares"],
                 "overlay_png": base64.b64encode(buffer.getvalue()).decode("ascii")}
        notes = [*notes, *found.notes]
    return {"class": top, "probability": round(probabilities[top], 4),
            "probabilities": {c: round(p, 4) for c, p in probabilities.items()}, "uncertain": uncertain,
            **extra, "notes": notes, **gate, "seconds": round(time.perf_counter() - started, 3)}


def _signal_file(data: bytes, file_format: str, fs: int) -> tuple[bytes, str, str]:
    """(file bytes, media type, suffix) of the page's signals: a CSV, or the WFDB record zipped."""
    import tempfile
    import zipfile

    from features.digitize import csv_to, digitize, write_wfdb

    recording = digitize(data, fs=fs)
    if file_format == "csv":
        text = io.StringIO()
        csv_to(recording, text)
        return text.getvalue().encode(), "text/csv", ".csv"
    with tempfile.TemporaryDirectory() as tmp:  # wfdb writes only files: a private folder, gone on return
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in write_wfdb(recording, tmp, "page"):
                archive.write(path, path.name)
        return buffer.getvalue(), "application/zip", ".zip"


def _download_stem(name: str) -> str:
    stem = Path(name).stem if name != "the upload" else "ecg"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "ecg"


def _failure(exc: Exception, name: str):
    from fastapi.responses import JSONResponse

    from features.imageio import ImageReadError

    if isinstance(exc, ImageReadError):  # corrupt, truncated, too small to hold 12 leads: the upload's fault
        return JSONResponse({"error": f"{name}: {exc.reason}; {exc.hint}"}, status_code=422)
    if isinstance(exc, ValueError):  # e.g. Grad-CAM asked of a model that is not a network
        return JSONResponse({"error": str(exc)}, status_code=400)
    log.exception("a page could not be read")  # never the upload's name: it can be a patient's
    return JSONResponse({"error": f"the model could not read {name} ({type(exc).__name__}); the server goes on"},
                        status_code=500)


async def _read_capped(request, limit: int, too_large: str) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _uploaded_image(body: bytes, content_type: str) -> tuple[bytes, str]:
    """(the image's bytes, its file name) from a raw body or the first file of a multipart form, in memory."""
    if not content_type.startswith("multipart/form-data"):
        return body, "the upload"
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts() if message.is_multipart() else ():
        filename = part.get_filename()
        if filename is not None or part.get_param("name", header="content-disposition") in ("file", "image"):
            return part.get_payload(decode=True) or b"", filename or "the upload"
    return b"", "the upload"


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8080, tracking_uri: str | None = None,
          max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PAGE_PIXELS, explain: str = "auto",
          lime_samples: int = 100, allow_lime: bool = False, request_seconds: float = REQUEST_SECONDS,
          token_file: str | None = None, allowed_hosts=(), reload_on_promote: bool = True,
          poll_seconds: float = 30.0) -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn
    from PIL import Image

    from automl.serve_guards import is_loopback, is_wildcard, read_token, start_access_log

    token = read_token(token_file) if token_file else None  # read once: a changed file needs a restart
    if token is None and not is_loopback(host):
        log.warning("listening on %s without --token-file: anyone who can reach this port can send pages and "
                    "read the answers", host)
    if is_wildcard(host) and not allowed_hosts:
        log.warning("listening on every interface: requests are answered only when their Host header is localhost, "
                    "127.0.0.1 or ::1; add --allowed-host NAME for each name or address clients use")
    # Pillow's own bomb guard for anything decoded outside features.imageio: a warning above our limit, an error at 2x.
    Image.MAX_IMAGE_PIXELS = max_pixels
    start_access_log()
    served = ServedModel(model, tracking_uri)
    if reload_on_promote:
        served.watch(poll_seconds)
    app = create_app(served, max_upload_bytes=max_upload_bytes, max_pixels=max_pixels, explain=explain,
                     lime_samples=lime_samples, allow_lime=allow_lime, request_seconds=request_seconds,
                     bound_host=host, allowed_hosts=allowed_hosts, token=token)
    try:
        # uvicorn's own access log would print query strings; ours (serve_guards) prints what it may.
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                    limit_concurrency=4 * MAX_IN_FLIGHT)
    finally:
        served.close()
