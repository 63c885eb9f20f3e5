"""Typed configuration: a cluster profile and a sweep file, loaded from YAML and validated whole.

Two files describe a launch. The *cluster profile* (``cluster/local.yaml``) says where to run and with
what resources; the *sweep file* (``search_spaces/demo.yaml``) says which recipes to compare and which
proxy and target runs to train. Both become frozen dataclasses (``schema``). Loading (``loading``) never stops at
the first mistake: every problem is collected with its YAML key path, so a user fixes a file in one pass::

    search_spaces/bad.yaml: recipes[2].mix[0].weight: must be > 0 (got -1)
    search_spaces/bad.yaml: proxy.lrs: must not be empty

``checks`` holds the rules that span fields, ``presets`` and ``sizes`` the named values a file may use.
"""

from raysweep.config.loading import load_cluster, load_sweep, sweep_from_dict
from raysweep.config.schema import (ASHA, ClusterConfig, EarlyStop, FileSource, FilteredSource, GridSearch, HFSource,
                                    MixComponent, MLflowTracking, ModelSpec, PerplexityFilter, ProxyGrid,
                                    RandomFeatureGrid, RandomFeatureSweep, RayConfig, Recipe, RepetitionFilter,
                                    Resources, Select, Source, SweepConfig, SyntheticSource, Task, TPESearch,
                                    TargetGrid, TokenizerConfig, Tracking, Training, TrialResources, Validation,
                                    WandbTracking, WSDSchedule)
from raysweep.config.sizes import MODEL_SIZES

__all__ = ["MODEL_SIZES", "load_cluster", "load_sweep", "sweep_from_dict", "ASHA", "ClusterConfig", "EarlyStop",
           "FileSource", "FilteredSource", "GridSearch", "HFSource", "MixComponent", "MLflowTracking", "ModelSpec",
           "PerplexityFilter", "ProxyGrid", "RandomFeatureGrid", "RandomFeatureSweep", "RayConfig", "Recipe",
           "RepetitionFilter", "Resources", "Select", "Source", "SweepConfig", "SyntheticSource", "Task", "TPESearch",
           "TargetGrid", "TokenizerConfig", "Tracking", "Training", "TrialResources", "Validation", "WandbTracking",
           "WSDSchedule"]
