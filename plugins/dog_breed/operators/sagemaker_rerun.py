"""The provider's SageMaker operators, made safe to retry and clear.

Names are rerun-stable (dog_breed.naming), so a rerun meets its own resource:

* tuning / training: a Completed job is reused, a running one is waited for (deferred
  when deferrable), a Failed or Stopped one makes way for ``<name>-2``... (the provider's
  tuning operator would fail on the existing name; its training operator would start a
  timestamped duplicate next to a job that is still running or already done);
* model package (registry version): registered once per training job, found again by the
  training job in its customer metadata;
* model: created once, described afterwards, and only from an ``Approved`` model package
  (whatever the XComs say, the registry is asked before every CreateModel);
* endpoint config: created once, described afterwards (immutable, content-addressed by the
  training job);
* endpoint: the provider operator's create-or-update, skipped when the endpoint already
  serves this endpoint config, waited for (deferred when deferrable) when it is still
  getting there. An update carries the run's DeploymentConfig (blue/green with alarm
  rollback); once the endpoint is InService it must serve the new config, or SageMaker rolled
  it back: the registry version is marked Rejected and the task fails with the endpoint's
  FailureReason, without a retry. Only an Approved version is created or updated to.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointConfigOperator,
    SageMakerEndpointOperator,
    SageMakerModelOperator,
    SageMakerRegisterModelVersionOperator,
    SageMakerTrainingOperator,
    SageMakerTuningOperator,
    serialize,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.sdk.exceptions import AirflowFailException

from dog_breed.approval import APPROVED
from dog_breed.hooks import PipelineSageMakerHook, describe_or_none
from dog_breed.links import (
    SageMakerEndpointLink,
    SageMakerModelLink,
    SageMakerTrainingJobLink,
    SageMakerTuningJobLink,
)
from dog_breed.naming import TUNING_JOB_MAX_LEN, JobAction, resolve_job_name
from dog_breed.registry import METADATA_TRAINING_JOB
from dog_breed.triggers import connection_of


def _status_or_none(describe, name: str, status_key: str) -> str | None:
    description = describe_or_none(describe, name)
    return None if description is None else description[status_key]


def _exists(describe, name: str) -> bool:
    return describe_or_none(describe, name) is not None


def _defer_until_done(operator: Any, name: str, job_type: str, **trigger_kwargs: Any) -> None:
    """Hand the wait for an already running job to the triggerer, as the provider does for new ones."""
    operator.defer(
        trigger=SageMakerTrigger(
            job_name=name,
            job_type=job_type,
            waiter_delay=operator.check_interval,
            **connection_of(operator),
            **trigger_kwargs,
        ),
        method_name="execute_complete",
        timeout=(
            datetime.timedelta(seconds=operator.max_ingestion_time) if operator.max_ingestion_time else None
        ),
    )


class ResumableSageMakerTuningOperator(SageMakerTuningOperator):
    """SageMakerTuningOperator that reuses or resumes its own tuning job on rerun."""

    operator_extra_links = (SageMakerTuningJobLink(),)

    def execute(self, context: Any) -> dict:
        name, action = resolve_job_name(
            self.config["HyperParameterTuningJobName"],
            lambda n: _status_or_none(self.hook.describe_tuning_job, n, "HyperParameterTuningJobStatus"),
            TUNING_JOB_MAX_LEN,
        )
        self.config["HyperParameterTuningJobName"] = name
        SageMakerTuningJobLink.persist_for(context, self, name)
        self.log.info("Tuning job %s: %s", name, action)
        if action == JobAction.CREATE:
            return super().execute(context)
        if action == JobAction.WAIT:
            if self.deferrable:
                _defer_until_done(self, name, "tuning")
            self.hook.check_status(
                name,
                "HyperParameterTuningJobStatus",
                self.hook.describe_tuning_job,
                self.check_interval,
                self.max_ingestion_time,
            )
        return {"Tuning": serialize(self.hook.describe_tuning_job(name))}


class ResumableSageMakerTrainingOperator(SageMakerTrainingOperator):
    """SageMakerTrainingOperator that reuses or resumes its own training job on rerun."""

    aws_hook_class = PipelineSageMakerHook  # notices the job's end at check_interval
    operator_extra_links = (SageMakerTrainingJobLink(),)

    def __init__(self, **kwargs: Any) -> None:
        # The name is resolved here; a job that appears meanwhile is a race worth failing on.
        kwargs.setdefault("action_if_job_exists", "fail")
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict:
        name, action = resolve_job_name(
            self.config["TrainingJobName"],
            lambda n: _status_or_none(self.hook.describe_training_job, n, "TrainingJobStatus"),
        )
        self.config["TrainingJobName"] = name
        SageMakerTrainingJobLink.persist_for(context, self, name)
        self.log.info("Training job %s: %s", name, action)
        if action == JobAction.CREATE:
            return super().execute(context)
        if action == JobAction.WAIT:
            if self.deferrable:
                _defer_until_done(self, name, "Training", waiter_max_attempts=self.max_attempts)
            self.hook.check_training_status_with_log(
                name,
                self.hook.non_terminal_states,
                self.hook.training_failed_states,
                self.wait_for_completion,
                self.check_interval,
                self.max_ingestion_time,
            )
        return self.serialize_result(name)


class IdempotentSageMakerRegisterModelVersionOperator(SageMakerRegisterModelVersionOperator):
    """SageMakerRegisterModelVersionOperator that registers a training job's model once.

    A version belongs to one training job (``registry.METADATA_TRAINING_JOB`` in ``extras``'
    CustomerMetadataProperties): a retried or cleared task finds that version and returns it
    instead of adding another. ``extras`` is templated here (it is built at run time) and, as the
    provider documents, overrides its request: the whole InferenceSpecification (the provider's
    is text/csv), ModelMetrics, CustomerMetadataProperties. The group is created, with
    ``package_group_desc``, before the provider's execute, which would give a new group the
    package's description instead. Returns ``{"ModelPackage": DescribeModelPackage}``.
    """

    aws_hook_class = PipelineSageMakerHook
    template_fields = (*SageMakerRegisterModelVersionOperator.template_fields, "extras")
    template_fields_renderers: ClassVar[dict] = {"extras": "json"}

    def execute(self, context: Any) -> dict:
        training_job = ((self.extras or {}).get("CustomerMetadataProperties") or {}).get(
            METADATA_TRAINING_JOB
        )
        if not training_job:
            raise AirflowFailException(
                f"extras must name the training job in CustomerMetadataProperties[{METADATA_TRAINING_JOB!r}]"
            )
        self.hook.create_model_package_group(self.package_group_name, self.package_group_desc)
        package = self.hook.find_model_package(self.package_group_name, METADATA_TRAINING_JOB, training_job)
        if package is not None:
            self.log.info(
                "Version %s already registers %s; reusing it.", package["ModelPackageArn"], training_job
            )
        else:
            arn = super().execute(context)
            package = self.hook.describe_model_package(arn)
            self.log.info("Registered %s as %s (%s).", training_job, arn, package.get("ModelApprovalStatus"))
        return {"ModelPackage": serialize(package)}


class IdempotentSageMakerModelOperator(SageMakerModelOperator):
    """SageMakerModelOperator that describes instead of failing when the model exists, and that
    creates (or reuses) a model from a registry package only while that package is Approved."""

    aws_hook_class = PipelineSageMakerHook
    operator_extra_links = (SageMakerModelLink(),)

    def execute(self, context: Any) -> dict:
        name = self.config["ModelName"]
        SageMakerModelLink.persist_for(context, self, name)
        for container in [self.config.get("PrimaryContainer") or {}, *self.config.get("Containers", [])]:
            if package := container.get("ModelPackageName"):
                _require_approved(self, package)
        if _exists(self.hook.describe_model, name):
            self.log.info("Model %s exists; reusing it.", name)
            return {"Model": serialize(self.hook.describe_model(name))}
        return super().execute(context)


def _require_approved(operator: Any, package_arn: str) -> None:
    """Fail, without a retry, unless the registry says ``package_arn`` is Approved now."""
    package = operator.hook.describe_model_package(package_arn)
    status = package.get("ModelApprovalStatus")
    if status != APPROVED:
        why = f": {package['ApprovalDescription']}" if package.get("ApprovalDescription") else ""
        # No retry: only a person or the gate can change the status.
        raise AirflowFailException(
            f"Model package {package_arn} is {status}{why}; only Approved ones deploy."
        )
    operator.log.info("Model package %s is Approved: %s", package_arn, package.get("ApprovalDescription"))


class IdempotentSageMakerEndpointConfigOperator(SageMakerEndpointConfigOperator):
    """SageMakerEndpointConfigOperator that describes instead of failing when the config exists."""

    def execute(self, context: Any) -> dict:
        name = self.config["EndpointConfigName"]
        if _exists(self.hook.describe_endpoint_config, name):
            self.log.info("Endpoint config %s exists; reusing it.", name)
            return {"EndpointConfig": serialize(self.hook.describe_endpoint_config(name))}
        return super().execute(context)


class EndpointRolledBack(AirflowFailException):
    """The endpoint is InService on its old config: SageMaker rolled the update back (no retry:
    another attempt would put the same model in front of traffic again)."""


class IdempotentSageMakerEndpointOperator(SageMakerEndpointOperator):
    """SageMakerEndpointOperator (create, or update when it exists) that does not redeploy
    an endpoint already serving the requested endpoint config, updates with ``deployment_config``
    (a blue/green DeploymentConfig; None: the plain update) and fails, with SageMaker's reason,
    when the update ended InService on another config. With ``model_package_arn`` it creates or
    updates only while that registry version is Approved, and a rollback marks it Rejected
    (``PipelineSageMakerHook.record_rollback``).

    :param deployment_config: UpdateEndpoint's DeploymentConfig; not used to create (templated)
    :param model_package_arn: the registry version the endpoint config serves (templated)
    """

    aws_hook_class = PipelineSageMakerHook
    operator_extra_links = (SageMakerEndpointLink(),)
    template_fields = (*SageMakerEndpointOperator.template_fields, "deployment_config", "model_package_arn")

    def __init__(
        self, *, deployment_config: dict | None = None, model_package_arn: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_config = deployment_config
        self.model_package_arn = model_package_arn

    def execute(self, context: Any) -> dict:
        endpoint = self.config["EndpointName"]
        SageMakerEndpointLink.persist_for(context, self, endpoint)
        wanted = self.config["EndpointConfigName"]
        current = describe_or_none(self.hook.describe_endpoint, endpoint)
        if current is None or current.get("EndpointConfigName") != wanted:
            if current is not None and current["EndpointStatus"] != "Failed":
                self._prepare_update()
            return self._deploy(context)
        status = current["EndpointStatus"]
        if status in self.hook.endpoint_non_terminal_states:
            self.log.info("Endpoint %s is %s towards %s; waiting.", endpoint, status, wanted)
            attempts = max(1, self.max_ingestion_time // self.check_interval)
            if self.deferrable:
                _defer_until_done(self, endpoint, "endpoint", waiter_max_attempts=attempts)
            self.hook.get_waiter("endpoint_in_service").wait(
                EndpointName=endpoint, WaiterConfig={"Delay": self.check_interval, "MaxAttempts": attempts}
            )
        elif status != "InService":
            return self._deploy(context)
        else:
            self.log.info("Endpoint %s already serves %s.", endpoint, wanted)
        return self.confirm(
            {
                "EndpointConfig": serialize(self.hook.describe_endpoint_config(wanted)),
                "Endpoint": serialize(self.hook.describe_endpoint(endpoint)),
            }
        )

    def _deploy(self, context: Any) -> dict:
        """The provider's create-or-update, of an Approved version only (a task cleared after a
        rollback meets it Rejected), then :meth:`confirm`."""
        if self.model_package_arn:
            _require_approved(self, self.model_package_arn)
        return self.confirm(super().execute(context))

    def _prepare_update(self) -> None:
        """UpdateEndpoint takes no Tags; it takes the DeploymentConfig."""
        self.operation = "update"
        self.config = {key: value for key, value in self.config.items() if key != "Tags"}
        if self.deployment_config:
            self.config["DeploymentConfig"] = self.deployment_config
            policy = self.deployment_config.get("BlueGreenUpdatePolicy", {})
            self.log.info("Blue/green update of %s: %s", self.config["EndpointName"], policy)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, dict]:
        return self.confirm(super().execute_complete(context, event))

    def confirm(self, result: dict) -> dict:
        """``result`` (the operator's return value) if the endpoint serves the wanted config."""
        endpoint = result["Endpoint"]
        wanted = self.config["EndpointConfigName"]
        if endpoint.get("EndpointConfigName") != wanted:
            reason = endpoint.get("FailureReason", "No reason given.")
            recorded = self.hook.record_rollback(
                self.model_package_arn,
                endpoint_name=endpoint["EndpointName"],
                by="SageMaker's auto-rollback (deployment guardrails)",
                reason=reason,
            )
            raise EndpointRolledBack(
                f"{endpoint['EndpointName']} is {endpoint['EndpointStatus']} on "
                f"{endpoint.get('EndpointConfigName')}, not on {wanted}: SageMaker rolled the update back. "
                f"{reason} {recorded}".rstrip()
            )
        return result
