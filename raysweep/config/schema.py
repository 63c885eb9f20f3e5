"""The configuration schema: a cluster profile and a sweep file as frozen dataclasses.

Two files describe a launch. The *cluster profile* (``cluster/local.yaml``) says where to run and with
what resources; the *sweep file* (``search_spaces/demo.yaml``) says which recipes to compare and which
proxy and target runs to train. Both become frozen dataclasses. Loading never stops at the first
mistake: every problem is collected with its YAML key path, so a user fixes a file in one pass::

    search_spaces/bad.yaml: recipes[2].mix[0].weight: must be > 0 (got -1)
    search_spaces/bad.yaml: proxy.lrs: must not be empty

The loader (``raysweep.config.loading``) is generic over the dataclasses below (their type hints are the schema);
value rules (``raysweep.config.rules``: ``positive``, ``non_empty``...) sit in field metadata, and rules that span
fields live in ``raysweep.config.checks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from raysweep.config.rules import (added, at_least_two, confidence, fraction, non_empty, non_negative, port, positive,
                                   ray_address, rules, safe_name, sequence_length)

# ---------------------------------------------------------------------------------------------
# Cluster profile


@dataclass(frozen=True)
class RayConfig:
    address: str | None = rules(ray_address, default=None)
    """None starts an embedded Ray on this machine; "auto" joins the cluster this node belongs to."""
    num_cpus: int | None = rules(positive, default=None)
    """Embedded Ray only: CPUs Ray may schedule on (set it explicitly on small machines)."""
    num_gpus: int | None = rules(non_negative, default=None)
    dashboard_host: str = "127.0.0.1"
    """Anyone who reaches the dashboard can run code on the cluster (CVE-2023-48022): keep it on loopback."""
    dashboard_port: int = rules(port, default=8265)
    expose_dashboard: bool = False
    """Set to true to accept a ``dashboard_host`` other than loopback, knowing that whoever reaches it can run
    code on this machine; the launch then says so again."""


@dataclass(frozen=True)
class TrialResources:
    cpu: float = rules(positive, default=1.0)
    gpu: float = rules(non_negative, default=0.0)
    """Fractions pack several trials on one GPU (0.25 = four proxies per GPU)."""


@dataclass(frozen=True)
class Resources:
    proxy: TrialResources = TrialResources()
    target: TrialResources = TrialResources()


@dataclass(frozen=True)
class MLflowTracking:
    tracking_uri: str = "runs/mlruns"
    """An MLflow server's URL, or a folder for a file store (relative: from the working directory)."""
    experiment: str | None = None
    """MLflow experiment; default: the sweep's name."""


@dataclass(frozen=True)
class WandbTracking:
    project: str
    entity: str | None = None
    mode: Literal["online", "offline"] = "online"
    """offline: runs are written under ``<storage>/<sweep>/wandb/`` for ``wandb sync`` later."""


@dataclass(frozen=True)
class Tracking:
    """Ray Tune's own logger callbacks, opt-in: every trial a tracked run (grouped by proxy setting, or by recipe
    for targets), and the report's summary a run of its own."""

    mlflow: MLflowTracking | None = None
    wandb: WandbTracking | None = None
    tensorboard: bool = False
    """TensorBoard event files in each trial's folder under ``<storage>/<sweep>/tune/``."""


@dataclass(frozen=True)
class ClusterConfig:
    sweep: str
    """Sweep file run by default (relative paths are taken from the working directory)."""
    storage: str = "runs"
    """Where shards and results live; must be shared by every node of a multi-node cluster."""
    ray: RayConfig = RayConfig()
    resources: Resources = Resources()
    trial_retries: int = rules(non_negative, default=1)
    """A trial that raises (or loses its worker) is retried this often, then recorded as failed with its cause;
    the sweep goes on, and a relaunch tries it again."""
    max_concurrent_trials: int | None = rules(positive, default=None)
    """Leave a CPU free for Ray Data on small machines; None lets Ray fill the cluster."""
    wait_for_resources_s: float = rules(positive, default=1800.0)
    """How long trials may wait with none running (other jobs hold the resources, nodes were lost, an autoscaler
    cannot add what a trial asks) before the launch stops, says what they ask and what the cluster has free, and
    keeps what is stored."""
    compile: bool = False
    """``torch.compile`` each trial's model: worth it on GPUs for long runs; compiling costs minutes on a CPU."""
    launcher: str | None = None
    """Ray cluster-launcher file that ``raysweep launch --up`` starts (``ray up``) before submitting the sweep
    as a Ray Job (relative paths are taken from the working directory)."""
    tracking: Tracking = Tracking()


# ---------------------------------------------------------------------------------------------
# Sweep file


@dataclass(frozen=True)
class SyntheticSource:
    """The built-in offline corpus (see ``raysweep.recipes.synthetic``)."""

    type: Literal["synthetic"]
    domain: str
    seed: int = 0
    low_quality_frac: float = rules(fraction, default=0.0)
    duplicate_frac: float = rules(fraction, default=0.0)
    repetition_frac: float = rules(fraction, default=0.0)


@dataclass(frozen=True)
class FileSource:
    """Local files: JSON lines (``.jsonl``, ``.jsonl.gz``), Parquet, or plain text (one document per file)."""

    type: Literal["jsonl", "parquet", "text"]
    path: str
    """A glob, relative to the sweep file's folder: ``data/c4/*.jsonl.gz``."""
    text_field: str = "text"
    """The JSON field or Parquet column that holds the document text."""


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face dataset, read from the local cache (or `path`); raysweep never downloads it."""

    type: Literal["hf"]
    name: str
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    path: str | None = None
    """A local copy (``save_to_disk`` folder or data files), relative to the sweep file's folder."""


@dataclass(frozen=True)
class RepetitionFilter:
    """Gopher "MassiveWeb" repetition rules (``raysweep.recipes.filters``): drop a document over any threshold."""

    preset: str = "default"
    """default (Gopher's thresholds, the paper's Table 2) or one of the paper's dedup recipes: dedup-L, dedup-LS
    (stricter line/paragraph tests, Tables 3-4), dedup-G (top 2-4-gram tests, Table 5), dedup-GS (duplicate
    5-10-gram tests, Table 6)."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Overrides of single measurements, e.g. ``{dup_line_frac: 0.1}``."""


@dataclass(frozen=True)
class PerplexityFilter:
    """Perplexity buckets (RedPajama-V2): keep the documents whose n-gram perplexity falls in `keep`."""

    reference: str
    """Source whose text trains the Kneser-Ney model (clean text: the "head" is what resembles it)."""
    keep: list[Literal["head", "middle", "tail"]] = rules(non_empty)
    """Terciles by perplexity: head = lowest third, tail = highest third."""
    order: int = rules(positive, default=3)
    reference_bytes: int = rules(positive, default=4_000_000)
    """Reference text the model is trained on."""
    calibration_documents: int = rules(positive, default=2000)
    """Leading documents of the filtered source scored to place the tercile cutoffs."""
    kenlm_model: str | None = None
    """A KenLM ``.arpa``/``.bin`` model to use instead of training one (needs ``pip install kenlm``)."""


@dataclass(frozen=True)
class FilteredSource:
    """Another source after curation operators, applied in this order: dedup, repetition, perplexity."""

    type: Literal["filtered"]
    source: str
    dedup: Literal["exact", "minhash"] | None = None
    """exact: identical texts; minhash: near-duplicates (MinHash LSH, Jaccard >= 0.8 over word 5-grams)."""
    repetition: RepetitionFilter | None = None
    perplexity: PerplexityFilter | None = None


Source = SyntheticSource | FileSource | HFSource | FilteredSource


@dataclass(frozen=True)
class MixComponent:
    source: str
    weight: float = rules(positive, default=1.0)
    """Share of the recipe's *tokens*; weights are normalised to sum to one."""


@dataclass(frozen=True)
class Recipe:
    name: str = rules(safe_name)
    mix: list[MixComponent] = field(default_factory=list)
    base: str | None = None
    """Start from another recipe's mix, then apply `drop` and `weights`: ablations in one line."""
    drop: list[str] = field(default_factory=list)
    """Sources removed from the base mix (domain ablation: every source but these)."""
    weights: dict[str, float] = field(default_factory=dict)
    """Token shares to set, e.g. ``{web: 0.7}``; the other sources keep their proportions in the rest."""
    epochs: int = rules(positive, default=1)
    """Passes allowed over finite sources; a recipe short of tokens is an error unless this says so."""


@dataclass(frozen=True)
class TokenizerConfig:
    type: Literal["byte", "hf"] = "byte"
    """byte: built-in, 257 ids; hf: ``transformers.AutoTokenizer`` from a local folder or the hub cache."""
    name: str | None = None
    """hf only: hub name (e.g. gpt2) already in the local cache, or a local folder; never downloaded."""


@dataclass(frozen=True)
class Validation:
    domains: dict[str, Source] = rules(non_empty)
    """Held-out sets, one per validation domain; each is scored separately and together as "all"."""
    num_tokens: int = rules(positive, default=32768)
    """Tokens per validation domain (with `token_shares`: of the domain with the largest share)."""
    aggregate: Literal["mean", "token_weighted"] = "mean"
    """How "all" combines the domains. mean: the plain mean of their losses. token_weighted: the loss of every
    evaluated token pooled, Σ_d n_d·loss_d / Σ_d n_d over the n_d tokens scored in domain d (and bits per byte
    as total bits / total bytes): with domains sized by `token_shares`, the loss on the whole validation split,
    which is what the paper ranks by (the Pile's aggregate validation loss)."""
    token_shares: dict[str, float] = field(default_factory=dict)
    """Relative sizes of the domains' validation sets, e.g. the Pile's own domain shares: the largest share gets
    `num_tokens` and the others proportionally fewer (whole sequences, at least one). Empty: `num_tokens` each.
    Only with ``aggregate: token_weighted``, the one rule the sizes change."""

    def sequences_per_domain(self, seq_len: int) -> dict[str, int]:
        """Validation sequences of each domain: its tokens (`num_tokens`, scaled by its share) in whole sequences."""
        largest = max(self.token_shares.values(), default=None)
        out = {}
        for domain in self.domains:
            share = self.token_shares.get(domain, largest)
            num_tokens = self.num_tokens if share == largest else self.num_tokens * share / largest
            out[domain] = max(1, math.ceil(num_tokens / seq_len))
        return out


@dataclass(frozen=True)
class Task:
    """A multiple-choice task every trial scores at each evaluation, as the LM Evaluation Harness scores it: the
    log-likelihood of each choice after the context (``raysweep.tasks``)."""

    name: str = rules(safe_name)
    """Its rows' ``domain`` in the results table, and ``report --domain``."""
    preset: Literal["hellaswag", "winogrande", "openbookqa", "arc_easy", "commonsense_qa", "continuation"] | None = None
    """One of the paper's five downstream tasks (App. D.1.3), read in its dataset's own layout with the harness's
    prompt, or "continuation", made from the validation text (no file). None: `path` holds the items themselves."""
    path: str | None = None
    """A local file, never downloaded: JSON lines (with a preset: the dataset's rows; without: ``context``,
    ``choices``, ``gold`` per line), or the YAML of a harness task reading local JSON (``dataset_path: json``).
    A preset without a path reads its dataset from the local Hugging Face caches."""
    max_items: int = rules(positive, default=500)
    """Items scored: a fixed subsample when the task has more, so that evaluation stays a small share of a trial."""
    num_choices: int = rules(at_least_two, default=4)
    """continuation: the true continuation and this many less one from other documents."""
    context_chars: int = rules(positive, default=96)
    """continuation: characters of a document before the cut (whole words)."""
    continuation_chars: int = rules(positive, default=32)
    """continuation: characters after it (whole words): the answer."""


@dataclass(frozen=True)
class ModelSpec:
    family: Literal["gpt2", "pythia", "opt"]
    n_layer: int = rules(positive)
    d_model: int = rules(positive)
    n_head: int = rules(positive)
    d_ff: int | None = rules(positive, default=None)
    """Feed-forward width; None means 4 × d_model as in all three families."""


@dataclass(frozen=True)
class EarlyStop:
    """Stop a proxy setting (model × lr) once its ranking of the recipes has settled (paper D.2.5): the proxies
    train in rounds of one evaluation interval, and after each round the Spearman correlation between the
    ranking at this checkpoint and at the previous one is bootstrapped over seeds; when its lower bound at
    ``confidence`` reaches ``min_spearman``, the setting's runs stop there and the steps left are saved."""

    min_spearman: float = rules(fraction, default=0.95)
    confidence: float = rules(confidence, default=0.9)


@dataclass(frozen=True)
class ProxyGrid:
    models: list[str] = rules(non_empty)
    lrs: list[float] = rules(non_empty, positive)
    seeds: list[int] = rules(non_empty)
    batch_size: int = rules(positive, default=16)
    weight_decay: float = 0.0
    tokens_per_param: float = rules(positive, default=20.0)
    standard_lr: float | None = rules(positive, default=None)
    """The learning rate a fixed-configuration proxy would use: the report's baseline (default: max lrs)."""
    autocast: Literal["none", "bfloat16"] = "none"
    """Proxies train in full fp32 by default: at tiny learning rates every bit of the update matters."""
    alignment_every: int = rules(non_negative, default=0)
    """Also record the gradient alignment with the validation loss every this many steps (0: off), a proxy
    metric the report can rank by (``raysweep report --metric alignment``); it costs one extra forward and
    backward pass per measurement."""
    early_stop: EarlyStop | None = None
    """Stop each proxy setting once its ranking has settled (None: every proxy trains to the end)."""


@dataclass(frozen=True)
class GridSearch:
    """Every configuration of the target grid, for every recipe (the paper's protocol)."""

    type: Literal["grid"] = "grid"


@dataclass(frozen=True)
class TPESearch:
    """Optuna TPE over the target grid's ranges: one seeded study per recipe, ``trials_per_recipe``
    configurations each (every one trained with every target seed), so each recipe gets the same budget. The
    learning rate is searched log-uniformly between the smallest and largest of ``lrs``; batch size and weight
    decay take the listed values. Studies are kept in the run directory, so a relaunch continues them."""

    type: Literal["tpe"]
    trials_per_recipe: int = rules(positive)
    seed: int = 0


@dataclass(frozen=True)
class ASHA:
    """Asynchronous successive halving of the target configurations, within each recipe and seed: at each rung
    (after ``grace_evals`` evaluations, then ``reduction_factor`` times as many) a configuration whose loss is not
    in the best 1/``reduction_factor`` of its recipe's with the same seed so far stops (all its seeds), stored
    with status "stopped"."""

    grace_evals: int = rules(positive, default=1)
    reduction_factor: int = rules(at_least_two, default=3)


@dataclass(frozen=True)
class TargetGrid:
    model: str
    lrs: list[float] = rules(non_empty, positive)
    batch_sizes: list[int] = rules(non_empty, positive)
    weight_decays: list[float] = rules(non_empty)
    seeds: list[int] = rules(non_empty)
    tokens_per_param: float = rules(positive, default=20.0)
    autocast: Literal["none", "bfloat16"] = "bfloat16"
    """Forward passes under bf16 autocast over fp32 master weights, as large runs train (paper §3)."""
    search: GridSearch | TPESearch = GridSearch()
    asha: ASHA | None = None
    """Early stopping of poor target configurations (None: every configuration trains to the end)."""


@dataclass(frozen=True)
class WSDSchedule:
    """Warmup-stable-decay: linear warmup, constant, then linear decay to zero (paper §3)."""

    type: Literal["wsd"] = "wsd"
    warmup_frac: float = rules(fraction, default=0.05)
    """Warmup as a share of each trial's steps; ignored when `warmup_steps` is set."""
    decay_frac: float = rules(fraction, default=0.34)
    """Share of the steps, at the end, over which the lr decays: the paper holds the peak until 66% of training
    and decays over the rest (D.1.2)."""
    warmup_steps: int | None = added(positive)
    """Warmup as a number of steps, the same for every trial whatever its length (capped at its steps): the paper
    warms up for 2,000 steps (D.1.2; 200 in the pilot of D.2.5). Takes precedence over `warmup_frac`, and a sweep
    file may give only one of the two."""

    _EXCLUSIVE_KEYS = (("warmup_frac", "warmup_steps"),)  # no annotation: a class constant, not a field


@dataclass(frozen=True)
class Training:
    schedule: WSDSchedule = WSDSchedule()
    grad_clip: float = rules(positive, default=1.0)
    num_evals: int = rules(positive, default=4)
    """Evaluations at evenly spaced steps, the last at the end of training."""
    param_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the weights the optimizer updates. bfloat16 weights round away any update below ~4e-3 of a
    weight of size 1, so tiny learning rates are refused with them (see ``raysweep.tiny_lr``)."""


@dataclass(frozen=True)
class Select:
    """Select mode: proxies on every recipe, targets tuned only on the ``top_k`` recipes of the proxy ranking,
    and the pick is the best of those by tuned target loss, at a fraction of the full protocol's target cost."""

    top_k: int = rules(positive)
    model: str | None = None
    """Proxy model whose ranking selects, at its chosen (tiny-lr rule) learning rate (default: the first)."""
    validated_by: str | None = None
    """Run directory of a full sweep (targets on every recipe) with the same proxy setting: its top-k regret,
    with CI, is the bound the pick comes with (relative paths are taken from the working directory)."""


@dataclass(frozen=True)
class SweepConfig:
    name: str = rules(safe_name)
    seq_len: int = rules(positive, sequence_length)
    sources: dict[str, Source] = rules(non_empty)
    recipes: list[Recipe] = rules(non_empty)
    validation: Validation
    proxy: ProxyGrid
    target: TargetGrid
    tokenizer: TokenizerConfig = TokenizerConfig()
    training: Training = Training()
    models: dict[str, ModelSpec] = field(default_factory=dict)
    """Extra named model sizes, or overrides of the built-in ones (``raysweep.models.MODEL_SIZES``)."""
    select: Select | None = None
    tasks: list[Task] = field(default_factory=list)
    """Downstream multiple-choice tasks scored in every trial beside the validation loss (``report --metric``)."""


@dataclass(frozen=True)
class RandomFeatureGrid:
    """The random-feature check of App. B (``raysweep.random_features``): synthetic datasets whose
    infinite-width optimum is known, trained by one-pass SGD at every width × learning rate × seed."""

    widths: list[int] = rules(non_empty, positive)
    lrs: list[float] = rules(non_empty, positive)
    seeds: list[int] = rules(non_empty)
    num_distributions: int = rules(positive, default=8)
    dim: int = rules(positive, default=4)
    distribution_seed: int = 0
    batch_size: int = rules(positive, default=8)
    num_steps: int = rules(positive, default=1000)
    num_evals: int = rules(positive, default=4)
    validation_samples: int = rules(positive, default=2000)
    kernel_samples: int = rules(positive, default=2000)
    """Samples per dataset for the kernel-regression estimate of its infinite-width optimum (the targets)."""
    ridge: float = rules(positive, default=1e-5)


@dataclass(frozen=True)
class RandomFeatureSweep:
    name: str = rules(safe_name)
    random_features: RandomFeatureGrid
