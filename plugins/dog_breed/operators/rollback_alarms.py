"""The CloudWatch alarms that roll a retraining's blue/green update back (the provider has no operator)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from dog_breed.hooks import CloudWatchHook
from dog_breed.params import PipelineSettings
from dog_breed.specs import VARIANT_NAME, rollback_alarm_requests


class EndpointRollbackAlarmsOperator(AwsBaseOperator[CloudWatchHook]):
    """Create, or bring up to date, the endpoint variant's rollback alarms: any 5XX answer, the
    model's p99 latency above ``latency_p99_threshold_ms``, and more than
    ``four_xx_share_threshold`` of the requests answered 4XX (``dog_breed.specs``).

    PutMetricAlarm is an upsert by name and the names derive from the endpoint and variant
    (``dog_breed.naming.rollback_alarm_name``), so a rerun converges on the same alarms and
    leaves their state alone. Returns the alarm names, for the update's AutoRollbackConfiguration.

    :param endpoint_name: the endpoint (templated)
    :param variant_name: its production variant (templated)
    :param latency_p99_threshold_ms: the p99 ModelLatency that rolls back; None: the Param's
        default (templated)
    :param four_xx_share_threshold: the share of 4XX answers that rolls back; None: the Param's
        default (templated)
    """

    aws_hook_class = CloudWatchHook
    template_fields: Sequence[str] = aws_template_fields(
        "endpoint_name", "variant_name", "latency_p99_threshold_ms", "four_xx_share_threshold"
    )
    ui_color = "#f9d6c4"

    def __init__(
        self,
        *,
        endpoint_name: str,
        variant_name: str = VARIANT_NAME,
        latency_p99_threshold_ms: int | None = None,
        four_xx_share_threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.latency_p99_threshold_ms = latency_p99_threshold_ms
        self.four_xx_share_threshold = four_xx_share_threshold

    def execute(self, context: Any) -> list[str]:
        thresholds = {
            "latency_p99_threshold_ms": self.latency_p99_threshold_ms,
            "four_xx_share_threshold": self.four_xx_share_threshold,
        }
        settings = PipelineSettings.from_params(
            {"endpoint_name": self.endpoint_name, **{k: v for k, v in thresholds.items() if v is not None}}
        )
        names = []
        for request in rollback_alarm_requests(settings, self.variant_name):
            self.hook.conn.put_metric_alarm(**request)
            names.append(request["AlarmName"])
            self.log.info("Rollback alarm %s: %s", request["AlarmName"], request["AlarmDescription"])
        return names
