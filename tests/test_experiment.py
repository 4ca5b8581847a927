"""Experiment specs: the shipped ones load; mistakes are refused with the file and key named."""
import pytest

from automl.experiment import ExperimentSpec, load_spec


@pytest.mark.parametrize("name", ["default", "quick", "nightly"])
def test_the_shipped_specs_load(name):
    spec = load_spec(name)
    assert isinstance(spec, ExperimentSpec) and spec.registry_name == "smartecg" and spec.metric == "macro_f1"
    assert spec.engine("tpot").weight > 0 and spec.features


def test_calibration_uncertainty_and_explanations_come_from_the_spec(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("calibration: isotonic\nuncertain_below: 0.75\nexplain: {pages_per_class: 0}\nrefit_all_pages: false\n")
    spec = load_spec(path)
    assert (spec.calibration, spec.uncertain_below, spec.explain_pages, spec.lime_samples) == ("isotonic", 0.75, 0, 200)
    assert not spec.refit_all_pages and load_spec("default").refit_all_pages
    assert load_spec("quick").explain_pages == 1 and load_spec("default").calibration == "auto"


def test_the_nightly_spec_carries_its_own_budget():
    assert load_spec("nightly").budget_seconds == 2 * 3600 and load_spec("default").budget_seconds is None


def test_no_spec_means_default():
    assert load_spec(None).name == "smartecg-default"


@pytest.mark.parametrize("text, message", [
    ("metric: precision\n", "metric 'precision' is not one of"),
    ("features: [trace, fourier]\n", "unknown feature set(s) fourier"),
    ("engines: {gpt: {}}\n", "unknown engine 'gpt'"),
    ("engines: {tpot: {weight: 0}}\n", "every engine has weight 0"),
    ("engines: {tpot: {populaton_size: 8}}\n", "engines.tpot: unknown option(s) populaton_size"),
    ("deadline: 30m\n", "unknown key(s) deadline"),
    ("split_fractions: [0.5, 0.5, 0.5]\n", "summing to 1"),
    ("- a list\n", "mapping"),
    ("metric: [unclosed\n", "not valid YAML"),
    ("calibration: platt\n", "calibration must be one of auto, temperature, sigmoid, isotonic, none"),
    ("uncertain_below: 1.5\n", "uncertain_below must be a probability between 0 and 1"),
    ("refit_all_pages: sometimes\n", "refit_all_pages must be true or false"),
    ("explain: {pages: 2}\n", "explain takes pages_per_class and lime_samples"),
    ("explain: {lime_samples: 3}\n", "lime_samples >= 10"),
    ("budget: 30\n", "budget: cannot read '30' as a duration"),
])
def test_mistakes_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_spec(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_missing_spec_names_the_shipped_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="default, nightly, quick"):
        load_spec(tmp_path / "nope.yaml")


def test_engines_flag_keeps_options_and_refuses_unknown_engines():
    spec = load_spec("quick").with_engines(["tpot"])
    assert spec.engine("tpot").options["population_size"] == 8
    with pytest.raises(ValueError, match="unknown engine"):
        spec.with_engines(["tpot", "magic"])
