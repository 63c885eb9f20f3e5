from __future__ import annotations

import math

import pytest

from raysweep.config import SyntheticSource, TokenizerConfig, WSDSchedule
from raysweep.models import MODEL_SIZES, count_parameters
from raysweep.recipes.build import Component, build_shards, read_manifest
from raysweep.recipes.streams import Stream
from raysweep.train import TrialData, TrialSpec, eval_steps, lr_at, train

WEB = SyntheticSource(type="synthetic", domain="web")
CODE = SyntheticSource(type="synthetic", domain="code")
SEQ_LEN = 32


def test_wsd_schedule_warms_up_holds_the_peak_and_decays_to_zero():
    schedule = WSDSchedule(warmup_frac=0.1, decay_frac=0.3)
    lrs = [lr_at(step, 100, 1.0, schedule) for step in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(lr == 1.0 for lr in lrs[10:70])
    assert lrs[70] == pytest.approx(1.0) and lrs[99] == pytest.approx(1 / 30)
    assert all(a >= b for a, b in zip(lrs[70:], lrs[71:]))


def test_evaluations_are_evenly_spaced_and_end_at_the_last_step():
    assert eval_steps(100, 4) == [25, 50, 75, 100]
    assert eval_steps(3, 10) == [1, 2, 3]


def test_every_family_builds_at_its_named_size():
    assert count_parameters(MODEL_SIZES["pythia-70m"], 50304, 2048, 0) == pytest.approx(70.4e6, rel=0.01)
    assert count_parameters(MODEL_SIZES["gpt2-small"], 50257, 1024, 0) == pytest.approx(124.4e6, rel=0.01)
    assert count_parameters(MODEL_SIZES["opt-125m"], 50272, 2048, 0) == pytest.approx(125.2e6, rel=0.01)


@pytest.fixture(scope="module")
def trial_data(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    mix = [Component("web", Stream(WEB), 1.0), Component("code", Stream(CODE), 1.0)]
    train_dir = build_shards("mix", mix, TokenizerConfig(), SEQ_LEN, 256, root).path
    validation = {name: build_shards(f"val-{name}", [Component(name, Stream(SyntheticSource("synthetic", name, seed=1)), 1.0)],
                                     TokenizerConfig(), SEQ_LEN, 16, root).path for name in ("web", "code")}
    bytes_per_token = {name: read_manifest(path)["bytes_per_token"] for name, path in validation.items()}
    return TrialData(train_dir, validation, 16, bytes_per_token)


def spec(model: str = "gpt2-nano", lr: float = 3e-3, seed: int = 0, num_steps: int = 12, **options) -> TrialSpec:
    model_spec = MODEL_SIZES[model]
    return TrialSpec(role="proxy", recipe="mix", recipe_key="k", validation_key="v", model=model,
                     model_spec=model_spec, num_params=count_parameters(model_spec, 257, SEQ_LEN, 256), lr=lr,
                     batch_size=8, weight_decay=0.0, seed=seed, num_steps=num_steps, seq_len=SEQ_LEN, vocab_size=257,
                     eos_id=256, schedule=WSDSchedule(), grad_clip=1.0, num_evals=3, **options)


@pytest.mark.parametrize("model", ["gpt2-nano", "pythia-nano", "opt-nano"])
def test_trial_learns_and_reports_every_domain_at_each_checkpoint(trial_data, model):
    reported = []
    result = train(spec(model, num_steps=30), trial_data, report=reported.append)
    assert result.status == "ok" and reported == result.evaluations
    assert [e.step for e in result.evaluations] == [10, 20, 30]
    assert [e.tokens for e in result.evaluations] == [10 * 8 * SEQ_LEN, 20 * 8 * SEQ_LEN, 30 * 8 * SEQ_LEN]
    for evaluation in result.evaluations:
        assert set(evaluation.losses) == {"web", "code", "all"}
        assert evaluation.losses["all"] == pytest.approx((evaluation.losses["web"] + evaluation.losses["code"]) / 2)
    assert result.evaluations[-1].losses["all"] < math.log(257)  # better than uniform over the vocabulary


def test_same_spec_gives_the_same_losses_and_another_seed_does_not(trial_data):
    first, again, other = (train(spec(seed=s), trial_data) for s in (0, 0, 1))
    assert first.evaluations[-1].losses == again.evaluations[-1].losses
    assert first.evaluations[-1].losses != other.evaluations[-1].losses


def test_a_diverging_trial_stops_and_is_recorded_as_diverged(trial_data):
    result = train(spec(lr=1e30), trial_data)
    assert result.status == "diverged"
    last = result.evaluations[-1]
    assert last.step < 12 and set(last.losses) == {"web", "code", "all"}
    assert all(math.isinf(v) and v > 0 for v in last.losses.values())


def test_a_run_stopped_after_an_evaluation_resumes_from_its_checkpoint_exactly(trial_data, tmp_path):
    whole = train(spec(alignment_every=2), trial_data)
    checkpoint = tmp_path / "trial.pt"
    first = train(spec(alignment_every=2), trial_data, checkpoint=checkpoint, stop_after_evals=1)
    assert first.status == "partial" and [e.step for e in first.evaluations] == [4] and checkpoint.is_file()
    again = train(spec(alignment_every=2), trial_data, checkpoint=checkpoint, stop_after_evals=1)
    assert again.status == "partial" and again.evaluations == first.evaluations  # nothing retrained
    resumed = train(spec(alignment_every=2), trial_data, checkpoint=checkpoint)
    assert resumed.status == "ok" and resumed.evaluations == whole.evaluations


def test_a_checkpoint_of_another_trial_is_refused(trial_data, tmp_path):
    checkpoint = tmp_path / "trial.pt"
    train(spec(seed=0), trial_data, checkpoint=checkpoint, stop_after_evals=1)
    with pytest.raises(ValueError, match="holds trial"):
        train(spec(seed=1), trial_data, checkpoint=checkpoint)


def test_gradient_alignment_accumulates_and_is_off_by_default(trial_data):
    measured = train(spec(alignment_every=1), trial_data).evaluations
    assert all(math.isnan(e.alignment) for e in train(spec(), trial_data).evaluations)
    # early in training every minibatch gradient points down the validation loss: the sum grows
    assert 0 < measured[0].alignment < measured[1].alignment < measured[2].alignment


def test_bf16_autocast_trains_close_to_fp32(trial_data):
    fp32, bf16 = (train(spec(num_steps=30, autocast=a), trial_data).evaluations[-1].losses["all"]
                  for a in ("none", "bfloat16"))
    assert fp32 != bf16 and bf16 == pytest.approx(fp32, rel=0.02)


def test_options_at_their_default_leave_the_trial_key_unchanged():
    assert spec().key == spec(autocast="none", alignment_every=0).key != spec(alignment_every=5).key
