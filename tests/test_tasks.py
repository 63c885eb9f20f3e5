"""Downstream tasks: items read as the harness reads them, scored as it scores them, ranked by the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from raysweep.config import MODEL_SIZES, Task
from raysweep.models import build_model
from raysweep.recipes import synthetic
from raysweep.recipes.tokenizer import ByteTokenizer
from raysweep.report import summarize
from raysweep.report.render import tables
from raysweep.report.verdict import verdict
from raysweep.tasks.items import TaskError, TaskItem, continuation_items, load_items, subsample
from raysweep.tasks.scoring import encode_task, item_scores, loglikelihoods, score_tasks

from result_tables import rows, table

HELLASWAG_ROW = {"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the "
                 "window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "then",
                 "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift.",
                             ", the man puts on a christmas coat, knitted with netting.",
                             ", the man continues removing the snow on his car. [title] Done"], "label": "3"}


def write_lines(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_a_hellaswag_row_becomes_the_harness_query_and_cleaned_endings(tmp_path):
    task = Task(name="hs", preset="hellaswag", path=write_lines(tmp_path / "hs.jsonl", [HELLASWAG_ROW]))
    (item,) = load_items(task)
    query = ("Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman "
             "wearing winter clothes smiles. Then")
    assert item.requests[0] == (query, " , the man adds wax to the windshield and cuts it.")
    assert item.choices[3] == ", the man continues removing the snow on his car.. Done" and item.gold == 3


def test_winogrande_scores_one_continuation_after_each_filled_in_context(tmp_path):
    row = {"sentence": "The trophy did not fit in the suitcase because the _ was too big.", "option1": "trophy",
           "option2": "suitcase", "answer": "1"}
    task = Task(name="wg", preset="winogrande", path=write_lines(tmp_path / "wg.jsonl", [row]))
    (item,) = load_items(task)
    assert item.requests == (("The trophy did not fit in the suitcase because the trophy", " was too big."),
                             ("The trophy did not fit in the suitcase because the suitcase", " was too big."))
    assert item.choices == tuple(context for context, _ in item.requests) and item.gold == 0


def test_arc_openbookqa_and_commonsense_qa_follow_the_harness_prompts(tmp_path):
    choices = {"text": ["red", "blue", "green", "black", "white"], "label": ["A", "B", "C", "D", "E"]}
    arc = Task(name="arc", preset="arc_easy", path=write_lines(tmp_path / "arc.jsonl", [
        {"question": "Sky colour?", "choices": {**choices, "text": choices["text"][:4], "label": list("ABCD")},
         "answerKey": "B"}]))
    obqa = Task(name="obqa", preset="openbookqa", path=write_lines(tmp_path / "obqa.jsonl", [
        {"question_stem": "The sky is", "choices": {**choices, "text": choices["text"][:4], "label": list("ABCD")},
         "answerKey": " C"}]))
    csqa = Task(name="csqa", preset="commonsense_qa", path=write_lines(tmp_path / "csqa.jsonl", [
        {"question": " Sky colour? ", "choices": choices, "answerKey": "E"}]))
    (a,), (o,), (c,) = load_items(arc), load_items(obqa), load_items(csqa)
    assert a.requests[1] == ("Question: Sky colour?\nAnswer:", " blue") and a.gold == 1
    assert o.requests[2] == ("The sky is", " green") and o.gold == 2
    assert c.requests[0][0] == "Question: Sky colour?\nA. red\nB. blue\nC. green\nD. black\nE. white\nAnswer:"
    assert c.choices == tuple("ABCDE") and c.gold == 4


def test_a_harness_task_yaml_over_local_json_renders_its_templates(tmp_path):
    data = write_lines(tmp_path / "qa.jsonl", [{"q": "2 + 2 =", "options": ["3", "4"], "answer": 1},
                                               {"q": "1 + 1 =", "options": ["2", "5"], "answer": 0}])
    (tmp_path / "qa.yaml").write_text(
        "task: qa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: qa.jsonl\n"
        "output_type: multiple_choice\ntest_split: test\n"
        'doc_to_text: "Q: {{q}}\\nA:"\ndoc_to_choice: "{{options}}"\ndoc_to_target: answer\n')
    items = load_items(Task(name="qa", path=str(tmp_path / "qa.yaml")))
    assert [i.requests[1] for i in items] == [("Q: 2 + 2 =\nA:", " 4"), ("Q: 1 + 1 =\nA:", " 5")]
    assert [i.gold for i in items] == [1, 0] and data


def test_a_missing_task_file_names_the_file_and_the_command_that_fetches_it(tmp_path):
    with pytest.raises(TaskError) as error:
        load_items(Task(name="hellaswag", preset="hellaswag", path=str(tmp_path / "hellaswag.jsonl")))
    message = str(error.value)
    assert str(tmp_path / "hellaswag.jsonl") in message
    assert "datasets.load_dataset('Rowan/hellaswag', split='validation').to_json(" in message


def test_harness_python_and_malformed_items_are_refused_by_line(tmp_path):
    (tmp_path / "py.yaml").write_text("dataset_path: json\ndataset_kwargs: {data_files: x.jsonl}\n"
                                      "output_type: multiple_choice\ndoc_to_text: !function utils.text\n"
                                      "doc_to_choice: c\ndoc_to_target: g\n")
    with pytest.raises(TaskError, match="doc_to_text is Python"):
        load_items(Task(name="py", path=str(tmp_path / "py.yaml")))
    bad = write_lines(tmp_path / "bad.jsonl", [{"context": "a", "choices": ["b", "c"], "gold": 0},
                                               {"context": "a", "choices": ["b"], "gold": 3}])
    with pytest.raises(TaskError, match=r"bad.jsonl:2: needs at least 2 string choices"):
        load_items(Task(name="bad", path=bad))


def test_a_large_task_is_subsampled_the_same_way_every_time(tmp_path):
    path = write_lines(tmp_path / "many.jsonl", [{"context": f"item {i}", "choices": ["a", "b"], "gold": i % 2}
                                                 for i in range(1000)])
    task = Task(name="many", path=path, max_items=50)
    first, again = subsample(load_items(task), 50), subsample(load_items(task), 50)
    assert len(load_items(task)) == 1000 and len(first) == 50 and first == again
    numbers = [int(item.requests[0][0].split()[1]) for item in first]
    assert numbers == sorted(numbers) and numbers != list(range(50))


def test_the_built_in_task_asks_for_the_true_continuation_among_other_documents():
    documents = synthetic.generate_documents("web", 100_000, 1)
    task = Task(name="continuation", preset="continuation", max_items=30, context_chars=40, continuation_chars=16)
    items = continuation_items(iter(documents), task)
    assert items == continuation_items(iter(documents), task) and len(items) == 30
    for item, document in zip(items, (d for d in documents if len(d) > 80)):
        context, truth = item.requests[item.gold][0], item.choices[item.gold]
        assert len(context) >= 40 and len(truth) >= 16 and len(item.choices) == 4
        assert " ".join(document.split()).startswith(f"{context} {truth}")
    assert 0.1 < np.mean([item.gold for item in items]) / 3 < 0.9  # the gold position varies


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(MODEL_SIZES["opt-nano"], 257, 16, 256).eval()


def test_each_choice_scores_its_continuation_tokens_after_a_left_truncated_context(tiny_model):
    item = TaskItem((("a long context of many bytes ", "end"), ("short", " x")), ("end", "x"), 0)
    encoded = encode_task("t", [item], ByteTokenizer().encode_texts, 16, 256)
    # the trailing space moves to the continuation; 17 = seq_len + 1 tokens kept, from the right
    assert bytes(encoded.tokens[0, :17].tolist()).decode() == "of many bytes end"
    assert encoded.continuation_lengths.tolist() == [4, 2] and encoded.lengths.tolist() == [17, 7]
    lls = loglikelihoods(tiny_model, encoded, torch.device("cpu"))
    for row, ll in enumerate(lls):
        ids = torch.tensor(encoded.tokens[row, :encoded.lengths[row]]).long()[None]
        logprobs = torch.log_softmax(tiny_model(input_ids=ids[:, :-1]).logits.float(), -1)[0]
        length, scored = ids.shape[1], encoded.continuation_lengths[row]
        expected = sum(logprobs[t - 1, ids[0, t]].item() for t in range(length - scored, length))
        assert ll == pytest.approx(expected, abs=1e-4)


def test_acc_norm_divides_by_characters_and_acc_bytes_by_utf8_bytes():
    item = TaskItem((("q", " ab"), ("q", " éééé")), ("ab", "éééé"), 1)  # 2 chars/2 bytes vs 4 chars/8 bytes
    encoded = encode_task("t", [item], ByteTokenizer().encode_texts, 32, 256)
    scores = item_scores(np.array([-2.0, -6.0]), encoded)
    # acc: -2 > -6 picks choice 0; per char: -1 vs -1.5 picks 0; per byte: -1 vs -0.75 picks the gold 1
    assert (scores["acc"][0], scores["acc_norm"][0], scores["acc_bytes"][0]) == (0.0, 0.0, 1.0)
    assert scores["gold_logprob_per_byte"][0] == pytest.approx(-6.0 / 8)


def test_scores_are_means_over_items_with_chance_and_item_count(tiny_model):
    items = [TaskItem((("x", " a"), ("x", " b"), ("x", " c")), ("a", "b", "c"), 0),
             TaskItem((("y", " a"), ("y", " b")), ("a", "b"), 1)]
    encoded = encode_task("t", items, ByteTokenizer().encode_texts, 16, 256)
    scores = score_tasks(tiny_model, {"t": encoded}, torch.device("cpu"))["t"]
    assert scores["chance"] == pytest.approx((1 / 3 + 1 / 2) / 2) and scores["items"] == 2
    assert scores["acc"] in (0.0, 0.5, 1.0) and tiny_model.training  # left in train mode, as the loop expects


def task_rows(role, recipe, lr, seed, accuracy, loss, *, task="qa", chance=0.25, items=400, items_in_task=None,
              **kwargs):
    """A trial's loss rows and its task rows (accuracy as acc_norm, and acc 0.01 below)."""
    trial = rows(role, recipe, lr, seed, loss, steps=(2,), **kwargs)
    extra = {"acc": accuracy - 0.01, "acc_norm": accuracy, "acc_bytes": accuracy,
             "gold_logprob_per_byte": -1 / max(accuracy, 1e-3), "chance": chance, "items": items,
             "items_in_task": items_in_task or items}
    return [*({**r, "metric": "loss", "value": r["loss"]} for r in trial),
            *({**trial[0], "domain": task, "loss": None, "bits_per_byte": None, "metric": m, "value": v}
              for m, v in extra.items())]


def task_table(target_acc, proxy_acc, losses=None, **kwargs):
    losses = losses or {r: 3.0 - a for r, a in target_acc.items()}
    groups = [task_rows("target", r, 1e-3, s, a + 0.002 * s, losses[r], **kwargs)
              for r, a in target_acc.items() for s in (0, 1, 2)]
    groups += [task_rows("proxy", r, 1e-4, s, a + 0.002 * s, losses[r] + 1, **kwargs)
               for r, a in proxy_acc.items() for s in (0, 1, 2)]
    return table(*groups, tasks=True)


def test_ranked_by_acc_norm_higher_accuracy_ranks_first_and_regret_is_in_points():
    frame = task_table({"a": 0.60, "b": 0.50, "c": 0.40}, {"a": 0.45, "b": 0.50, "c": 0.30})
    report = summarize(frame, domain="qa", metric="acc_norm", n_boot=200, n_boot_figures=50)
    assert [t.recipe for t in report.main.targets] == ["a", "b", "c"]
    assert report.terms().shown(report.main.targets[0].loss).point == pytest.approx(60.2)
    (proxy,) = report.main.proxies
    assert proxy.rank == {"b": 1, "a": 2, "c": 3} and proxy.mean_score["b"] == pytest.approx(50.2)
    assert proxy.agreement.regret[1].point == pytest.approx(10.0)  # picks b: 10 points below a
    text = verdict(report)
    assert "ship a: highest tuned target acc_norm 60.20 [60.00, 60.40] accuracy points" in text
    assert report.versus_loss[0] == ("tuned targets", pytest.approx(1.0))  # here loss and accuracy agree
    assert not report.chance.near_chance


def test_all_is_the_mean_over_tasks_of_each_evaluation():
    one = task_table({"a": 0.6, "b": 0.4}, {"a": 0.6, "b": 0.4}, task="qa")
    two = task_table({"a": 0.3, "b": 0.5}, {"a": 0.3, "b": 0.5}, task="qb")
    both = table(*[[r for r in t.to_pylist() if r["metric"] != "loss"] for t in (two,)], *[one.to_pylist()],
                 tasks=True)
    report = summarize(both, metric="acc_norm", n_boot=100, n_boot_figures=50)
    assert report.main.domain == "all" and {d.domain for d in report.domains} == {"all", "qa", "qb"}
    shown = {t.recipe: report.terms().shown(t.loss).point for t in report.main.targets}
    assert shown == pytest.approx({"a": 45.2, "b": 45.2})


def test_accuracy_near_chance_is_flagged_as_uninformative_not_ranked_silently():
    frame = task_table({"a": 0.26, "b": 0.25, "c": 0.24}, {"a": 0.25, "b": 0.26, "c": 0.24}, items=200)
    report = summarize(frame, domain="qa", metric="acc", n_boot=100, n_boot_figures=50)
    assert report.chance.near_chance and report.chance.margin == pytest.approx(200 * math.sqrt(0.25 * 0.75 / 200))
    assert any("uninformative" in line for line in report.missing)
    assert verdict(report).startswith("Verdict: cannot tell on qa: the best acc")


def test_the_loss_report_shows_each_tasks_accuracy_ranking_beside_it():
    frame = task_table({"a": 0.60, "b": 0.50, "c": 0.40}, {"a": 0.60, "b": 0.50, "c": 0.40},
                       losses={"a": 2.0, "b": 2.1, "c": 1.9}, items_in_task=10_042)
    report = summarize(frame, n_boot=100, n_boot_figures=50)
    assert [t.recipe for t in report.main.targets] == ["c", "a", "b"]  # by loss
    (ranking,) = report.tasks
    assert ranking.task == "qa" and ranking.best == "a" and not ranking.chance.near_chance
    assert ranking.versus_loss[0] == ("tuned targets", pytest.approx(-0.5))
    downstream = next(t for t in tables(report) if t.title.startswith("Downstream tasks"))
    assert downstream.rows[0][:4] == ["qa", "a", "60.2 [60.0, 60.4]", "25.0 (400 of 10,042 items)"]
    view = report.to_pandas("tasks").iloc[0]
    assert (view["task"], view["best_recipe"], view["near_chance"]) == ("qa", "a", False)
    assert view["best_score"] == pytest.approx(60.2) and view["chance"] == 25.0


def test_a_task_metric_without_task_rows_says_how_to_add_tasks():
    from raysweep.errors import ReportError

    with pytest.raises(ReportError, match="add tasks: to the sweep file"):
        summarize(table(*[rows("target", "a", 1e-3, 0, 1.0)]), metric="acc_norm")


def test_a_preset_without_a_path_reads_its_dataset_from_the_local_hugging_face_cache(offline_hf):
    repo = offline_hf / "datasets--Rowan--hellaswag"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c" * 40)
    data = repo / "snapshots" / ("c" * 40) / "data"
    data.mkdir(parents=True)
    write_lines(data / "validation-00000-of-00001.jsonl", [HELLASWAG_ROW, {**HELLASWAG_ROW, "label": "0"}])
    items = load_items(Task(name="hellaswag", preset="hellaswag"))
    assert [i.gold for i in items] == [3, 0]
    assert items[0].choices[0] == ", the man adds wax to the windshield and cuts it."


def test_a_preset_missing_from_the_cache_says_how_to_fetch_it_either_way(offline_hf):
    with pytest.raises(TaskError) as error:
        load_items(Task(name="arc", preset="arc_easy"))
    message = str(error.value)
    assert "hf download allenai/ai2_arc --repo-type dataset" in message
    assert "datasets.load_dataset('allenai/ai2_arc', 'ARC-Easy', split='test').to_json('arc.jsonl')" in message


def test_the_command_line_offers_every_metric_the_report_ranks_by():
    from raysweep.cli import METRICS
    from raysweep.report.records import Metric

    assert METRICS == tuple(m.value for m in Metric)


def test_ranked_by_a_task_the_proxy_lr_is_the_one_the_loss_chose():
    accuracy = {"a": 0.60, "b": 0.50, "c": 0.40}
    backwards = {"a": 0.40, "b": 0.50, "c": 0.60}  # at lr 1e-5 accuracy ranks backwards; the loss does not
    groups = [task_rows("target", r, 1e-3, s, a + 0.002 * s, 3.0 - a) for r, a in accuracy.items() for s in (0, 1, 2)]
    groups += [task_rows("proxy", r, lr, s, (backwards if lr == 1e-5 else accuracy)[r] + 0.002 * s, 4.0 - a)
               for lr in (1e-5, 1e-4, 4e-3) for r, a in accuracy.items() for s in (0, 1, 2)]
    frame = table(*groups, tasks=True)
    by_loss = summarize(frame, standard_lr=4e-3, n_boot=200, n_boot_figures=50)
    by_accuracy = summarize(frame, domain="qa", metric="acc_norm", standard_lr=4e-3, n_boot=200, n_boot_figures=50)
    assert [s.lr for s in by_loss.main.chosen()] == [s.lr for s in by_accuracy.main.chosen()] == [1e-5]
    assert by_accuracy.main.lr_choices == by_loss.main.lr_choices  # the checks shown are the loss's
    assert by_accuracy.main.chosen()[0].agreement.spearman.point == pytest.approx(-1.0)  # and it is scored honestly


def test_a_proxy_at_chance_is_called_noise_not_disagreement():
    frame = task_table({"a": 0.60, "b": 0.50, "c": 0.40}, {"a": 0.25, "b": 0.27, "c": 0.24}, items=200)
    report = summarize(frame, domain="qa", metric="acc_norm", n_boot=100, n_boot_figures=50)
    assert not report.chance.near_chance and report.proxies_at_chance == [("proxy-m", 1e-4)]
    assert any("its ranking by acc_norm is noise" in line for line in report.missing)
    assert "cannot be judged by acc_norm, at chance on qa" in verdict(report)
    loss_report = summarize(frame, n_boot=100, n_boot_figures=50)
    downstream = next(t for t in tables(loss_report) if t.title.startswith("Downstream tasks"))
    assert "(at chance)" in downstream.rows[0][4]
