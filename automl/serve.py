"""``smartecg serve``: a web page and a JSON API that classify uploaded ECG pages, with explanations.

* ``GET /``: the page (``automl/web/index.html``): drop or pick an image, see the class, every
  class's probability, the uncertainty flag and the Grad-CAM or LIME overlay with its summary.
* ``POST /api/predict[?explain=auto|gradcam|lime|none]``: the image as the request body, or as
  the file of a ``multipart/form-data`` form; answers JSON (class, probabilities, uncertain,
  summary, per-lead shares, the overlay as a base64 PNG, the model version, seconds).
* ``POST /api/digitize[?format=csv|wfdb&fs=500]``: the page's leads as signals in mV
  (:mod:`features.digitize`): a CSV, or a zip of the WFDB record (``.hea`` + ``.dat``), as a
  download; a page whose lead rows cannot be found gets 422 and one line.
* ``GET /healthz``: the model being served.

Safety: bound to 127.0.0.1 unless told otherwise; uploads are read into memory up to a limit
(20 MB by default) and never written to disk; the file type is judged from the bytes, not the
name; a bad upload gets a 4xx JSON error and the server goes on. The model is loaded once; when
it is named by an alias (``models:/smartecg@champion``) the alias is watched and the new version
is loaded whole, then swapped in, when a search promotes one.
"""

import base64
import io
import logging
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)

__all__ = ["MAX_UPLOAD_BYTES", "ServedModel", "create_app", "image_kind", "serve"]

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_FORM_OVERHEAD = 64 * 1024  # a multipart form's own lines around the file
_PAGE = Path(__file__).with_name("web") / "index.html"
# What an image file starts with; anything else is refused before it is decoded.
_SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"BM": "bmp", b"II*\x00": "tiff",
               b"MM\x00*": "tiff"}
EXPLAIN_CHOICES = ("auto", "gradcam", "lime", "none")


def image_kind(data: bytes) -> str | None:
    """"jpeg", "png", "bmp" or "tiff" from the first bytes; None for anything else."""
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


@dataclass
class _Loaded:
    model: object  # automl.model.ECGModel
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

    def run(self, work):
        """``work(model)`` with the model, one call at a time."""
        with self._lock:
            return work(self._loaded.model)

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
        loaded, shown = load_pyfunc(self.uri, self.tracking_uri)
        return _Loaded(ecg_model(loaded), shown, version)

    def _alias_version(self) -> str | None:
        if "@" not in self.uri or not self.uri.startswith("models:/"):
            return None
        from automl.tracking import resolve_tracking_uri, use_store

        name, alias = self.uri[len("models:/"):].split("@", 1)
        client = use_store(resolve_tracking_uri(self.tracking_uri))
        return str(client.get_model_version_by_alias(name, alias).version)


def create_app(served: ServedModel, *, max_upload_bytes: int = MAX_UPLOAD_BYTES, explain: str = "auto",
               lime_samples: int = 100):
    """The FastAPI application over ``served``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    app = FastAPI(title="SmartECG", docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_PAGE.read_text())

    @app.get("/healthz")
    async def healthz() -> dict:
        current = served.current
        return {"status": "ok", "model": current.uri, "version": current.version, "classes": current.model.classes,
                "engine": current.model.engine, "uncertain_below": current.model.uncertain_below,
                "calibrated": current.model.calibrator is not None}

    async def uploaded(request: Request):
        """(image bytes, file name, kind) of the request, or the error response to send instead."""
        too_large = error(413, f"upload larger than {max_upload_bytes / 2 ** 20:g} MB; send a smaller scan")
        try:
            body = await _read_capped(request, max_upload_bytes + _FORM_OVERHEAD)
        except _TooLarge:
            return too_large
        data, name = _uploaded_image(body, request.headers.get("content-type", ""))
        if len(data) > max_upload_bytes:
            return too_large
        if not data:
            return error(400, "no image in the request: send the image file as the body, or as a form's file")
        kind = image_kind(data)
        if kind is None:
            return error(415, f"{name} is not an image SmartECG reads (judged from its bytes): send a JPEG, PNG, "
                         "BMP or TIFF scan of the ECG page")
        return data, name, kind

    async def handled(request: Request, work):
        """(``work(image bytes)`` run off the event loop, file name, kind), or the error response to send."""
        upload = await uploaded(request)
        if not isinstance(upload, tuple):
            return upload
        data, name, kind = upload
        try:
            return await run_in_threadpool(work, data), name, kind
        except Exception as exc:
            return _failure(exc, name)

    @app.post("/api/predict")
    async def predict(request: Request, explain: str = explain):
        if explain not in EXPLAIN_CHOICES:
            return error(400, f"explain must be one of {', '.join(EXPLAIN_CHOICES)}, got {explain!r}")
        outcome = await handled(request, lambda data: served.run(
            lambda model: _answer(model, data, explain, lime_samples)))
        if not isinstance(outcome, tuple):
            return outcome
        answer, name, kind = outcome
        current = served.current
        return {**answer, "file": name, "type": kind, "model": {"uri": current.uri, "version": current.version}}

    @app.post("/api/digitize")
    async def digitize(request: Request, format: str = "csv", fs: int = 500):
        if format not in ("csv", "wfdb"):
            return error(400, f"format must be csv or wfdb, got {format!r}")
        if not 50 <= fs <= 10_000:
            return error(400, f"fs must be 50-10000 Hz, got {fs}")
        outcome = await handled(request, lambda data: _signal_file(data, format, fs))
        if not isinstance(outcome, tuple):
            return outcome
        (content, media_type, suffix), name, _ = outcome
        stem = _download_stem(name)
        return Response(content, media_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="{stem}{suffix}"'})

    return app


def _answer(model, data: bytes, explain: str, lime_samples: int) -> dict:
    """Class, probabilities, flag and (unless ``explain`` is "none") the explanation of one page."""
    from automl.explain import UNCERTAIN, explain as explain_page
    from automl.overlay import overlay_image

    started = time.perf_counter()
    if explain == "none":
        proba = model.predict_proba([data])[0]
        probabilities = {c: float(p) for c, p in zip(model.classes, proba)}
        top = max(probabilities, key=probabilities.get)
        uncertain = bool(model.uncertain(proba[None])[0])
        extra = {"summary": f"{top} {probabilities[top]:.2f}" + (f" - {UNCERTAIN}" if uncertain else "")}
    else:
        found = explain_page(model, data, method=explain, lime_samples=lime_samples)
        probabilities, top, uncertain = found.probabilities, found.class_name, found.uncertain
        buffer = io.BytesIO()
        overlay_image(found, data).save(buffer, format="PNG", compress_level=3)
        extra = {"summary": found.summary, "method": found.method, "lead_shares": found.to_dict()["lead_shares"],
                 "notes": found.notes, "overlay_png": base64.b64encode(buffer.getvalue()).decode("ascii")}
    return {"class": top, "probability": round(probabilities[top], 4),
            "probabilities": {c: round(p, 4) for c, p in probabilities.items()}, "uncertain": uncertain,
            **extra, "seconds": round(time.perf_counter() - started, 3)}


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

    if isinstance(exc, ImageReadError):  # truncated, corrupt, too small, too many pixels: the upload's fault
        return JSONResponse({"error": f"{name}: {exc.reason}; {exc.hint}"}, status_code=422)
    if isinstance(exc, ValueError):  # e.g. Grad-CAM asked of a model that is not a network
        return JSONResponse({"error": str(exc)}, status_code=400)
    log.exception("prediction failed for %s", name)
    return JSONResponse({"error": f"the model could not read {name} ({type(exc).__name__}); the server goes on"},
                        status_code=500)


class _TooLarge(Exception):
    pass


async def _read_capped(request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
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
          max_upload_bytes: int = MAX_UPLOAD_BYTES, explain: str = "auto", lime_samples: int = 100,
          reload_on_promote: bool = True, poll_seconds: float = 30.0) -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn

    served = ServedModel(model, tracking_uri)
    if reload_on_promote:
        served.watch(poll_seconds)
    app = create_app(served, max_upload_bytes=max_upload_bytes, explain=explain, lime_samples=lime_samples)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        served.close()
