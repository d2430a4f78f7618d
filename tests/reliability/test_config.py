"""Bad configs are rejected with a message naming the offending key."""

import copy

import pytest
from conftest import REPO, count_cases

from adfm.config import config_problems, load_config

PAPER = load_config([REPO / "config.yaml"])


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


DELETE = object()

# (what is wrong, key to change, new value, text the message must contain)
BAD = [
    ("missing top-level key", "seed", DELETE, "(top level): 'seed' is a required property"),
    ("wrong type", "seed", "zero", "seed: 'zero' is not of type 'integer'"),
    ("negative seed", "seed", -1, "seed: -1 is less than the minimum"),
    ("unknown top-level key", "sede", 1, "(top level): Additional properties are not allowed ('sede'"),
    (
        "unknown nested key",
        "train.grpo.num_generation",
        6,
        "train.grpo: Additional properties are not allowed ('num_generation'",
    ),
    ("unknown reward name", "runs.adfm.rewards", ["cls", "accuracy"], "runs.adfm.rewards.1: 'accuracy' is not one of"),
    ("trained run without rewards", "runs.adfm.rewards", DELETE, "runs.adfm: 'rewards' is a required property"),
    ("negative size", "boxes.min_area", -5, "boxes.min_area: -5 is less than the minimum of 1"),
    ("zero dilation kernel", "boxes.dilation_kernel", 0, "boxes.dilation_kernel: 0 is less than the minimum of 1"),
    ("unknown layout", "datasets.mvtec_ad.layout", "mvtec", "datasets.mvtec_ad.layout: 'mvtec' is not one of"),
    ("bad checksum", "datasets.mvtec_ad.sha256", "abc", "datasets.mvtec_ad.sha256: 'abc' does not match"),
    ("empty category list", "datasets.mvtec_ad.categories", [], "datasets.mvtec_ad.categories: [] should be non-empty"),
    (
        "unknown dataset in protocol",
        "protocols.multidomain.datasets",
        ["mvtec_ad", "kolektor"],
        "protocols.multidomain.datasets: unknown dataset 'kolektor'",
    ),
    (
        "unknown protocol kind",
        "protocols.multidomain.kind",
        "kfold",
        "protocols.multidomain.kind: 'kfold' is not one of",
    ),
    (
        "train fraction of 1",
        "protocols.multidomain.train_fraction",
        1.0,
        "protocols.multidomain.train_fraction: 1.0 is greater than or equal to the maximum",
    ),
    ("unknown protocol in run", "runs.adfm.protocol", "fewshot", "runs.adfm.protocol: unknown protocol 'fewshot'"),
    (
        "unknown reasoning mode",
        "runs.adfm.reasoning",
        "three_stage",
        "runs.adfm.reasoning: 'three_stage' is not one of",
    ),
    ("one generation", "train.grpo.num_generations", 1, "train.grpo.num_generations: 1 is less than the minimum of 2"),
    (
        "negative learning rate",
        "train.grpo.learning_rate",
        -1e-5,
        "train.grpo.learning_rate: -1e-05 is less than or equal to the minimum",
    ),
    ("string for a number", "train.lora.r", "64", "train.lora.r: '64' is not of type 'integer'"),
    ("dropout above 1", "train.lora.dropout", 1.5, "train.lora.dropout: 1.5 is greater than the maximum of 1"),
    ("unknown model source", "model.source", "s3://bucket/qwen", "model.source: 's3://bucket/qwen' does not match"),
    ("unknown dtype", "model.dtype", "fp8", "model.dtype: 'fp8' is not one of"),
    ("zero batch size", "predict.batch_size", 0, "predict.batch_size: 0 is less than the minimum of 1"),
    ("negative GPUs", "resources.train.gpu", -1, "resources.train.gpu: -1 is less than the minimum of 0"),
    (
        "unknown run in a table",
        "tables.table1.rows",
        [{"match": {"model": "AD-FM", "scale": "7B"}, "run": "ghost"}],
        "tables.table1.rows: unknown run 'ghost'",
    ),
    (
        "unknown paper column",
        "tables.table1.columns",
        {"KolektorSDD": "mvtec_ad"},
        "tables.table1.columns: 'KolektorSDD' is not a column",
    ),
    (
        "batch not divisible by generations",
        "train.grpo.per_device_train_batch_size",
        7,
        "train.grpo.per_device_train_batch_size: must be a multiple of num_generations",
    ),
    ("url of the wrong type", "datasets.mvtec_ad.url", 42, "datasets.mvtec_ad.url: 42 is not of type"),
]


def test_shipped_config_has_no_problems():
    assert config_problems(PAPER) == []


@pytest.mark.parametrize("what, key, value, expected", BAD, ids=[case[0] for case in BAD])
def test_bad_config_is_rejected_naming_the_key(what, key, value, expected):
    config = copy.deepcopy(PAPER)
    _set(config, key, value)
    problems = config_problems(config)
    assert any(expected in problem for problem in problems), problems
    count_cases("kinds of bad config rejected with a message naming the key")
