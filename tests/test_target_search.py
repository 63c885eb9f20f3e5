"""Target search on real Optuna studies and a real Ray Tune: TPE with one budget per recipe, resumable after a kill,
and ASHA within each recipe.

The trainable is cheap but real: it reports a deterministic loss curve, one result per evaluation, and stores its
rows as the sweep's trainable does (``write_partial`` before each report, ``write_trial`` at the end); a callback
stores a trial that ASHA stopped as "stopped" from its partial record. A Tune experiment costs seconds to start
here, so the searcher's own rules (what it tells, its seeding, TPE's convergence) are also driven directly, one
trial at a time, as Tune does with ``max_concurrent_trials=1``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
from optuna.trial import FrozenTrial, TrialState
from ray import tune

from raysweep import store
from raysweep.store import RunDir
from raysweep.config import ASHA, ModelSpec, TargetGrid, TPESearch, WSDSchedule
from raysweep.sweep.search import PerRecipeASHA, RecipeTPESearcher, TrialEntry
from raysweep.trials import Evaluation, TrialResult, TrialSpec, eval_steps

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module

OPTIMUM_LR = 3e-3
DIVERGES_ABOVE_LR = 5e-2
SCALE = {"good": 1.0, "poor": 10.0}
"""Recipe "poor" has losses 10× those of "good" at every configuration."""


def make_spec(recipe: str, lr: float, batch_size: int, weight_decay: float, seed: int,
              role: str = "target") -> TrialSpec:
    return TrialSpec(role=role, recipe=recipe, recipe_key=recipe, validation_key="validation", model="tiny",
                     model_spec=ModelSpec("gpt2", n_layer=1, d_model=8, n_head=1), num_params=1000, lr=lr,
                     batch_size=batch_size, weight_decay=weight_decay, seed=seed, num_steps=40, seq_len=8,
                     vocab_size=257, eos_id=256, schedule=WSDSchedule(), grad_clip=1.0, num_evals=4)


def target_grid(**changes) -> TargetGrid:
    fields = dict(model="tiny", lrs=[1e-4, 1e-1], batch_sizes=[16, 32], weight_decays=[0.0, 0.1], seeds=[0, 1])
    return TargetGrid(**{**fields, **changes})


def searcher_for(root: Path, *, budget: int, seed: int = 0, recipes: tuple[str, ...] = ("good", "poor"),
                 grid: TargetGrid | None = None, proxies: tuple[TrialSpec, ...] = ()) -> RecipeTPESearcher:
    return RecipeTPESearcher(TPESearch(type="tpe", trials_per_recipe=budget, seed=seed), grid or target_grid(),
                             list(recipes), make_spec, RunDir(root), list(proxies), ENTRY)


def evaluations_of(spec: TrialSpec) -> list[Evaluation]:
    """Lowest at lr 3e-3, batch size 32 and no weight decay, falling with training; diverged above lr 5e-2."""
    out = []
    for index, step in enumerate(eval_steps(spec.num_steps, spec.num_evals), start=1):
        distance = math.log10(spec.lr / OPTIMUM_LR) ** 2 + 0.1 * (spec.batch_size != 32) + spec.weight_decay
        loss = SCALE[spec.recipe] * (2 + distance) * (1 + 1 / index) + 1e-3 * spec.seed
        if spec.lr > DIVERGES_ABOVE_LR and index >= 2:
            loss = math.inf
        out.append(Evaluation(step, step * spec.batch_size * spec.seq_len, {"all": loss}, {"all": loss}))
        if not math.isfinite(loss):
            break
    return out


def status_of(evaluations: list[Evaluation]) -> str:
    return "ok" if math.isfinite(evaluations[-1].losses["all"]) else "diverged"


ENTRY = TrialEntry((1.0, 0.0), (1.0, 0.0))


def spec_of(config: dict, planned: dict[str, TrialSpec]) -> TrialSpec:
    """As in the sweep: a planned trial is named by its key, a searcher's trial carries its spec."""
    return config["spec"] if "spec" in config else planned[config["trial"]["key"]]


def train(config: dict, root: str, planned: dict[str, TrialSpec]) -> None:
    """The test trainable; each run leaves a file in ``runs/``, so a trial trained twice shows."""
    spec, run = spec_of(config, planned), RunDir(Path(root))
    run.create()  # as the launch does before any trial
    (run.path / "runs").mkdir(parents=True, exist_ok=True)
    (run.path / "runs" / f"{spec.key}-{uuid.uuid4().hex}").touch()
    evaluations = evaluations_of(spec)
    for index, evaluation in enumerate(evaluations, start=1):
        loss = evaluation.losses["all"]
        if math.isfinite(loss):
            store.write_partial(run, TrialResult(spec, "partial", evaluations[:index]))
        tune.report({"evaluation": index, **({"loss": loss} if math.isfinite(loss) else {})})
    store.write_trial(run, TrialResult(spec, status_of(evaluations), evaluations))


def trained_keys(root: Path) -> list[str]:
    """One key per training run: a key twice is a trial trained twice."""
    return [p.name.rsplit("-", 1)[0] for p in (root / "runs").glob("*")]


class StoreStopped(tune.Callback):
    """Stores a trial that ended with only a partial record (ASHA stopped it) as "stopped", as the sweep does."""

    def __init__(self, run: RunDir, planned: dict[str, TrialSpec]):
        self.run, self.planned = run, planned

    def on_trial_complete(self, iteration, trials, trial, **info):
        spec = spec_of(trial.config, self.planned)
        partial = store.read_partial(self.run, spec)
        if spec.role == "target" and partial and not store.read_trial_losses(self.run, spec.key):
            store.write_trial(self.run, dataclasses.replace(partial, status="stopped"))


def run_tune(root: Path, *, searcher: RecipeTPESearcher | None = None, specs: tuple[TrialSpec, ...] = (),
             asha: ASHA | None = None, concurrency: int = 2) -> None:
    """One Tune experiment, wired as the sweep wires it: the searcher's trials (``specs``: the planned proxies it
    hands out), or else the grid of ``specs``."""
    planned = {s.key: s for s in specs}
    tuner = tune.Tuner(
        tune.with_parameters(train, root=str(root), planned=planned),
        param_space={} if searcher else {"trial": tune.grid_search([ENTRY(s) for s in specs])},
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=-1 if searcher else 1, max_concurrent_trials=concurrency,
            scheduler=PerRecipeASHA(asha) if asha else None,
            reuse_actors=True, trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(storage_path=str(root / "tune"), verbose=0,
                                  callbacks=[StoreStopped(RunDir(root), planned)]),
    )
    tuner.fit()


def drive(searcher: RecipeTPESearcher, root: Path) -> None:
    """Run the searcher's trials one at a time, as Tune does at ``max_concurrent_trials=1``."""
    RunDir(root).create()
    for number in range(10_000):
        suggestion = searcher.suggest(f"trial-{number}")
        assert suggestion is not None, "the searcher waits with no trial running"
        if suggestion == "FINISHED":
            return
        spec = suggestion["spec"]
        evaluations = evaluations_of(spec)
        store.write_trial(RunDir(root), TrialResult(spec, status_of(evaluations), evaluations))
        searcher.on_trial_complete(f"trial-{number}")


def load_study(root: Path, recipe: str) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(RunDir(root).study(recipe)))
    return optuna.load_study(study_name=recipe, storage=optuna.storages.JournalStorage(backend))


def studies(root: Path) -> dict[str, list[FrozenTrial]]:
    """Each recipe's Optuna trials, read back from its journal."""
    return {path.stem: load_study(root, path.stem).trials for path in (root / "studies").glob("*.log")}


def configuration(trial: FrozenTrial) -> tuple[float, int, float]:
    return trial.params["lr"], trial.params["batch_size"], trial.params["weight_decay"]


@pytest.fixture(scope="module", autouse=True)
def quiet_tune():
    """Tune as the sweep runs it: no status table, no logger files per trial."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AIR_NEW_OUTPUT", "0")
        patch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        yield


@pytest.fixture(scope="module")
def relaunched(local_ray, tmp_path_factory):
    """A launch killed after three target trials ended but before it told the studies, and while it was asking
    "poor" for its next configuration; then a relaunch through Tune (budget 4 per recipe, 2 seeds, ASHA, learning
    rates up to a diverging one) with two proxies to run."""
    root = tmp_path_factory.mktemp("relaunch")
    killed = searcher_for(root, budget=4)
    handed = [killed.suggest(f"killed-{i}")["spec"] for i in range(3)]
    RunDir(root).create()
    for i, spec in enumerate(handed):
        store.write_trial(RunDir(root), TrialResult(spec, status_of(evaluations_of(spec)), evaluations_of(spec)))
        killed.on_trial_complete(f"killed-{i}")
    load_study(root, "poor").ask().suggest_float("lr", 1e-4, 1e-1, log=True)  # no batch size nor weight decay yet
    before = {recipe: [(t.state, t.params) for t in trials] for recipe, trials in studies(root).items()}
    proxies = tuple(make_spec(recipe, 1e-4, 16, 0.0, 0, role="proxy") for recipe in SCALE)
    searcher = searcher_for(root, budget=4, proxies=proxies)
    run_tune(root, searcher=searcher, specs=proxies, asha=ASHA(grace_evals=1, reduction_factor=2))
    return {"root": root, "handed": handed, "before": before, "proxies": proxies, "searcher": searcher}


def test_every_recipe_ends_with_its_budget_of_configurations_each_stored_for_every_seed(relaunched):
    root = relaunched["root"]
    for recipe, trials in studies(root).items():
        assert all(t.state.is_finished() for t in trials), recipe
        configurations = [t for t in trials if len(t.params) == 3]
        assert len(configurations) == 4, recipe
        for trial in configurations:
            for seed in (0, 1):
                assert store.read_trial_losses(RunDir(root), make_spec(recipe, *configuration(trial), seed).key)
    assert {p.key for p in relaunched["proxies"]} <= set(trained_keys(root))
    assert relaunched["searcher"].finished


def test_a_relaunch_continues_the_killed_studies_without_training_a_stored_trial_again(relaunched):
    root, handed = relaunched["root"], relaunched["handed"]
    assert [(s.recipe, s.seed) for s in handed] == [("good", 0), ("good", 1), ("poor", 0)]
    before = relaunched["before"]
    assert [state for trials in before.values() for state, _ in trials] == [TrialState.RUNNING] * 3
    trained = trained_keys(root)
    assert len(trained) == len(set(trained)) and not {s.key for s in handed} & set(trained)
    assert len(trained) == 2 + 2 * 4 * 2 - len(handed)
    after = studies(root)
    for recipe in ("good", "poor"):  # the interrupted configuration is continued, not replaced
        assert after[recipe][0].params == before[recipe][0][1] and after[recipe][0].state.is_finished()
    assert after["poor"][1].state == TrialState.FAIL and len(after["poor"]) == 5  # the half-asked one: not counted
    assert after["good"][0].value == pytest.approx(sum(evaluations_of(s)[-1].losses["all"] for s in handed[:2]) / 2)


def test_a_configuration_is_told_what_the_store_holds_for_all_its_seeds(tmp_path):
    RunDir(tmp_path).create()  # as the launch does before any trial
    searcher = searcher_for(tmp_path, budget=4, recipes=("good",))
    final_losses = {"ok": (1.0, 3.0), "diverged": (1.0, math.inf), "stopped": (1.0, None), "raised": (1.0, "nothing")}
    for name, per_seed in final_losses.items():
        for seed, final in enumerate(per_seed):
            spec = searcher.suggest(f"{name}-{seed}")["spec"]
            steps = eval_steps(spec.num_steps, spec.num_evals)
            losses = [5.0] * (len(steps) - 1) + ([] if final is None else [final])
            status = {None: "stopped", math.inf: "diverged"}.get(final, "ok")
            if final != "nothing":
                store.write_trial(RunDir(tmp_path), TrialResult(
                    spec, status, [Evaluation(s, s, {"all": v}, {"all": v}) for s, v in zip(steps, losses)]))
            searcher.on_trial_complete(f"{name}-{seed}", error=final == "nothing")

    assert searcher.suggest("last") == "FINISHED"
    assert [(t.state, t.value) for t in studies(tmp_path)["good"]] == [
        (TrialState.COMPLETE, 2.0),  # the seed-mean final loss
        (TrialState.PRUNED, None), (TrialState.PRUNED, None),  # diverged or stopped: ranked behind every complete
        (TrialState.FAIL, None)]  # a seed stored nothing


def test_a_relaunch_retries_a_configuration_whose_seed_raised_once_for_the_seeds_it_lacks(tmp_path):
    RunDir(tmp_path).create()  # as the launch does before any trial
    searcher = searcher_for(tmp_path, budget=2, recipes=("good",))
    specs = [searcher.suggest(f"first-{seed}")["spec"] for seed in (0, 1)]
    store.write_trial(RunDir(tmp_path), TrialResult(specs[0], "ok", evaluations_of(specs[0])))
    for seed in (0, 1):  # seed 1 raised after its retries: it stored nothing
        searcher.on_trial_complete(f"first-{seed}", error=seed == 1)
    second = [searcher.suggest(f"second-{seed}")["spec"] for seed in (0, 1)]
    for seed, spec in enumerate(second):
        store.write_trial(RunDir(tmp_path), TrialResult(spec, "ok", evaluations_of(spec)))
        searcher.on_trial_complete(f"second-{seed}")
    assert searcher.suggest("done") == "FINISHED" and searcher.finished  # the failure counted in its launch

    relaunched = searcher_for(tmp_path, budget=2, recipes=("good",))
    assert not relaunched.finished
    retry = relaunched.suggest("retry")["spec"]
    assert retry.key == specs[1].key  # the same configuration, only the seed that raised
    assert len(relaunched.target_keys()) == 4  # the retry has the failed configuration's keys
    store.write_trial(RunDir(tmp_path), TrialResult(retry, "ok", evaluations_of(retry)))
    relaunched.on_trial_complete("retry")
    assert relaunched.suggest("after") == "FINISHED" and relaunched.finished
    first, _, retried = studies(tmp_path)["good"]
    assert first.state == TrialState.FAIL and retried.user_attrs == {"retry_of": first.number}
    assert retried.state == TrialState.COMPLETE and retried.params == first.params
    assert searcher_for(tmp_path, budget=2, recipes=("good",)).finished  # retried once: nothing is asked again


def test_a_search_runs_as_successive_experiments_of_at_most_the_given_number_of_trials(tmp_path):
    RunDir(tmp_path).create()  # as the launch does before any trial
    searcher = searcher_for(tmp_path, budget=3, proxies=(make_spec("good", 1e-3, 16, 0.0, 0, role="proxy"),))
    handed_out = []
    while searcher.next_experiment(4):
        experiment = []
        while (suggestion := searcher.suggest(f"trial-{len(handed_out) + len(experiment)}")) not in (None, "FINISHED"):
            experiment.append(suggestion)
        for number, suggestion in enumerate(experiment, start=len(handed_out)):  # the experiment's trials end
            if "spec" in suggestion:
                spec = suggestion["spec"]
                store.write_trial(RunDir(tmp_path), TrialResult(spec, "ok", evaluations_of(spec)))
            searcher.on_trial_complete(f"trial-{number}")
        handed_out.append(len(experiment))
    assert handed_out == [4, 4, 4, 1]  # one proxy, then 2 recipes × 3 configurations × 2 seeds
    assert searcher.finished and all(len(trials) == 3 for trials in studies(tmp_path).values())


def test_the_same_seed_suggests_the_same_configurations(tmp_path):
    def suggested(root: Path, seed: int) -> dict[str, list[tuple]]:
        drive(searcher_for(root, budget=6, seed=seed, grid=target_grid(seeds=[0])), root)
        return {recipe: [configuration(t) for t in trials] for recipe, trials in sorted(studies(root).items())}

    first = suggested(tmp_path / "a", seed=7)
    assert suggested(tmp_path / "b", seed=7) == first
    assert suggested(tmp_path / "c", seed=8) != first
    assert first["good"] != first["poor"]  # each recipe's sampler has a seed of its own


def test_tpe_concentrates_near_the_optimum_after_its_random_start(tmp_path):
    drive(searcher_for(tmp_path, budget=24, grid=target_grid(seeds=[0], lrs=[1e-5, 1e-1])), tmp_path)

    def mean_distance(trials: list[FrozenTrial]) -> float:
        return sum(abs(math.log10(t.params["lr"] / OPTIMUM_LR)) for t in trials) / len(trials)

    recipes = studies(tmp_path).values()  # of 24 configurations, the first 8 are random
    assert mean_distance([t for trials in recipes for t in trials[8:]]) < \
        mean_distance([t for trials in recipes for t in trials[:8]])


def test_asha_stops_poor_configurations_of_a_recipe_as_a_whole_and_never_for_another_recipe_or_seed(local_ray,
                                                                                                    tmp_path):
    # Per recipe, in this order: A (best) seed 0, A seed 1, B seed 0, C (worst) seed 1, B seed 1, C seed 0; recipe
    # "good" first. One ASHA over all trials would stop every "poor" configuration, all 10× worse than "good"'s;
    # one ASHA per recipe would stop A's seed 1, a hair worse than its seed 0; and were B not stopped as a whole,
    # its seed 1 would go on, as it beats C's seed 1, the only other seed-1 result at the first rung.
    lrs = {"A": 3e-3, "B": 3e-4, "C": 3e-5}
    order = [("A", 0), ("A", 1), ("B", 0), ("C", 1), ("B", 1), ("C", 0)]
    specs = tuple(make_spec(recipe, lrs[name], 32, 0.0, seed) for recipe in ("good", "poor") for name, seed in order)
    run_tune(tmp_path, specs=specs, asha=ASHA(grace_evals=1, reduction_factor=2), concurrency=1)

    evaluations = {(s.recipe, s.lr, s.seed): len(store.read_trial_losses(RunDir(tmp_path), s.key)) for s in specs}
    for recipe in ("good", "poor"):
        assert [evaluations[recipe, lrs[name], seed] for name in "ABC" for seed in (0, 1)] == [4, 4, 1, 1, 1, 1]
