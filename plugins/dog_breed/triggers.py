"""Triggers for the pipeline's own long waits, on the provider's AwsBaseWaiterTrigger.

(The endpoint's way back to InService after a rollback needs none of ours: the provider's
``SageMakerTrigger(job_type="endpoint")`` waits on botocore's ``endpoint_in_service``.)
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from dog_breed.hooks import PipelineLambdaHook


def connection_of(operator: Any) -> dict[str, Any]:
    """What a trigger needs to build, in the triggerer, the hook ``operator`` (an AwsBaseOperator) used."""
    return {
        "aws_conn_id": operator.aws_conn_id,
        "region_name": operator.region_name,
        "verify": operator.verify,
        "botocore_config": operator.botocore_config,
    }


class LambdaProvisionedConcurrencyReadyTrigger(AwsBaseWaiterTrigger):
    """Wait in the triggerer until an alias's provisioned concurrency is READY (custom waiter
    ``ProvisionedConcurrencyReady`` in ``waiters/lambda.json``); FAILED ends the wait with its reason.

    :param function_name: the function
    :param qualifier: the alias (or version) carrying the provisioned concurrency
    """

    aws_hook_class = PipelineLambdaHook

    def __init__(
        self,
        *,
        function_name: str,
        qualifier: str,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 80,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            serialized_fields={"function_name": function_name, "qualifier": qualifier},
            waiter_name="ProvisionedConcurrencyReady",
            waiter_args={"FunctionName": function_name, "Qualifier": qualifier},
            failure_message=f"Provisioned concurrency of {function_name}:{qualifier} failed",
            status_message=f"Provisioned concurrency of {function_name}:{qualifier}",
            status_queries=["Status", "StatusReason"],
            return_key="qualifier",
            return_value=qualifier,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            **kwargs,
        )
