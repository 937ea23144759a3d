"""The one place that defines how training metrics are logged and scraped.

``model_scripts/train.py`` prints lines of the form::

    [metrics] epoch=3 train_loss=1.2345 valid_loss=1.3456 valid_accuracy=0.8123 images_per_sec=123.4
    [metrics] best_valid_accuracy=0.8123 test_loss=0.6543 test_accuracy=0.9012

SageMaker scrapes them from the job's logs with ``METRIC_DEFINITIONS``
(``MetricDefinitions`` of AlgorithmSpecification), and the tuning job
maximises ``TUNING_OBJECTIVE``. A test runs train.py and checks that every
regex here matches its output, so the two cannot drift apart.
"""

from __future__ import annotations

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

METRIC_LINE_PREFIX = "[metrics]"

# SageMaker metric name -> key printed by train.py after METRIC_LINE_PREFIX.
METRIC_KEYS: dict[str, str] = {
    "train:loss": "train_loss",
    "valid:loss": "valid_loss",
    "valid:accuracy": "valid_accuracy",
    "valid:best_accuracy": "best_valid_accuracy",
    "test:loss": "test_loss",
    "test:accuracy": "test_accuracy",
    "train:images_per_sec": "images_per_sec",
}

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"\[metrics\].*\b{key}={_NUMBER}"} for name, key in METRIC_KEYS.items()
]

TUNING_OBJECTIVE: dict[str, str] = {"Type": "Maximize", "MetricName": "valid:best_accuracy"}
TEST_ACCURACY_METRIC = "test:accuracy"
