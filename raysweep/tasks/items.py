"""A multiple-choice task's items, read from local files (never downloaded) in the shapes the LM Evaluation Harness
reads, or made from the validation text.

An item is what the harness scores for one document: one (context, continuation) request per choice, the strings
``acc_norm`` and ``acc_bytes`` divide by, and the gold index. Three kinds of file:

- JSON lines in raysweep's own shape, one item per line: ``{"context": ..., "choices": [...], "gold": 0}``; the
  continuation of choice c is " " + c (the harness's default target delimiter).
- A paper task's preset (``hellaswag``, ``winogrande``, ``openbookqa``, ``arc_easy``, ``commonsense_qa``): JSON lines
  of the dataset's own rows, turned into items exactly as the harness's task of that name does (its
  ``process_docs``, ``doc_to_text``, ``doc_to_choice`` and ``doc_to_target``).
- The YAML of a harness task reading local JSON (``dataset_path: json``, ``dataset_kwargs.data_files``), with
  Jinja or field-name ``doc_to_*`` entries, as the harness renders them.

``continuation`` (no file) cuts held-out documents into a context and its true continuation, the other choices
being continuations of other documents::

    items = load_items(task, validation_documents)      # list[TaskItem]: every item of the task
    scored = subsample(items, task.max_items)            # at most task.max_items, the same every time
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from raysweep.config import Task
from raysweep.errors import DataError

TARGET_DELIMITER = " "
"""The harness's default separator between a context and each choice."""


class TaskError(DataError):
    """A task's file is missing or cannot be read as its kind says; the message names the file and the fix."""


@dataclass(frozen=True)
class TaskItem:
    requests: tuple[tuple[str, str], ...]
    """(context, continuation) per choice: the continuation's log-likelihood after the context is the choice's
    score."""
    choices: tuple[str, ...]
    """What ``acc_norm`` (characters) and ``acc_bytes`` (UTF-8 bytes) divide each choice's score by, as the harness
    does: the choices, without the delimiter (for winogrande, the two contexts)."""
    gold: int


def _hellaswag_text(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def _hellaswag(doc: dict) -> TaskItem:
    query = _hellaswag_text(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize())
    return _choices_item(query, [_hellaswag_text(ending) for ending in doc["endings"]], int(doc["label"]))


def _winogrande(doc: dict) -> TaskItem:
    """The harness's partial scoring: the sentence up to the blank filled by each option is the context, the rest
    of the sentence the one continuation."""
    cut = doc["sentence"].index("_")
    contexts = [doc["sentence"][:cut] + option for option in (doc["option1"], doc["option2"])]
    continuation = TARGET_DELIMITER + doc["sentence"][cut + 1:].strip()
    return TaskItem(tuple((context, continuation) for context in contexts), tuple(contexts),
                    {"1": 0, "2": 1}[doc["answer"]])


def _openbookqa(doc: dict) -> TaskItem:
    return _choices_item(doc["question_stem"], doc["choices"]["text"],
                         doc["choices"]["label"].index(doc["answerKey"].lstrip()))


def _arc_easy(doc: dict) -> TaskItem:
    return _choices_item(f"Question: {doc['question']}\nAnswer:", doc["choices"]["text"],
                         doc["choices"]["label"].index(doc["answerKey"]))


def _commonsense_qa(doc: dict) -> TaskItem:
    texts = doc["choices"]["text"]
    listed = "".join(f"\n{letter}. {text}" for letter, text in zip("ABCDE", texts))
    return _choices_item(f"Question: {doc['question'].strip()}{listed}\nAnswer:", list("ABCDE"),
                         "ABCDE".index(doc["answerKey"]))


@dataclass(frozen=True)
class Preset:
    item: Callable[[dict], TaskItem]
    dataset: tuple[str, str | None, str]
    """(Hugging Face dataset, configuration, split) the harness evaluates: what the fetch command exports."""


PRESETS = {
    "hellaswag": Preset(_hellaswag, ("Rowan/hellaswag", None, "validation")),
    "winogrande": Preset(_winogrande, ("allenai/winogrande", "winogrande_xl", "validation")),
    "openbookqa": Preset(_openbookqa, ("allenai/openbookqa", "main", "test")),
    "arc_easy": Preset(_arc_easy, ("allenai/ai2_arc", "ARC-Easy", "test")),
    "commonsense_qa": Preset(_commonsense_qa, ("tau/commonsense_qa", None, "validation")),
}


def fetch_command(task: Task, path: str) -> str:
    """What writes a preset's file at `path` on a machine with network."""
    name, config, split = PRESETS[task.preset].dataset
    args = f"{name!r}" + (f", {config!r}" if config else "")
    return f"python -c \"import datasets; datasets.load_dataset({args}, split={split!r}).to_json({path!r})\""


def _choices_item(context: str, choices: list[str], gold: int) -> TaskItem:
    return TaskItem(tuple((context, TARGET_DELIMITER + choice) for choice in choices), tuple(choices), gold)


def load_items(task: Task, documents: Callable[[], Iterator[str]] | None = None) -> list[TaskItem]:
    """Every item of the task, in file order (``continuation``: ``task.max_items`` of them); ``subsample`` takes the
    ones scored.

    ``documents`` yields held-out documents for ``continuation``. A missing or malformed file raises ``TaskError``
    naming the file (and, for a preset, the command that fetches it).
    """
    if task.preset == "continuation":
        return continuation_items(documents(), task)
    if task.path is None:
        return _cached_items(task)
    path = Path(task.path)
    if not path.is_file():
        fetch = f"; fetch it on a machine with network: {fetch_command(task, task.path)}" if task.preset else ""
        raise TaskError(f"task {task.name}: {path} does not exist{fetch}")
    if path.suffix in (".yaml", ".yml"):
        items = _harness_items(task, path)
    else:
        make = PRESETS[task.preset].item if task.preset else _own_item
        items = [_item(task, path, number, make, doc) for number, doc in _json_lines(task, path)]
    if not items:
        raise TaskError(f"task {task.name}: {path} holds no items")
    return items


def _cached_items(task: Task) -> list[TaskItem]:
    """A preset's items from its dataset in the local Hugging Face caches (``hf download`` or an earlier
    ``datasets.load_dataset`` on this machine), never from the network."""
    from raysweep.recipes.sources import SourceError, read_cached_hf_rows

    name, config, split = PRESETS[task.preset].dataset
    try:
        rows = read_cached_hf_rows(name, config, split)
    except SourceError as err:
        raise TaskError(f"task {task.name}: {err} Or export it as JSON lines and give its path: "
                        f"{fetch_command(task, f'{task.name}.jsonl')}") from None
    where = f"{name} ({split}) in the Hugging Face cache"
    return [_item(task, where, number, PRESETS[task.preset].item, row) for number, row in enumerate(rows, start=1)]


def subsample(items: list, max_items: int) -> list:
    """At most `max_items`, chosen by a fixed seed and kept in their order: the same items for every trial."""
    if len(items) <= max_items:
        return items
    chosen = np.sort(np.random.default_rng(0).choice(len(items), max_items, replace=False))
    return [items[i] for i in chosen]


def _json_lines(task: Task, path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    raise TaskError(f"task {task.name}: {path}:{number}: not JSON ({err.msg})") from None


def _own_item(doc: dict) -> TaskItem:
    return _choices_item(doc["context"], list(doc["choices"]), doc["gold"])


def _item(task: Task, where: str | Path, number: int, make: Callable[[dict], TaskItem], doc: dict) -> TaskItem:
    """One row as an item, or a ``TaskError`` naming the line and what it lacks."""
    shape = f"the {task.preset} dataset's rows" if task.preset else '{"context": str, "choices": [str], "gold": int}'
    try:
        item = make(doc)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise TaskError(f"task {task.name}: {where}:{number}: not an item of {shape} ({type(err).__name__}: "
                        f"{err})") from None
    _check(task, f"{where}:{number}", item)
    return item


def _check(task: Task, where: str, item: TaskItem) -> None:
    if (len(item.choices) < 2 or not all(isinstance(c, str) for c in item.choices)
            or not isinstance(item.gold, int) or not 0 <= item.gold < len(item.choices)):
        raise TaskError(f"task {task.name}: {where}: needs at least 2 string choices and a gold index among them "
                        f"(got {len(item.choices)} choices, gold {item.gold!r})")


# ---------------------------------------------------------------------------------------------
# Harness task YAML


class _HarnessSafeLoader(yaml.SafeLoader):
    """Reads ``!function`` tags (Python the harness imports) as markers, to refuse them by name."""


_HarnessSafeLoader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))


@dataclass(frozen=True)
class _Function:
    name: str


def _harness_items(task: Task, path: Path) -> list[TaskItem]:
    """Items of a harness task YAML whose documents are local JSON, rendered as ``ConfigurableTask`` renders them."""
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_HarnessSafeLoader)
    except yaml.YAMLError as err:
        raise TaskError(f"task {task.name}: {path}: not YAML ({err})") from None
    problems = _harness_problems(config)
    if problems:
        raise TaskError(f"task {task.name}: {path}: {'; '.join(problems)}")
    split = config.get("test_split") or config.get("validation_split") or "train"
    files = config["dataset_kwargs"]["data_files"]
    data_file = Path(files[split] if isinstance(files, dict) else files)
    data_file = data_file if data_file.is_absolute() else path.parent / data_file
    if not data_file.is_file():
        raise TaskError(f"task {task.name}: {path}: its {split} data file {data_file} does not exist")
    import jinja2  # with torch: only a harness task needs it

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    delimiter = config.get("target_delimiter", TARGET_DELIMITER)

    def make(doc: dict) -> TaskItem:
        def render(entry):
            if isinstance(entry, str) and entry in doc:
                return doc[entry]
            return environment.from_string(entry).render(**doc) if isinstance(entry, str) else entry

        text = _literal(render(config["doc_to_text"]), digits=True)
        choice_entry = config["doc_to_choice"]
        choices = ([str(render(c)) for c in choice_entry] if isinstance(choice_entry, list)
                   else list(choice_entry.values()) if isinstance(choice_entry, dict)
                   else _literal(render(choice_entry), digits=False, always=True))
        target = _literal(render(config["doc_to_target"]), digits=True)
        if isinstance(text, int):  # several contexts, one continuation (the harness's "multiple input")
            return TaskItem(tuple((c, delimiter + str(target)) for c in choices), tuple(choices), text)
        gold = choices.index(target) if isinstance(target, str) else target
        return TaskItem(tuple((text, delimiter + c) for c in choices), tuple(choices), gold)

    try:
        rows = [json.loads(line) for line in data_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise TaskError(f"task {task.name}: {data_file}: not JSON lines ({err.msg})") from None
    try:
        return [_item(task, data_file, number, make, doc) for number, doc in enumerate(rows, start=1)]
    except jinja2.TemplateError as err:
        raise TaskError(f"task {task.name}: {path}: a doc_to_* template fails ({err})") from None


def _harness_problems(config) -> list[str]:
    if not isinstance(config, dict):
        return ["not a task (a mapping of keys)"]
    problems = []
    if config.get("output_type") != "multiple_choice":
        problems.append("output_type must be multiple_choice (raysweep scores multiple-choice tasks)")
    if config.get("dataset_path") != "json" or not isinstance(config.get("dataset_kwargs"), dict) \
            or "data_files" not in config["dataset_kwargs"]:
        problems.append("give dataset_path: json and dataset_kwargs.data_files (local JSON lines; nothing is "
                        "downloaded)")
    for key in ("doc_to_text", "doc_to_choice", "doc_to_target"):
        if key not in config:
            problems.append(f"{key} is missing")
        elif isinstance(config[key], _Function):
            problems.append(f"{key} is Python (!function {config[key].name}): use a preset or write the items "
                            "as JSON lines (context, choices, gold)")
    for key in ("include", "process_docs"):
        if key in config:
            problems.append(f"{key} is not supported: write the processed items as JSON lines instead")
    return problems


def _literal(value, digits: bool, always: bool = False):
    """A rendered template as the harness reads it: digits as an index, a list literal as a list."""
    if not isinstance(value, str):
        return value
    if (digits and value.isdigit()) or always or (len(value) >= 2 and value[0] == "[" and value[-1] == "]"):
        return ast.literal_eval(value)
    return value


# ---------------------------------------------------------------------------------------------
# The built-in task


def continuation_items(documents: Iterator[str], task: Task) -> list[TaskItem]:
    """Which of ``num_choices`` continuations follows this context? The true one is the next
    ``continuation_chars`` of the same document; the others follow the contexts of other documents (from any
    validation domain). Chance is 1 / ``num_choices``; everything is fixed by the documents and a fixed seed."""
    cuts = []
    for document in documents:
        cut = _cut(document.split(), task.context_chars, task.continuation_chars)
        if cut:
            cuts.append(cut)
        if len(cuts) == task.max_items:
            break
    if len(cuts) < task.num_choices:
        raise TaskError(f"task {task.name}: the validation text has {len(cuts)} documents longer than "
                        f"context_chars + continuation_chars ({task.context_chars} + {task.continuation_chars}); "
                        f"{task.num_choices} are needed at least: shorten them")
    rng = np.random.default_rng(0)
    items = []
    for i, (context, truth) in enumerate(cuts):
        others = rng.choice(np.delete(np.arange(len(cuts)), i), task.num_choices - 1, replace=False)
        choices = [cuts[j][1] for j in others]
        gold = int(rng.integers(task.num_choices))
        choices.insert(gold, truth)
        items.append(_choices_item(context, choices, gold))
    return items


def _cut(words: list[str], context_chars: int, continuation_chars: int) -> tuple[str, str] | None:
    """(the first words reaching `context_chars`, the next words reaching `continuation_chars`), or None if the
    document is too short."""
    ends = np.cumsum([len(word) + 1 for word in words]) - 1  # ends[k]: characters of the first k + 1 words
    last = int(np.searchsorted(ends, context_chars))
    if last >= len(words):
        return None
    stop = int(np.searchsorted(ends, ends[last] + 1 + continuation_chars))
    if stop >= len(words):
        return None
    return " ".join(words[:last + 1]), " ".join(words[last + 1:stop + 1])


def interleaved(domains: list[Iterator[str]]) -> Iterator[str]:
    """One document from each domain in turn, so that a task draws on every validation domain alike."""
    while True:
        for documents in domains:
            document = next(documents, None)
            if document is None:
                return
            yield document
