from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from raysweep.config import ModelSpec, SyntheticSource, TokenizerConfig, WSDSchedule
from raysweep.models import MODEL_SIZES, build_model, count_parameters
from raysweep.recipes.build import Component, build_shards, read_manifest
from raysweep.recipes.sequences import SequenceReader
from raysweep.recipes.streams import Stream
from raysweep.train import aggregate, bits_per_byte, evaluate, lr_at, predicted_tokens, train
from raysweep.trials import TrialData, TrialSpec, eval_steps

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
    bytes_per_token = {name: read_manifest(path).bytes_per_token for name, path in validation.items()}
    return TrialData(train_dir, validation, {domain: 16 for domain in validation}, bytes_per_token)


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
    # Before the first step a random model is close to uniform over the vocabulary; training moved it down.
    assert set(result.initial_losses) == {"web", "code", "all"}
    assert result.initial_losses["all"] == pytest.approx(math.log(257), abs=0.1)
    assert result.evaluations[-1].losses["all"] < result.initial_losses["all"]


def test_same_spec_gives_the_same_losses_and_another_seed_does_not(trial_data):
    first, again, other = (train(spec(seed=s), trial_data) for s in (0, 0, 1))
    assert first.evaluations[-1].losses == again.evaluations[-1].losses
    assert first.evaluations[-1].losses != other.evaluations[-1].losses


def test_a_diverging_trial_stops_and_is_recorded_as_diverged(trial_data):
    result = train(spec(lr=1e30), trial_data)
    assert result.status == "diverged"
    last = result.evaluations[-1]
    # its first update makes every later loss non-finite: recorded at step 2, though first read at an evaluation
    assert last.step == 2 and set(last.losses) == {"web", "code", "all"} and len(result.evaluations) == 1
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
    assert resumed.initial_losses == whole.initial_losses == first.initial_losses


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


def test_the_alignment_is_the_validation_gradient_dotted_with_the_step_s_own_minibatch_gradient(trial_data):
    one_step = spec(num_steps=1, alignment_every=1)
    (evaluation,) = train(one_step, trial_data).evaluations
    torch.manual_seed(one_step.seed)  # the trial's initialisation, its first minibatch, its validation batch
    model = build_model(one_step.model_spec, 257, SEQ_LEN, 256)
    order = torch.randperm(one_step.num_sequences, generator=torch.Generator().manual_seed(one_step.seed))
    batch = SequenceReader(trial_data.train_dir, one_step.num_sequences).take(order.numpy())
    web, code = (SequenceReader(trial_data.validation_dirs[d], 16).read_all() for d in ("web", "code"))
    validation = np.stack([rows[i] for i in range(4) for rows in (web, code)])  # the domains in turn

    def gradient(ids: np.ndarray) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        ids = torch.from_numpy(ids).long()
        model(input_ids=ids, labels=ids).loss.backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    expected = float(gradient(validation).double() @ gradient(batch).double())
    assert evaluation.alignment == pytest.approx(expected, rel=1e-4)


def test_bf16_autocast_trains_close_to_fp32(trial_data):
    fp32, bf16 = (train(spec(num_steps=30, autocast=a), trial_data).evaluations[-1].losses["all"]
                  for a in ("none", "bfloat16"))
    assert fp32 != bf16 and bf16 == pytest.approx(fp32, rel=0.02)


def test_options_at_their_default_leave_the_trial_key_unchanged():
    assert spec().key == spec(autocast="none", alignment_every=0).key != spec(alignment_every=5).key


def test_warmup_in_steps_is_the_same_for_every_run_length_and_wins_over_the_fraction():
    schedule = WSDSchedule(warmup_frac=0.5, decay_frac=0.3, warmup_steps=20)
    lrs = [lr_at(step, 100, 1.0, schedule) for step in range(100)]
    assert lrs[0] == pytest.approx(1 / 20) and lrs[19] == pytest.approx(1.0)
    assert all(lr == 1.0 for lr in lrs[20:70]) and lrs[99] == pytest.approx(1 / 30)
    longer = [lr_at(step, 1000, 1.0, schedule) for step in range(1000)]
    assert longer[:20] == lrs[:20] and longer[20] == 1.0


def test_a_warmup_longer_than_the_run_is_capped_and_never_overshoots_the_decay():
    schedule = WSDSchedule(warmup_steps=2000, decay_frac=0.34)  # the paper's warmup, in a 100-step run
    lrs = [lr_at(step, 100, 1.0, schedule) for step in range(100)]
    assert lrs[:66] == pytest.approx([(step + 1) / 100 for step in range(66)])  # warmup = min(2000, 100)
    assert lrs[66:] == pytest.approx([min((step + 1) / 100, (100 - step) / 34) for step in range(66, 100)])
    assert max(lrs) < 1.0 and all(abs(a - b) < 0.04 for a, b in zip(lrs, lrs[1:]))  # continuous, no jump


def test_existing_trial_keys_do_not_change():
    # Keys computed with the code before warmup_steps and aggregate existed: stored trials must keep them.
    model_spec = ModelSpec(family="gpt2", n_layer=2, d_model=32, n_head=2)
    pinned = TrialSpec(role="proxy", recipe="web", recipe_key="r0", validation_key="v0", model="tiny",
                       model_spec=model_spec, num_params=1000, lr=1e-5, batch_size=8, weight_decay=0.1, seed=0,
                       num_steps=100, seq_len=32, vocab_size=257, eos_id=256, schedule=WSDSchedule(), grad_clip=1.0,
                       num_evals=4)
    assert pinned.key == "a95c81fb1a9530db"
    options = replace(pinned, schedule=WSDSchedule(warmup_frac=0.02, decay_frac=0.2), autocast="bfloat16",
                      alignment_every=5)
    assert options.key == "2c82a6a3d7ab8b23"
    assert replace(pinned, aggregate="mean").key == pinned.key
    changed = {replace(pinned, aggregate="token_weighted").key,
               replace(pinned, schedule=WSDSchedule(warmup_steps=2000)).key,
               replace(pinned, schedule=WSDSchedule(warmup_steps=200)).key}
    assert len(changed) == 3 and pinned.key not in changed


def test_aggregate_is_the_plain_mean_or_the_weighted_mean():
    losses = {"web": 2.0, "code": 1.0}
    assert aggregate(losses) == 1.5
    assert aggregate(losses, {"web": 300, "code": 100}) == pytest.approx((3 * 2.0 + 1.0) / 4)
    tokens, bytes_per_token = {"web": 300, "code": 100}, {"web": 4.0, "code": 2.0}
    bpb = bits_per_byte(losses, bytes_per_token, tokens)
    total_bits = (300 * 2.0 + 100 * 1.0) / math.log(2)
    assert bpb["all"] == pytest.approx(total_bits / (300 * 4.0 + 100 * 2.0))  # total bits / total bytes
    assert bits_per_byte(losses, bytes_per_token)["all"] == pytest.approx(
        (2.0 / 4.0 + 1.0 / 2.0) / (2 * math.log(2)))  # the unweighted mean, as before


def test_token_weighted_all_is_the_loss_over_every_validation_token_pooled():
    torch.manual_seed(0)
    model = build_model(MODEL_SIZES["gpt2-nano"], 257, SEQ_LEN, 256)
    validation = {"web": torch.randint(0, 257, (70, SEQ_LEN)), "code": torch.randint(0, 128, (6, SEQ_LEN))}
    device = torch.device("cpu")
    weights = predicted_tokens(validation)
    assert weights == {"web": 70 * (SEQ_LEN - 1), "code": 6 * (SEQ_LEN - 1)}
    weighted = evaluate(model, validation, device, weights)
    pooled = evaluate(model, {"pooled": torch.cat(list(validation.values()))}, device)["pooled"]
    assert weighted["all"] == pytest.approx(pooled, rel=1e-5)
    assert weighted["all"] == pytest.approx((70 * weighted["web"] + 6 * weighted["code"]) / 76, rel=1e-12)
    plain = evaluate(model, validation, device)
    assert plain["all"] == pytest.approx((plain["web"] + plain["code"]) / 2)


def test_a_token_weighted_trial_weights_by_the_sequences_each_domain_scores(trial_data):
    sized = TrialData(trial_data.train_dir, trial_data.validation_dirs, {"web": 16, "code": 4},
                      trial_data.validation_bytes_per_token)
    weighted = train(spec(aggregate="token_weighted"), sized)
    assert weighted.status == "ok"
    for evaluation in weighted.evaluations:
        losses, bpb, bpt = evaluation.losses, evaluation.bits_per_byte, trial_data.validation_bytes_per_token
        assert losses["all"] == pytest.approx((16 * losses["web"] + 4 * losses["code"]) / 20)
        assert bpb["all"] == pytest.approx((16 * losses["web"] + 4 * losses["code"]) / math.log(2)
                                           / (16 * bpt["web"] + 4 * bpt["code"]))
    plain = train(spec(), sized)  # same data, the mean: only "all" differs
    assert plain.evaluations[-1].losses["web"] == weighted.evaluations[-1].losses["web"]
    assert plain.evaluations[-1].losses["all"] == pytest.approx(
        (plain.evaluations[-1].losses["web"] + plain.evaluations[-1].losses["code"]) / 2)
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        train(spec(aggregate="median"), sized)
