"""The light runtime of a SmartECG export: ECG pages in, class and calibrated probabilities out.

Needs numpy, scipy, Pillow and onnxruntime only. The page reading, feature and page-gate code
is SmartECG's own, copied into ``vendor/`` when the model was exported, and the model's fitted
parts are rebuilt around it: the classifier as ONNX graphs, the calibrator and the gate from
their numbers in ``manifest.json`` and ``gate.npz``. So a page gets the answer the registered
model gives, to float precision.

    from light_runtime import load
    model = load("path/to/export")
    for row in model.classify(["page.jpg"]): print(row)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["LightModel", "load", "main"]

FOLDER = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
FORMAT = "smartecg-onnx"


def load(folder: str | Path = FOLDER) -> "LightModel":
    """The exported model in ``folder`` (this file's folder by default)."""
    folder = Path(folder).resolve()
    vendor = str(folder / "vendor")
    if vendor not in sys.path:
        sys.path.insert(0, vendor)  # SmartECG's own page and feature code, as exported
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST} is not a SmartECG ONNX export")
    return LightModel(folder, manifest)


class LightModel:
    """The exported model: :meth:`classify` pages, or :meth:`predict_checked` for the raw numbers."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        from automl.model import ECGModel  # the vendored copy
        from features._heap import keep_heap_top

        keep_heap_top()  # as SmartECG's own feature extraction does: freed page arrays stay mapped

        self.manifest = manifest
        self.classes = list(manifest["classes"])
        spec = manifest["classifier"]
        graphs = [OnnxClassifier(folder / g["file"], g["output"], g["classes"]) for g in spec["graphs"]]
        if spec["ensemble"]:
            from automl.ensemble import SoftVote

            classifier = SoftVote(graphs, [g["weight"] for g in spec["graphs"]],
                                  [g["columns"] for g in spec["graphs"]], len(self.classes))
        else:
            classifier = graphs[0]
        self.model = ECGModel(page_inputs(manifest["features"]), classifier, self.classes,
                              engine=manifest.get("engine", ""), description=manifest.get("description", ""))
        self.model.calibrator = calibrator(manifest.get("calibrator"))
        self.model.uncertain_below = manifest.get("uncertain_below")
        self.model.gate = page_gate(folder, manifest.get("gate"))

    def predict_checked(self, pages) -> tuple[list, np.ndarray]:
        """(the gate's checks, probabilities): refused pages have a row of NaN."""
        return self.model.predict_checked(pages)

    def classify(self, pages) -> list[dict]:
        """Per page: class, probabilities, uncertain, and the gate's status and reason."""
        checks, proba = self.predict_checked(pages)
        uncertain = self.model.uncertain(proba, checks)
        rows = []
        for check, p, flagged in zip(checks, proba, uncertain):
            refused = bool(np.isnan(p).any())
            rows.append({"page": check.name, "class": "" if refused else self.classes[int(np.argmax(p))],
                         "probabilities": {c: (None if refused else float(v)) for c, v in zip(self.classes, p)},
                         "uncertain": bool(flagged), "status": check.status, "reason": check.reason})
        return rows


class OnnxClassifier:
    """``predict_proba`` of one ONNX graph, with the fitted classifier's ``classes_``."""

    def __init__(self, path: Path, output: str, classes: list) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's business
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = output
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X) -> np.ndarray:
        return self.session.run([self.output], {self.input: np.asarray(X, dtype=np.float32)})[0]


def page_inputs(spec: dict):
    """What the classifier reads of a page: feature vectors, or a network's input tensor."""
    if spec["kind"] == "sets":
        return PageSets(spec["sets"], spec["size"])
    return NetworkInputs(spec["view"], spec["size"], spec["suppress_grid"])


class PageSets:
    """The feature sets the model reads, page by page, as ``PageFeatures`` computes them (no cache)."""

    def __init__(self, names: list[str], size) -> None:
        from features.sets import FEATURE_SETS, feature_length

        self.sets = {name: FEATURE_SETS[name] for name in names}
        self.size = tuple(int(v) for v in size)
        self.lengths = {name: feature_length(name) for name in names}

    def transform(self, sources) -> np.ndarray:
        from features.extract import normalised_pages, rows_from_pages

        pages = [normalised_pages(source, self.sets, size=self.size) for source in sources]
        return rows_from_pages(pages, self.sets, size=self.size, lengths=self.lengths)


class NetworkInputs:
    """A network's input tensors, page by page, as ``PageTensors`` makes them (no cache)."""

    def __init__(self, view: str, size, suppress_grid: bool) -> None:
        from features.tensors import PageTensors

        self.tensors = PageTensors(view=view, size=tuple(size), suppress_grid=suppress_grid)

    def transform(self, sources) -> np.ndarray:
        return self.tensors.transform_normalised([self.tensors.normalise(source) for source in sources])


# --- calibrator: SmartECG's own classes, with their fitted maps as numbers ----------------------------

class PlattMap:
    """A class's sigmoid map: what ``LogisticRegression.predict_proba`` on one logit gives."""

    def __init__(self, coef: float, intercept: float) -> None:
        self.coef, self.intercept = float(coef), float(intercept)

    def predict_proba(self, x) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=float)[:, 0] * self.coef + self.intercept)))
        return np.column_stack([1.0 - p, p])


class IsotonicMap:
    """A class's isotonic map: ``IsotonicRegression(out_of_bounds="clip").predict``."""

    def __init__(self, x: list[float], y: list[float]) -> None:
        self.x, self.y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def predict(self, values) -> np.ndarray:
        return np.interp(np.clip(np.asarray(values, dtype=float), self.x[0], self.x[-1]), self.x, self.y)


def calibrator(spec: dict | None):
    """The calibrator of the manifest's ``calibrator`` entry (None: the model has none)."""
    if spec is None:
        return None
    from automl.calibration import OneVsRestCalibration, TemperatureScaling

    if spec["method"] == "temperature":
        found = TemperatureScaling()
        found.temperature_ = float(spec["temperature"])
        return found
    found = OneVsRestCalibration(spec["method"])
    maps = {"sigmoid": lambda m: PlattMap(m["coef"], m["intercept"]), "isotonic": lambda m: IsotonicMap(m["x"], m["y"])}
    found.maps_ = [None if m is None else maps[spec["method"]](m) for m in spec["maps"]]
    return found


# --- page gate: SmartECG's own, with its fitted parts as arrays --------------------------------------

class Standardise:
    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean, self.scale = mean, scale

    def transform(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=float) - self.mean) / self.scale


class Softmax:
    """A standardised multinomial logistic regression's ``predict_proba``."""

    def __init__(self, space: Standardise, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.space, self.coef, self.intercept = space, coef, intercept

    def predict_proba(self, X) -> np.ndarray:
        z = self.space.transform(X) @ self.coef.T + self.intercept
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class Neighbours:
    """``NearestNeighbors.kneighbors`` (Euclidean, brute force) over the training pages' descriptors."""

    def __init__(self, points: np.ndarray, n_neighbors: int) -> None:
        self.points, self.n_neighbors = points, int(n_neighbors)

    def kneighbors(self, X, n_neighbors: int | None = None):
        k = n_neighbors or self.n_neighbors
        X = np.asarray(X, dtype=float)
        squared = ((X[:, None, :] - self.points[None, :, :]) ** 2).sum(axis=2)
        nearest = np.argsort(squared, axis=1, kind="stable")[:, :k]
        return np.sqrt(np.take_along_axis(squared, nearest, axis=1)), nearest


def page_gate(folder: Path, spec: dict | None):
    """The gate of the manifest's ``gate`` entry; None: the model had none (blank pages are still refused)."""
    if spec is None:
        return None
    from features.gate import PageGate

    arrays = np.load(folder / spec["file"], allow_pickle=False)
    gate = PageGate(**spec["params"])
    gate.orientation_ = Softmax(Standardise(arrays["orientation_mean"], arrays["orientation_scale"]),
                                arrays["orientation_coef"], arrays["orientation_intercept"])
    gate.space_ = Standardise(arrays["space_mean"], arrays["space_scale"])
    gate.neighbours_ = Neighbours(arrays["neighbour_points"], spec["n_neighbors"])
    gate.scale_ = float(spec["scale"])
    gate.n_pages_ = int(spec["n_pages"])
    return gate


# --- command line --------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    """Print each page's class and probabilities; 1 when a page was refused."""
    as_json = "--json" in argv
    pages = [a for a in argv if a != "--json"]
    if not pages or any(a in ("-h", "--help") for a in pages):
        print("usage: python -m <export folder> [--json] PAGE...", file=sys.stderr)
        return 2
    model = load()
    refused = 0
    for page, row in zip(pages, model.classify(pages)):  # one row per page, in order
        row["page"] = page
        refused += row["status"] == "refused"
        if as_json:
            print(json.dumps(row))  # full float precision: parity checks read these
        elif row["status"] == "refused":
            print(f"{page}: refused: {row['reason']}")
        else:
            p = row["probabilities"][row["class"]]
            flags = (" uncertain - refer for review" if row["uncertain"] else "") + (f" ({row['reason']})" if row["reason"] else "")
            others = ", ".join(f"{c} {v:.3f}" for c, v in row["probabilities"].items() if not math.isnan(v))
            print(f"{page}: {row['class']} ({p:.3f}){flags} [{others}]")
    return 1 if refused else 0
