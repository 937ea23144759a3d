"""What SageMaker does with a job's log: apply the MetricDefinitions regexes, keep the last value."""

from __future__ import annotations

import re

from dog_breed import metrics


def scrape(log_text: str) -> dict[str, float]:
    """Last value of each metric in ``log_text``, as SageMaker fills FinalMetricDataList."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        for definition in metrics.METRIC_DEFINITIONS:
            match = re.search(definition["Regex"], line)
            if match:
                found[definition["Name"]] = float(match.group(1))
    return found
