"""A person approves or rejects a registered model version in the Airflow UI (HITL).

Airflow's own ``ApprovalOperator`` (standard provider), told about the model registry: the
review shows the challenger and the champion side by side (``approval.review_body``), and the
answer becomes the version's ``ModelApprovalStatus`` and ``ApprovalDescription``. On Airflow
3.3 the waiting task is parked by the scheduler in the ``awaiting_input`` state: the worker
process exits, holding no slot, and no trigger or triggerer is involved; answering (the UI's
form, or ``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/-1/hitlDetails``) or the
scheduler's timeout sweep schedules ``execute_complete`` again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk.timezone import utcnow

from dog_breed import approval
from dog_breed.params import AWS_CONN_ID


class ModelVersionApprovalOperator(ApprovalOperator):
    """Ask a person to approve the version the quality gate looked at, unless it is decided.

    The registry says what to do: an ``Approved`` version (by the gate in ``auto`` mode, or by an
    earlier review) passes at once; a ``Rejected`` one skips the deploy path; a pending one is
    reviewed. Approve -> ``Approved``; Reject -> ``Rejected`` with the reviewer's comment, and
    the deploy path skips; no answer within ``approval_timeout_hours`` -> ``Rejected``, timed out.

    :param gate: the quality gate's result (``tasks.quality_gate``): package ARN, mode, comparison
    :param approval_timeout_hours: how long a review may wait for an answer
    """

    template_fields = (*ApprovalOperator.template_fields, "gate", "approval_timeout_hours", "region_name")

    def __init__(
        self,
        *,
        gate: Mapping[str, Any] | Any,
        approval_timeout_hours: float | str,
        aws_conn_id: str = AWS_CONN_ID,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Airflow hands every operator the DAG's Params (source "dag"); the review's form shows
        # only its own ("task"), so the comment field joins them here.
        params = ParamsDict(kwargs.pop("params", None) or {})
        params[approval.COMMENT_PARAM] = Param(
            "",
            description="Why you approve or reject; it becomes the version's approval description.",
            source="task",
            type="string",
            title="Comment",
        )
        super().__init__(subject="Approve the new model version?", params=params, **kwargs)
        self.gate = gate
        self.approval_timeout_hours = approval_timeout_hours
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def _registry(self):
        from dog_breed.hooks import PipelineSageMakerHook

        return PipelineSageMakerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    @property
    def package_arn(self) -> str:
        return self.gate["package_arn"]

    def execute(self, context: Any) -> Any:
        package = self._registry().describe_model_package(self.package_arn)
        status, description = package.get("ModelApprovalStatus"), package.get("ApprovalDescription")
        if status == approval.APPROVED:
            self.log.info("%s is already Approved: %s", self.package_arn, description)
            return self._outcome(status, description)
        if status == approval.REJECTED:
            raise AirflowSkipException(f"{self.package_arn} is Rejected: {description}")
        if not approval.person_decides(self.gate["mode"]):
            raise AirflowFailException(
                f"{self.package_arn} is {status}, but in {self.gate['mode']!r} mode the quality gate decides"
            )
        answered = self._answer_given_to_an_earlier_try(context)
        if answered is not None:
            self.log.info("%s was answered before this try: %s", self.package_arn, answered["chosen_options"])
            return self.execute_complete(context, answered)
        comparison = self.gate["comparison"]
        self.subject = approval.review_subject(comparison)
        self.body = approval.review_body(comparison)
        self.response_timeout = timedelta(hours=float(self.approval_timeout_hours))
        self.log.info("Asking for a review of %s (answer within %s)", self.package_arn, self.response_timeout)
        return super().execute(context)

    def _answer_given_to_an_earlier_try(self, context: Any) -> dict[str, Any] | None:
        """The answer already in this task instance's HITL detail, as a resume event, if any.

        Airflow 3.3 can retry a review answered while it was still parking: the executor's report
        that the parking process ended lands after the answer re-queued the task ("state changed
        externally"), and the task goes up_for_retry. Asking again would overwrite the answer
        (the detail is one per task instance), so a retry takes it instead.
        """
        ti = context.get("task_instance")
        if ti is None or getattr(ti, "try_number", 1) <= 1:
            return None
        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail

        try:
            detail = get_hitl_detail_content_detail(ti.id)
        except Exception as error:  # no detail yet (the earlier try never asked): ask now
            self.log.info("No earlier review for this task instance (%s)", error)
            return None
        if not getattr(detail, "response_received", False):
            return None
        user = detail.responded_by_user
        return {
            "chosen_options": detail.chosen_options,
            "params_input": detail.params_input or {},
            "responded_at": detail.responded_at,
            "responded_by_user": user.model_dump() if user is not None else None,
        }

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("error_type") == "timeout":
            # The scheduler's sweep found no answer in time (no defaults are set, so none is assumed).
            status = approval.REJECTED
            description = approval.timeout_description(float(self.approval_timeout_hours))
            event = {"chosen_options": [approval.REJECT], "params_input": {}, "responded_at": utcnow(),
                     "responded_by_user": None}  # fmt: skip
        elif "error" in event:
            return super().execute_complete(context, event)  # raises, with the event's error
        else:
            self.validate_chosen_options(event["chosen_options"])
            status = approval.review_status(event["chosen_options"][0])
            user = event.get("responded_by_user") or {}
            comment = (event.get("params_input") or {}).get(approval.COMMENT_PARAM)
            description = approval.review_description(status, user.get("name"), comment)
        # The registry first: a retry after this sees the decision instead of asking again.
        self._registry().set_approval(self.package_arn, status, description)
        self.log.info("%s is now %s: %s", self.package_arn, status, description)
        super().execute_complete(context, event)  # Reject: skips the deploy path
        return self._outcome(status, description, event.get("responded_by_user"))

    def _outcome(self, status: str, description: str | None, user: Mapping[str, Any] | None = None) -> dict:
        return {
            "package_arn": self.package_arn,
            "status": status,
            "description": description,
            "reviewed_by": (user or {}).get("name"),
        }
