"""Assemble the model page: read Airflow and AWS, then build the view model.

A section whose source fails still leaves the others on the page: the failure becomes one
line in ``ModelPage.problems``. Once AWS cannot be reached at all, the remaining AWS reads
are skipped instead of each waiting for its own timeout.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from dog_breed import links
from dog_breed.params import DEFAULT_DATASET_URI
from dog_breed.ui import airflow_reads, view_model
from dog_breed.ui.aws_reads import TRAINING_LOG_GROUP, AwsReader

log = logging.getLogger(__name__)
T = TypeVar("T")

DAG_ID = "dog_breed_pipeline"


class PageReads:
    """Runs the reads of one page, collecting what failed."""

    def __init__(self, reader: AwsReader):
        self.reader = reader
        self.problems: list[str] = []
        self.aws_unreachable = False

    def aws(self, what: str, read: Callable[[], T], default: T) -> T:
        if self.aws_unreachable:
            return default
        try:
            return read()
        except Exception as error:
            from botocore.exceptions import ConnectionError as BotocoreConnectionError

            if isinstance(error, BotocoreConnectionError):
                self.aws_unreachable = True
            log.warning("model page: could not read %s", what, exc_info=True)
            self.problems.append(f"could not read {what}: {type(error).__name__}: {error}")
            return default


def thumbnail_url(run_id: str, index: int) -> str:
    query = urllib.parse.urlencode({"run_id": run_id, "index": index})
    return f"{links.ui_base_path()}{links.UI_URL_PREFIX}/smoke-test/thumbnail.jpg?{query}"


def profiler_report_url(training_job: str) -> str:
    query = urllib.parse.urlencode({"training_job": training_job})
    return f"{links.ui_base_path()}{links.UI_URL_PREFIX}/profiler-report?{query}"


def review_url(run_id: str) -> str:
    """Airflow's form for the run's review (the task instance's Required Actions tab)."""
    run = urllib.parse.quote(run_id, safe="")
    return f"{links.ui_base_path()}/dags/{DAG_ID}/runs/{run}/tasks/{view_model.REVIEW_TASK}/required_actions"


def build_model_page(
    reader: AwsReader, *, endpoint_name: str, run_limit: int, training_job: str | None = None
) -> view_model.ModelPage:
    reads = PageReads(reader)
    records = airflow_reads.recent_runs(DAG_ID, run_limit)
    choices = reads.aws("the endpoint list (ListEndpoints)", reader.endpoint_names, [])
    endpoint_records = reads.aws(
        f"endpoint {endpoint_name}",
        lambda: reader.endpoint_records(endpoint_name),
        view_model.EndpointRecords(),
    )
    endpoint = view_model.endpoint_view(endpoint_name, endpoint_records)
    runs = view_model.run_views(records, endpoint.deployed_by_run, review_url)

    curves_job = training_job or view_model.latest_training_job(runs) or endpoint.training_job
    curves_description: dict[str, Any] | None = None
    lines: list[str] = []
    if curves_job:
        if curves_job == endpoint.training_job and endpoint_records.training_job:
            curves_description = dict(endpoint_records.training_job)
        else:
            curves_description = reads.aws(
                f"training job {curves_job}", lambda: reader.training_job(curves_job), None
            )
        lines = reads.aws(
            f"the logs of training job {curves_job}", lambda: list(reader.training_log_lines(curves_job)), []
        )
    curves = view_model.training_curves(
        curves_job, lines, curves_description, source=f"CloudWatch Logs {TRAINING_LOG_GROUP}"
    )

    live_training = endpoint_records.training_job
    located = view_model.profiler_report_location(live_training) if live_training else None
    report_exists = bool(located) and reads.aws(
        "the profiler report", lambda: reader.object_exists(located[0]), False
    )
    return view_model.ModelPage(
        dag_id=DAG_ID,
        endpoint_name=endpoint_name,
        endpoint_choices=sorted({*choices, endpoint_name}),
        region=reads.aws("the connection's region", lambda: reader.region, ""),
        endpoint_url=reads.aws("the connection", lambda: reader.endpoint_url("sagemaker"), None),
        endpoint=endpoint,
        canary=view_model.canary_view(endpoint_records.endpoint),
        runs=runs,
        curves=curves,
        profiler=view_model.profiler_view(endpoint.training_job, live_training, report_exists),
        smoke_test=view_model.smoke_test_view(records, DEFAULT_DATASET_URI, thumbnail_url),
        problems=reads.problems,
    )


def resource_links(page: view_model.ModelPage, *, partition: str, endpoint_url: str | None) -> dict[str, str]:
    """Console URLs (offline: description pages) of the resources the page names."""
    fields = {
        "region_name": page.region,
        "aws_partition": partition,
        "endpoint_url": endpoint_url,
        "base_path": links.ui_base_path(),
    }
    named = {
        "endpoint": (links.SageMakerEndpointLink, page.endpoint.name if page.endpoint.exists else None),
        "endpoint_config": (links.SageMakerEndpointConfigLink, page.endpoint.endpoint_config),
        "model": (links.SageMakerModelLink, page.endpoint.model_name),
        "training_job": (links.SageMakerTrainingJobLink, page.endpoint.training_job),
        "curves_job": (links.SageMakerTrainingJobLink, page.curves.training_job),
    }
    found = {key: link.url_for(name, **fields) for key, (link, name) in named.items() if name}
    if page.profiler.available and page.profiler.training_job:
        found["profiler_report"] = profiler_report_url(page.profiler.training_job)
    return found
