"""The few lines a search ends with: the result, where it is, and the commands to look at it."""
from __future__ import annotations

from automl.budget import format_duration

__all__ = ["search_summary"]


def search_summary(result) -> str:
    spec = result.spec
    lines = [f"search finished in {format_duration(result.elapsed)} of a {format_duration(result.budget_seconds)} "
             f"budget: {_count(result.trials, 'trial')}, {_count(len(result.candidates), 'candidate')} scored "
             "on the holdout"
             f" ({result.overhead_share:.0%} of the time outside engines)"]
    lines += [f"  {line}" for line in result.engine_lines]
    if result.core_use is not None:
        whole, engines = result.core_use.share(), result.core_use.share(*result.engine_window)
        if whole == whole:
            lines.append(f"  cores busy: {whole:.0%} of the search" + (f", {engines:.0%} during the engines"
                                                                        if engines == engines else ""))
    if result.skipped:
        lines.append(f"{len(result.skipped)} file(s) skipped (named above and in the run's skipped_files.json)")
    if result.best is None:
        lines.append("no model was registered: no trial finished within the budget; try a larger --budget")
        return "\n".join(lines + _library_log(result))
    best, promotion = result.best, result.promotion
    lines.append(f"best: {best.candidate.engine} {best.candidate.description}")
    if best.cv_score == best.cv_score:
        lines.append(f"chosen on: {spec.metric} {best.cv_score:.3f} on {best.cv_source}")
    lines.append(f"holdout: {best.evaluation.summary()}")
    lines += [f"  {line}" for line in best.evaluation.group_lines()]
    ece = best.evaluation.metrics.get("ece", float("nan"))
    lines.append(f"calibration: {best.calibration.get('calibration', 'none')}; holdout ECE {ece:.3f} "
                 f"(uncalibrated {best.calibration.get('holdout_ece_uncalibrated', float('nan')):.3f})")
    if best.refit:
        lines.append(f"model: {best.refit}")
    if result.explanations:
        lines.append(f"explained {_count(len(result.explanations), 'holdout page')} (overlays under the run's "
                     "explanations/):")
        lines += [f"  {line}" for line in result.explanations]
    lines.append(f"registry: {promotion.name} v{promotion.version} is now '{promotion.alias}' ({promotion.reason})")
    uri_flag = "" if result.tracking_uri.endswith("mlruns/mlflow.db") else f" --tracking-uri {result.tracking_uri}"
    lines += [
        "look at it:",
        f"  smartecg ui{uri_flag}                      # every trial, under experiment '{spec.name}'",
        f"  smartecg pull --alias champion --out champion{uri_flag}",
        f"  smartecg predict PAGE.jpg{uri_flag}         # uses models:/{promotion.name}@champion",
    ]
    return "\n".join(lines + _library_log(result))


def _library_log(result) -> list[str]:
    if result.library_log is None:
        return []
    return [f"library messages (TensorFlow, MLflow, the engines' workers): {result.library_log} "
            "(also the run's logs/library.log)"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
