"""raysweep's task scores against the LM Evaluation Harness itself: the same model, tokenizer and task file through
the harness's own Hugging Face wrapper give the same acc and acc_norm on every item."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raysweep.config import MODEL_SIZES, Task
from raysweep.models import build_model
from raysweep.recipes.tokenizer import HFTokenizer
from raysweep.tasks.items import load_items
from raysweep.tasks.scoring import encode_task, item_scores, loglikelihoods

from test_sources import tiny_tokenizer

lm_eval = pytest.importorskip("lm_eval", reason="the harness cross-check needs lm-eval (pip install -e '.[test]')")

SEQ_LEN = 48
WORDS = "the quick brown fox jumps over a lazy dog while hello world says nothing at all today".split()


def task_files(folder):
    """30 items: contexts up to ~3× seq_len (the harness and raysweep both cut them from the left), 2-4 choices, a
    trailing space on some contexts (moved to the continuation by both)."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(30):
        context = " ".join(rng.choice(WORDS, rng.integers(2, 40)))
        choices = [" ".join(rng.choice(WORDS, rng.integers(1, 6))) for _ in range(rng.integers(2, 5))]
        records.append({"context": context + (" " if i % 5 == 0 else ""), "choices": choices,
                        "gold": int(rng.integers(len(choices)))})
    data = folder / "check.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "check.yaml").write_text(
        f"task: raysweep_check\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: \"{{context}}\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{gold}}\"\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return folder / "check.yaml"


@pytest.mark.slow
def test_the_harness_scores_every_item_as_raysweep_does(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_tokenizer(tmp_path / "model")
    tokenizer = HFTokenizer(str(folder))
    torch.manual_seed(0)
    model = build_model(MODEL_SIZES["gpt2-nano"], tokenizer.vocab_size, SEQ_LEN, tokenizer.eos_id).eval()
    model.save_pretrained(folder)
    task_yaml = task_files(tmp_path)

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(model="hf", model_args=f"pretrained={folder},dtype=float32", tasks=["raysweep_check"],
                              task_manager=TaskManager(include_path=str(tmp_path)), batch_size=8, device="cpu",
                              log_samples=True)
    samples = sorted(results["samples"]["raysweep_check"], key=lambda s: s["doc_id"])

    items = load_items(Task(name="check", path=str(task_yaml)))
    encoded = encode_task("check", items, tokenizer.encode_texts, SEQ_LEN, tokenizer.eos_id)
    ours = item_scores(loglikelihoods(model, encoded, torch.device("cpu")), encoded)
    assert len(samples) == len(items) == 30
    assert (encoded.lengths == SEQ_LEN + 1).any() and 0 < ours["acc"].mean() < 1  # some cut, neither all nor none
    assert (ours["acc"] != ours["acc_norm"]).any()  # the length normalisation changes some picks
    assert [s["acc"] for s in samples] == ours["acc"].tolist()
    assert [s["acc_norm"] for s in samples] == ours["acc_norm"].tolist()
    harness_lls = np.array([ll for s in samples for (ll, _), in s["resps"]])
    assert np.allclose(harness_lls, loglikelihoods(model, encoded, torch.device("cpu")), atol=1e-3)
