"""``smartecg export --format onnx``: a model as a folder that runs with numpy, scipy, Pillow and onnxruntime.

The folder holds the classifier as ONNX graphs (:mod:`automl.onnx_graphs`), the calibrator and the
page gate as numbers, SmartECG's own page reading, feature and gate code (copied into ``vendor/``:
the very code the registered model runs, so the answers agree to float precision), the light
runtime (:mod:`automl.light`), a manifest (classes, feature sets and versions, input contract, the
source registry version and its holdout figures) and a README. ``python -m <folder> PAGE...``
prints the class and probabilities.

A part the light runtime cannot carry (a Keras network, a feature set that needs a library beyond
those four) fails with one line naming it (:class:`~automl.onnx_graphs.ExportError`), before
anything is written.
"""
from __future__ import annotations

import ast
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from automl.onnx_graphs import ExportError, classifier_graphs

__all__ = ["LIGHT_REQUIREMENTS", "ExportError", "export_model", "export_registered", "vendored_modules"]

LIGHT_REQUIREMENTS = ("numpy", "scipy", "Pillow", "onnxruntime")
_IMPORTABLE = {"numpy", "scipy", "PIL", "onnxruntime", "features", "automl"}  # what vendored code may import
# The code the light runtime runs; the features modules these import come along.
_VENDOR_ROOTS = ("features.sets", "features.tensors", "features.extract", "features.gate", "automl.model",
                 "automl.calibration", "automl.ensemble")
# Feature sets whose code needs a library the light runtime does not carry.
_HEAVY_SETS = {"lbp": "scikit-image (local binary patterns)", "rhythm": "neurokit2 (R peaks)",
               "embed": "TensorFlow (the pretrained backbone)"}
FORMAT, FORMAT_VERSION = "smartecg-onnx", 1


def export_model(model, out: str | Path, *, source: dict | None = None) -> Path:
    """Write ``model`` (an :class:`~automl.model.ECGModel`) to the new folder ``out``; returns it.

    ``source`` goes into the manifest as is (registry name, version, holdout figures...).
    Raises :class:`ExportError` naming the part that cannot be exported, FileExistsError when
    ``out`` holds files. The folder appears whole or not at all.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    features, width = _feature_spec(model)
    graphs = classifier_graphs(model.classifier, width)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smartecg-export-", dir=out.parent) as tmp:
        folder = Path(tmp) / "export"
        (folder / "onnx").mkdir(parents=True)
        for graph in graphs:
            (folder / "onnx" / f"{graph.name}.onnx").write_bytes(graph.proto)
        _copy_code(folder)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "classes": list(model.classes), "engine": model.engine, "description": model.description,
            "features": features,
            "classifier": {"ensemble": len(graphs) > 1 or graphs[0].columns is not None,
                           "graphs": [{"file": f"onnx/{g.name}.onnx", "output": g.output, "classes": g.classes,
                                       "weight": g.weight, "columns": g.columns} for g in graphs]},
            "calibrator": calibrator_spec(model.calibrator),
            "uncertain_below": model.uncertain_below,
            "gate": _write_gate(model.gate, folder),
            "input": INPUT_CONTRACT,
            "requirements": list(LIGHT_REQUIREMENTS),
            "source": source or {},
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_plain) + "\n")
        (folder / "README.md").write_text(_readme(manifest, out.name))
        if out.exists():
            out.rmdir()  # empty, checked above
        folder.rename(out)
    return out


def export_registered(client, name: str, out: str | Path, *, alias: str | None = "champion",
                      version: int | None = None) -> Path:
    """Export a registered version (by ``alias`` or ``version``) of ``name`` on the client's store."""
    import mlflow.pyfunc

    from automl.predict import ecg_model
    from automl.registry import model_uri

    try:
        mv = (client.get_model_version(name, str(version)) if version is not None
              else client.get_model_version_by_alias(name, alias))
    except Exception as exc:  # MLflow's "not found" comes in several types
        which = f"version {version}" if version is not None else f"alias {alias!r}"
        raise ValueError(f"registered model {name!r} has no {which}; run `smartecg search` first") from exc
    model = ecg_model(mlflow.pyfunc.load_model(model_uri(name, version=mv.version)))
    tags = dict(mv.tags)
    holdout = {k[len("holdout_"):]: v for k, v in sorted(tags.items()) if k.startswith("holdout_")}
    source = {"name": name, "version": str(mv.version), "alias": alias, "run_id": mv.run_id,
              "engine": tags.get("engine"), "features": tags.get("features"), "holdout": holdout}
    return export_model(model, out, source=source)


INPUT_CONTRACT = {
    "pages": "image files (JPEG, PNG, TIFF, BMP...) of printed 12-lead ECG pages, one page per file",
    "layouts": "3x4 (with or without a rhythm strip) or 6x2; a quarter-turned or mirrored page is read the right way round",
    "refused": "unreadable files, blank pages, pages unlike the training pages: no class, the reason instead",
    "output": "class, calibrated probability per class, uncertain (refer for review), status (read, turned, refused), reason",
}


def _feature_spec(model) -> tuple[dict, int]:
    """(the manifest's ``features`` entry, the classifier's input width) of what the model reads."""
    from features.handcrafted import PageFeatures
    from features.sets import FEATURE_SETS, feature_length
    from features.tensors import PageTensors

    features = model.features
    if type(features) is PageTensors:
        shape = [int(v) for v in features.input_shape]
        return {"kind": "tensors", "view": features.view, "size": [int(v) for v in features.size],
                "suppress_grid": bool(features.suppress_grid), "input_shape": shape}, int(np.prod(shape))
    if type(features) is not PageFeatures:
        raise ExportError(f"the model reads {type(features).__name__}, which the light runtime does not compute")
    sets = [features.sets] if isinstance(features.sets, str) else list(features.sets)
    for name in sets:
        if name in _HEAVY_SETS:
            raise ExportError(f"feature set {name!r} needs {_HEAVY_SETS[name]}, which the light runtime does not "
                              "carry: export a model without it")
    length = sum(feature_length(name) for name in sets)
    return {"kind": "sets", "sets": sets, "size": [int(v) for v in features.size], "length": length,
            "versions": {name: FEATURE_SETS[name].version for name in sets}}, length


def calibrator_spec(calibrator) -> dict | None:
    """The calibrator's fitted numbers, which the light runtime rebuilds it from."""
    if calibrator is None:
        return None
    if calibrator.method == "temperature":
        return {"method": "temperature", "temperature": float(calibrator.temperature_)}
    maps = []
    for fitted in calibrator.maps_:
        if fitted is None:
            maps.append(None)
        elif calibrator.method == "isotonic":
            maps.append({"x": fitted.X_thresholds_.tolist(), "y": fitted.y_thresholds_.tolist()})
        else:
            maps.append({"coef": float(fitted.coef_[0, 0]), "intercept": float(fitted.intercept_[0])})
    return {"method": calibrator.method, "maps": maps}


def _write_gate(gate, folder: Path) -> dict | None:
    """The fitted gate's arrays to gate.npz; its parameters and scale for the manifest."""
    if gate is None or not hasattr(gate, "neighbours_"):
        return None
    scaler, logistic = gate.orientation_[0], gate.orientation_[-1]
    np.savez(folder / "gate.npz",
             orientation_mean=scaler.mean_, orientation_scale=scaler.scale_,
             orientation_coef=logistic.coef_, orientation_intercept=logistic.intercept_,
             space_mean=gate.space_.mean_, space_scale=gate.space_.scale_,
             neighbour_points=np.asarray(gate.neighbours_._fit_X, dtype=float))
    if list(logistic.classes_) != list(range(len(logistic.classes_))):
        raise ExportError("the page gate's orientation classifier does not know every orientation")
    return {"file": "gate.npz", "params": gate.get_params() if hasattr(gate, "get_params") else {},
            "n_neighbors": int(gate.neighbours_.n_neighbors), "scale": float(gate.scale_), "n_pages": int(gate.n_pages_)}


# --- code --------------------------------------------------------------------------------------------

def _copy_code(folder: Path) -> None:
    light = Path(__file__).resolve().parent / "light"
    shutil.copyfile(light / "light_runtime.py", folder / "light_runtime.py")
    shutil.copyfile(light / "__main__.py", folder / "__main__.py")
    (folder / "__init__.py").write_text('"""A SmartECG model exported for the light runtime: see README.md."""\n')
    for module, path in vendored_modules().items():
        target = folder / "vendor" / Path(*module.split(".")).with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for package in ("features", "automl"):
        init = folder / "vendor" / package / "__init__.py"
        if package == "automl" or not init.exists():  # automl's own __init__ is not needed
            init.write_text(f'"""The part of SmartECG\'s {package} package this export runs."""\n')


def vendored_modules() -> dict[str, Path]:
    """``{module: source file}`` of the SmartECG code the light runtime runs.

    The roots and every ``features`` module they import (at any depth, lazily or not); each
    module's top-level imports must be the standard library or numpy, scipy, Pillow and
    onnxruntime (an ``ImportError`` fallback is allowed), else ExportError names the module.
    """
    root = Path(__file__).resolve().parent.parent
    found: dict[str, Path] = {}
    todo = list(_VENDOR_ROOTS) + ["features.__init__"]
    while todo:
        module = todo.pop()
        if module in found:
            continue
        path = root / Path(*module.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text(), str(path))
        _check_top_level_imports(module, tree)
        found[module] = path
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("features."):
                todo.append(node.module)
    return dict(sorted(found.items()))


def _check_top_level_imports(module: str, tree: ast.Module) -> None:
    for node in tree.body:
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            continue  # a fallback for when the library is absent
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            top = name.split(".")[0]
            if top not in _IMPORTABLE and top not in sys.stdlib_module_names and top != "__future__":
                raise ExportError(f"SmartECG's module {module} imports {name}, which the light runtime does not carry")


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in ("ImportError", "ModuleNotFoundError") for k in kinds)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _reads(features: dict) -> str:
    if features["kind"] == "sets":
        return "the feature sets " + ", ".join(features["sets"])
    return f"the {features['view']} view at {features['size'][0]}x{features['size'][1]} (a network's input)"


def _readme(manifest: dict, name: str) -> str:
    source = manifest["source"]
    origin = (f"registered model {source['name']!r} version {source['version']}" if "version" in source
              else "a SmartECG model")
    holdout = source.get("holdout") or {}
    figures = "\n".join(f"| {k} | {v} |" for k, v in holdout.items()) or "| (none recorded) | |"
    return f"""# {name}: a SmartECG model for the light runtime

Exported from {origin} ({manifest['engine']}: `{manifest['description']}`).
Classes: {', '.join(manifest['classes'])}. Reads: {_reads(manifest['features'])}.

## Run it

Needs Python 3.11 (as SmartECG) with {', '.join(LIGHT_REQUIREMENTS)} only:

    pip install {' '.join(LIGHT_REQUIREMENTS)}
    python -m {name} page.jpg other.png        # from the folder that holds {name}/
    python path/to/{name} --json page.jpg       # one JSON object per page

Each page gets its class and calibrated probabilities, `uncertain` (the top probability is
below {manifest['uncertain_below']}, or the page is unlike the training pages: refer for review),
and the page gate's status: read, turned (read the right way round) or refused with the reason
(unreadable, blank, not an ECG page like the training pages). The exit status is 1 when a page
was refused. In Python: `sys.path.insert(0, "{name}"); from light_runtime import load;
load("{name}").classify(["page.jpg"])`.

## What is inside

- `onnx/`: the classifier as ONNX graph(s){' (an ensemble: weights and classes in the manifest)' if manifest['classifier']['ensemble'] else ''}
- `manifest.json`: classes, feature sets and versions, input contract, calibrator, gate parameters, source
- `gate.npz`: the page gate's fitted arrays (orientation classifier, the training pages' descriptors)
- `vendor/`: SmartECG's page reading, feature and gate code, as it was when exported
- `light_runtime.py`, `__main__.py`: the runtime

## Holdout figures of the source model

| metric | value |
|---|---|
{figures}

These are the registered model's figures on its search's holdout pages; the export gives the
same answers to float precision (checked by SmartECG's parity test). Scores on other hospitals'
pages may be lower: check on your own pages before relying on it.

Data: trained on ECG pages such as Khan et al.'s public dataset (CC BY 4.0), when that is what
the search was given.
"""
