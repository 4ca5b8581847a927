"""``smartecg pretrain``: backbones learnt on generated pages, supervised on the generator's truth.

Within one budget: pages are generated (both layouts, grid and gridless, each with the scan
artefacts its seed draws; :func:`features.synthetic_tasks.training_page`) on every core, then a
backbone per view (:data:`automl.engines.backbones.BACKBONE_VIEWS`) trains on all the tasks of
:data:`features.synthetic_tasks.TASKS` at once, scored after each epoch on pages of another seed
range. The best epoch's backbone is saved with its recipe where searches look
(:func:`automl.engines.backbones.backbone_dir`) and logged to MLflow (experiment
``smartecg-pretrain``: parameters, per-task validation figures, the backbone and recipe as
artifacts).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PretrainResult", "pretrain"]

EXPERIMENT = "smartecg-pretrain"
VALIDATION_SEED_OFFSET = 1_000_003  # validation pages come from seeds no training page uses
GENERATION_SHARE = 0.4  # of the budget, at most, for making pages; the rest trains
MIN_VALIDATION_PAGES = 40


@dataclass
class PretrainResult:
    folders: dict[str, Path] = field(default_factory=dict)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # view -> figure -> value
    pages: int = 0
    validation_pages: int = 0
    seconds: float = 0.0
    run_id: str | None = None

    def lines(self) -> list[str]:
        out = [f"pretrained on {self.pages} generated pages ({self.validation_pages} of another seed range "
               f"to validate) in {self.seconds:.0f} s"]
        for view, figures in self.validation.items():
            shown = ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
            out.append(f"  {view}: {shown}")
            out.append(f"    saved in {self.folders[view]}")
        return out


def pretrain(budget_seconds: float, *, pages: int = 3000, out: str | Path | None = None,
             views=("leads", "signals"), seed: int = 0, width: int = 16, depth: int = 4, batch_size: int = 32,
             validation_pages: int | None = None, tracking_uri: str | None = None,
             progress: bool | None = None) -> PretrainResult:
    """Generate up to ``pages`` pages and train a backbone per view, all within ``budget_seconds``.

    ``validation_pages``: pages of another seed range scored after every epoch (default: a fifth
    of ``pages``, at least 40). ``out``: where the backbones go (default: where searches look)."""
    from automl.engines.backbones import BACKBONE_VIEWS, backbone_dir

    unknown = sorted(set(views) - set(BACKBONE_VIEWS))
    if unknown or not views:
        raise ValueError(f"pretrain views must be among {', '.join(BACKBONE_VIEWS)}, got {', '.join(views) or 'none'}")
    if pages < 10 or budget_seconds <= 0:
        raise ValueError("pretrain needs --pages >= 10 and a positive --budget")
    started = time.monotonic()
    deadline = started + budget_seconds
    reserve = min(0.05 * budget_seconds, 30.0) + 5.0  # saving and logging after training
    n_val = validation_pages or max(MIN_VALIDATION_PAGES, pages // 5)
    make_until = started + GENERATION_SHARE * budget_seconds
    x_val, t_val = _generate(range(seed + VALIDATION_SEED_OFFSET, seed + VALIDATION_SEED_OFFSET + n_val), views,
                             make_until, "validation pages", progress, require_all=True)
    x, targets = _generate(range(seed, seed + pages), views, make_until, "training pages", progress)
    if len(targets["class"]) < 10:
        raise RuntimeError(f"only {len(targets['class'])} pages were made in {GENERATION_SHARE:.0%} of the budget: "
                           "give pretrain a longer --budget")
    result = PretrainResult(pages=len(targets["class"]), validation_pages=n_val)
    recipes, backbones = {}, {}
    for i, view in enumerate(views):
        view_deadline = time.monotonic() + (deadline - reserve - time.monotonic()) / (len(views) - i)
        backbone, recipe = _train_view(view, x[view], targets, x_val[view], t_val, view_deadline, seed=seed,
                                       width=width, depth=depth, batch_size=batch_size, progress=progress)
        recipe.update(pages=result.pages, validation_pages=n_val, seed=seed,
                      validation_seeds=[seed + VALIDATION_SEED_OFFSET, seed + VALIDATION_SEED_OFFSET + n_val - 1],
                      generator=_generator_recipe(), size=list(BACKBONE_VIEWS[view]))
        folder = _save(backbone, recipe, backbone_dir(out) / view)
        result.folders[view], result.validation[view], recipes[view] = folder, recipe["validation"], recipe
        backbones[view] = backbone
    result.seconds = time.monotonic() - started
    result.run_id = _log(recipes, backbones, result, tracking_uri)
    return result


def _generator_recipe() -> dict:
    from features import synthetic_tasks

    return {"module": "features.synthetic_tasks.training_page", "six_by_two": synthetic_tasks.SIX_BY_TWO_SHARE,
            "gridless": synthetic_tasks.GRIDLESS_SHARE,
            "scan": "each page's own draw (features.synthetic: rotation, size, blur, noise, JPEG)",
            "tasks": [{"name": t.name, "kind": t.kind, "labels": list(t.labels), "unit": t.unit}
                      for t in synthetic_tasks.TASKS]}


def _page_tensors(seed: int, views) -> tuple[dict[str, np.ndarray], dict]:
    import warnings

    from automl.engines.backbones import BACKBONE_VIEWS
    from features.synthetic_tasks import training_page
    from features.tensors import PageTensors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, targets = training_page(seed)
        tensors = {view: PageTensors(view=view, size=BACKBONE_VIEWS[view]).transform([data])[0] for view in views}
    return tensors, targets


def _generate(seeds, views, until: float, what: str, progress, require_all: bool = False):
    """Tensors per view and stacked targets of the pages of ``seeds``, made on every core until ``until``."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from automl.core_use import available_cores

    seeds = list(seeds)
    jobs = available_cores()
    made: list[tuple[dict, dict]] = []
    with Parallel(n_jobs=jobs) as parallel, tqdm(total=len(seeds), desc=what, unit="page", leave=False,
                                                 disable=None if progress is None else not progress) as bar:
        for start in range(0, len(seeds), 8 * jobs):
            if time.monotonic() >= until and made and not require_all:
                break  # (one batch at least: a model needs pages, even on a budget cut very short)
            chunk = parallel(delayed(_page_tensors)(s, views) for s in seeds[start:start + 8 * jobs])
            made.extend(chunk)
            bar.update(len(chunk))
    x = {view: np.stack([m[0][view] for m in made]).astype(np.float32) for view in views}
    targets = {name: np.stack([m[1][name] for m in made]) for name in made[0][1]}
    return x, targets


def _multitask(backbone):
    import keras
    from keras import layers

    from features.synthetic_tasks import TASKS

    embedding = layers.Dropout(0.2)(backbone.output)
    outputs = {t.name: layers.Dense(t.outputs, activation="softmax" if t.kind == "class" else None, name=t.name)(embedding)
               for t in TASKS}
    model = keras.Model(backbone.input, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={t.name: "sparse_categorical_crossentropy" if t.kind == "class" else "mse" for t in TASKS})
    return model


def _validation_figures(model, x_val: np.ndarray, t_val: dict) -> dict[str, float]:
    """Macro-F1 of every classification task; mean absolute error of the others (in their own units)."""
    from sklearn.metrics import f1_score

    from features.synthetic_tasks import TASKS

    predicted = model.predict(x_val, batch_size=64, verbose=0)
    figures = {}
    for task in TASKS:
        p = np.asarray(predicted[task.name])
        if task.kind == "class":
            figures[f"{task.name}_macro_f1"] = float(f1_score(t_val[task.name], p.argmax(axis=1),
                                                              labels=np.arange(task.outputs), average="macro",
                                                              zero_division=0))
        elif task.name == "rate":
            figures["rate_mae_bpm"] = float(np.mean(np.abs(p[:, 0] - t_val["rate"])) * 100.0)
        else:
            figures[f"{task.name}_mae"] = float(np.mean(np.abs(p.reshape(t_val[task.name].shape) - t_val[task.name])))
    return figures


def _score(figures: dict[str, float]) -> float:
    """What picks the best epoch: the mean macro-F1 over the classification tasks."""
    scores = [v for k, v in figures.items() if k.endswith("_macro_f1")]
    return float(np.mean(scores))


def _train_view(view: str, x: np.ndarray, targets: dict, x_val: np.ndarray, t_val: dict, deadline: float, *,
                seed: int, width: int, depth: int, batch_size: int, progress) -> tuple[object, dict]:
    import keras
    from tqdm.auto import tqdm

    from automl.engines.backbones import build_backbone
    from automl.engines.deep_training import configure_tensorflow

    configure_tensorflow(seed)
    backbone = build_backbone(view, x.shape[1:], width=width, depth=depth)
    model = _multitask(backbone)
    best, best_weights, history, epoch_seconds = -np.inf, None, [], 0.0
    best_figures: dict = {}
    bar = tqdm(desc=f"pretrain {view}", unit="epoch", leave=False, disable=None if progress is None else not progress)
    epoch = 0
    while epoch == 0 or time.monotonic() + 1.2 * epoch_seconds < deadline:  # one epoch at least
        began = time.monotonic()
        fit = model.fit(x, targets, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        figures = _validation_figures(model, x_val, t_val)
        epoch_seconds = time.monotonic() - began
        history.append({"epoch": epoch, "loss": float(fit.history["loss"][-1]), **figures, "seconds": epoch_seconds})
        if _score(figures) > best:
            best, best_weights, best_figures = _score(figures), backbone.get_weights(), figures
        bar.update(1)
        bar.set_postfix(score=f"{_score(figures):.3f}", best=f"{best:.3f}")
        epoch += 1
    bar.close()
    backbone.set_weights(best_weights)
    recipe = {"view": view, "width": width, "depth": depth, "batch_size": batch_size, "optimizer": "adam 1e-3",
              "epochs": epoch, "steps": epoch * int(np.ceil(len(x) / batch_size)),
              "best_epoch": int(np.argmax([_score(h) for h in history])), "validation": best_figures,
              "history": history, "keras": keras.__version__}
    return backbone, recipe


def _save(backbone, recipe: dict, folder: Path) -> Path:
    from automl.engines.backbones import save_backbone
    from automl.tracking import git_commit

    recipe["smartecg_commit"] = git_commit()
    recipe["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return save_backbone(backbone, recipe, folder)


def _log(recipes: dict[str, dict], backbones: dict, result: PretrainResult, tracking_uri: str | None) -> str | None:
    """One MLflow run: the recipe as parameters, validation figures per view, each backbone as an
    MLflow model (``backbone_<view>``; its URI in the run's tag ``smartecg.model.<view>``) and its
    cache folder (model file and recipe) as artifacts."""
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    from automl.tracking import default_artifact_root, resolve_tracking_uri, use_store

    uri = resolve_tracking_uri(tracking_uri)
    client = use_store(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        EXPERIMENT, artifact_location=default_artifact_root(uri))
    with mlflow.start_run(experiment_id=experiment_id, run_name="pretrain") as run:
        first = next(iter(recipes.values()))
        mlflow.log_params({"views": ",".join(recipes), "pages": result.pages, "validation_pages": result.validation_pages,
                           "seed": first["seed"], "width": first["width"], "depth": first["depth"],
                           "batch_size": first["batch_size"], "seconds": round(result.seconds)})
        for view, recipe in recipes.items():
            mlflow.log_metrics({f"{view}.{k}": v for k, v in recipe["validation"].items()})
            for row in recipe["history"]:
                mlflow.log_metrics({f"{view}.epoch_{k}": v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            mlflow.log_param(f"{view}.epochs", recipe["epochs"])
            mlflow.log_artifacts(str(result.folders[view]), artifact_path=f"backbone/{view}")
            backbone = backbones[view]
            example = np.zeros((1, *backbone.input_shape[1:]), dtype=np.float32)
            logged = mlflow.tensorflow.log_model(
                backbone, name=f"backbone_{view}", signature=infer_signature(example, np.asarray(backbone(example))),
                pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"])
            mlflow.set_tag(f"smartecg.model.{view}", logged.model_uri)
        mlflow.set_tag("smartecg.kind", "pretrained-backbone")
        return run.info.run_id
