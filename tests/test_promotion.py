"""Champion / challenger promotion in a real SQLite MLflow registry: racing searches, a champion
that no longer loads, and scores that are only compared on the same holdout.

The models are one-nearest-neighbour memorisers of the holdout pages' ``signals`` features, so
how good each one is on a holdout is known by construction (and checked, never assumed).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from automl.registry import CHALLENGER, CHAMPION, Holdout

pytestmark = pytest.mark.slow

NAME = "smartecg"
WAIT = 300  # seconds a test waits for a promotion on a busy machine before it calls it stuck


@pytest.fixture(scope="module")
def pages(tiny_synthetic):
    """The holdout pages (3 per class), their labels, content hashes and feature vectors."""
    from features.dataset import scan
    from features.handcrafted import PageFeatures

    frame = scan(tiny_synthetic, progress=False).frame
    paths = [str(p) for p in frame["path"]]
    features = PageFeatures(sets=("signals",), progress=False)
    return dict(paths=paths, labels=frame["label"].to_numpy(dtype=object), sha256=list(frame["sha256"]),
                X=features.transform(paths), classes=sorted(set(frame["label"])))


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def memoriser(pages, labels, description):
    """A model that answers each holdout page with the label it learned for it."""
    from sklearn.neighbors import KNeighborsClassifier

    from automl.model import ECGModel
    from features.handcrafted import PageFeatures

    classifier = KNeighborsClassifier(n_neighbors=1).fit(pages["X"], labels)
    return ECGModel(PageFeatures(sets=("signals",)), classifier, pages["classes"], engine="test",
                    description=description)


def shifted(pages, labels):
    """Every label replaced by the next class: what a model that learned these gets all wrong."""
    classes = pages["classes"]
    return np.array([classes[(classes.index(label) + 1) % len(classes)] for label in labels], dtype=object)


def score_of(model, pages, holdout: Holdout) -> float:
    from automl.evaluate import evaluate

    return evaluate(holdout.labels, model.proba_from_features(pages["X"]), model.classes).score("macro_f1")


def promote_model(store, model, pages, holdout: Holdout):
    """What a search does once it has chosen ``model``: its own run, then the registry."""
    from automl.controller import ScoredCandidate
    from automl.engines.base import Candidate
    from automl.evaluate import evaluate
    from automl.experiment import ExperimentSpec
    from automl.registry import promote
    from automl.tracking import SearchTracker

    tracker = SearchTracker(store, "promotion-test")
    tracker.start_search(model.description, {}, {})
    evaluation = evaluate(holdout.labels, model.proba_from_features(pages["X"]), model.classes)
    best = ScoredCandidate(Candidate("test", model, 0.0, {}, None, model.description), evaluation)
    try:
        return promote(tracker, ExperimentSpec(features=("signals",)), best, holdout=holdout, data_hash="test")
    finally:
        tracker.finish_search()


def aliases(store) -> dict[str, str]:
    from automl.tracking import use_store

    client = use_store(store)
    return {alias: str(client.get_model_version_by_alias(NAME, alias).version) for alias in (CHAMPION, CHALLENGER)}


def another_holdouts(pages) -> Holdout:
    """The same pages, tagged as scored on some other holdout: a later search must re-score it."""
    return Holdout(pages["paths"], pages["labels"], identity="another-holdout")


class GatedHoldout(Holdout):
    """A holdout whose scoring of a registered version holds until the test lets it go: the
    minutes a real champion's re-score takes, during which another search may promote."""

    def __init__(self, holdout: Holdout) -> None:
        super().__init__(holdout.paths, holdout.labels, holdout.identity)
        object.__setattr__(self, "scored", threading.Event())
        object.__setattr__(self, "release", threading.Event())

    def score(self, name, version, metric):
        result = super().score(name, version, metric)
        self.scored.set()
        assert self.release.wait(WAIT), "the test never released this re-score"
        return result


def re_scored(gate: GatedHoldout, thread: threading.Thread) -> bool:
    """Whether the promotion in ``thread`` re-scored a champion (False once it ends without)."""
    for _ in range(WAIT):
        if gate.scored.wait(1):
            return True
        if not thread.is_alive():
            return gate.scored.is_set()
    return False


class CountingHoldout(Holdout):
    """A holdout that counts the registered versions it actually scores."""

    def __init__(self, holdout: Holdout) -> None:
        super().__init__(holdout.paths, holdout.labels, holdout.identity)
        object.__setattr__(self, "rescored", [])

    def score(self, name, version, metric):
        self.rescored.append(version)
        return super().score(name, version, metric)


@pytest.mark.parametrize("shared_holdout", [True, False], ids=["same-holdout", "other-holdouts"])
@pytest.mark.parametrize("first_to_finish", ["better", "worse"])
def test_two_searches_promoting_at_once_leave_the_better_as_champion(pages, store, first_to_finish, shared_holdout):
    """Both compare against the same old champion; one moves the alias while the other is still
    re-scoring. Whichever finishes first, the better ends champion and the other challenger.

    The second to finish compares against the first: by its stored score when both searches
    scored on the same holdout, else by re-scoring it (same pages, but another holdout identity).
    """
    holdout = Holdout.of(pages["paths"], pages["labels"])
    labels = pages["labels"]
    old = memoriser(pages, shifted(pages, labels), "old: every page wrong")
    worse_labels = labels.copy()
    worse_labels[::4] = shifted(pages, worse_labels[::4])  # a page in four learned wrong
    worse = memoriser(pages, worse_labels, "worse: a few pages learned wrong")
    better = memoriser(pages, labels, "better: every page right")
    assert score_of(old, pages, holdout) < score_of(worse, pages, holdout) < score_of(better, pages, holdout)
    first = promote_model(store, old, pages, another_holdouts(pages))
    assert first.alias == CHAMPION

    worse_holdout = holdout if shared_holdout else Holdout(holdout.paths, holdout.labels, "the-worse-search's")
    gates = {"better": GatedHoldout(holdout), "worse": GatedHoldout(worse_holdout)}
    models = {"better": better, "worse": worse}
    results, errors = {}, {}

    def run(which):
        try:
            results[which] = promote_model(store, models[which], pages, gates[which])
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            errors[which] = exc

    threads = {which: threading.Thread(target=run, args=(which,)) for which in gates}
    for thread in threads.values():
        thread.start()
    try:
        for which in gates:  # both have re-scored the old champion and hold
            assert re_scored(gates[which], threads[which]), f"the {which} search ended without re-scoring the champion"
        order = [first_to_finish, "worse" if first_to_finish == "better" else "better"]
        for which in order:
            gates[which].release.set()
            threads[which].join(WAIT)
            assert which not in errors, errors[which]
    finally:
        for which, gate in gates.items():
            gate.release.set()
            threads[which].join(WAIT)

    assert results[order[0]].previous_version == first.version
    assert aliases(store) == {CHAMPION: results["better"].version, CHALLENGER: results["worse"].version}
    assert results["better"].alias == CHAMPION
    last = results[order[1]]
    # The second to finish saw the champion move and compared against the first, not against the
    # champion it started with.
    assert last.previous_version == results[order[0]].version
    assert f"moved the champion from v{first.version} to v{last.previous_version}" in last.reason
    how = "its score when registered, on this same holdout" if shared_holdout else "re-scored on this holdout"
    assert how in last.reason


def test_a_champion_that_cannot_be_rescored_stays_and_the_new_version_is_challenger(pages, store):
    from pathlib import Path
    from urllib.parse import urlparse

    from automl.tracking import use_store

    holdout = Holdout.of(pages["paths"], pages["labels"])
    old = promote_model(store, memoriser(pages, shifted(pages, pages["labels"]), "old"), pages,
                        another_holdouts(pages))
    client = use_store(store)
    run = client.get_run(client.get_model_version(NAME, old.version).run_id)
    damaged = list(Path(urlparse(run.info.artifact_uri).path, "model").rglob("*.pkl"))
    for pickled in damaged:
        pickled.write_bytes(b"damaged on disk")  # the old champion no longer loads
    assert damaged

    new = promote_model(store, memoriser(pages, pages["labels"], "new and better"), pages, holdout)

    assert new.alias == CHALLENGER and new.previous_score is None
    assert f"champion v{old.version} could not be re-scored" in new.reason and "stays champion" in new.reason
    assert aliases(store) == {CHAMPION: old.version, CHALLENGER: new.version}
    registered = client.get_model_version(NAME, new.version)
    assert registered.status == "READY" and registered.tags["promotion"] == new.reason


def test_scores_are_compared_only_on_the_same_holdout(pages, store):
    """A stored score is reused on the holdout it was made on; a relabelled holdout (a review
    corrected the labels, say) is another holdout, on which the champion is re-scored."""
    from automl.tracking import use_store

    labels = pages["labels"]
    holdout = Holdout.of(pages["paths"], labels)
    # The identity is the pages' content and labels: the dataset's hashes give it, whatever the order.
    assert holdout.identity == Holdout.of(pages["paths"][::-1], labels[::-1], pages["sha256"][::-1]).identity
    relabelled = Holdout.of(pages["paths"], shifted(pages, labels))
    assert relabelled.identity != holdout.identity

    first = promote_model(store, memoriser(pages, labels, "right on the first holdout"), pages, holdout)
    tags = use_store(store).get_model_version(NAME, first.version).tags
    assert tags["scored_on_holdout"] == holdout.identity and float(tags["score_macro_f1"]) == first.score == 1.0

    same = CountingHoldout(holdout)
    twin = promote_model(store, memoriser(pages, labels, "as good on the first holdout"), pages, same)
    assert same.rescored == [] and "its score when registered, on this same holdout" in twin.reason
    assert twin.alias == CHALLENGER  # 1.0 does not beat 1.0

    other = CountingHoldout(relabelled)
    corrected = promote_model(store, memoriser(pages, shifted(pages, labels), "right on the relabelled"), pages, other)
    assert other.rescored == [first.version] and "re-scored on this holdout" in corrected.reason
    # Its 1.0 on the relabelled holdout equals the champion's stored 1.0 on the first, which would
    # have kept the champion; re-scored on the relabelled pages, the champion is far worse.
    assert corrected.score == 1.0 and corrected.previous_score < 0.5
    assert corrected.alias == CHAMPION
    assert aliases(store) == {CHAMPION: corrected.version, CHALLENGER: first.version}


class RivalHoldout(Holdout):
    """A holdout on which, each time a champion is scored, another search moves the alias to one
    of ``rivals`` (registered versions of the same old model), as a busy registry would."""

    def __init__(self, holdout: Holdout, client, rivals: list[str]) -> None:
        super().__init__(holdout.paths, holdout.labels, holdout.identity)
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "rivals", rivals)

    def score(self, name, version, metric):
        result = super().score(name, version, metric)
        if self.rivals:
            self.client.set_registered_model_alias(name, CHAMPION, self.rivals.pop(0))
        return result


def test_a_champion_that_keeps_moving_is_compared_a_bounded_number_of_times(pages, store):
    from automl.registry import MAX_COMPARISONS
    from automl.tracking import use_store

    client = use_store(store)
    old = promote_model(store, memoriser(pages, shifted(pages, pages["labels"]), "old"), pages,
                        another_holdouts(pages))
    registered = client.get_model_version(NAME, old.version)
    rivals = [str(client.create_model_version(NAME, registered.source, registered.run_id, tags=registered.tags).version)
              for _ in range(MAX_COMPARISONS)]
    last_rival = rivals[-1]
    holdout = RivalHoldout(Holdout.of(pages["paths"], pages["labels"]), client, rivals)

    new = promote_model(store, memoriser(pages, pages["labels"], "better than every rival"), pages, holdout)

    assert rivals == []  # it compared against every champion it saw, then stopped
    assert new.alias == CHALLENGER and f"the champion changed {MAX_COMPARISONS} times" in new.reason
    assert aliases(store) == {CHAMPION: last_rival, CHALLENGER: new.version}
