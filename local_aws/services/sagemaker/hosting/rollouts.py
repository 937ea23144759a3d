"""Blue/green UpdateEndpoint with a DeploymentConfig: deployment guardrails, as SageMaker runs them.

The new endpoint config is brought up as a second fleet (green) beside the one serving (blue).
Traffic then shifts as ``BlueGreenUpdatePolicy.TrafficRoutingConfiguration`` says:

* ``ALL_AT_ONCE``: all of it, then ``WaitIntervalInSeconds`` of baking;
* ``CANARY``: ``CanarySize`` of the capacity, ``WaitIntervalInSeconds`` of baking, then the rest;
* ``LINEAR``: ``LinearStepSize`` more after each ``WaitIntervalInSeconds``, until all of it;

then ``TerminationWaitInSeconds`` of final baking before the blue fleet is stopped. A traffic
share is the capacity that takes traffic: ``k`` of the green fleet's ``N`` instances
(``CAPACITY_PERCENT`` rounds down, at least one) get ``k / N`` of the requests, routed
deterministically so the share holds for any number of requests. From the first shift to the
end, the ``AutoRollbackConfiguration`` alarms are watched; one in ``ALARM`` (or the
``MaximumExecutionTimeoutInSeconds`` passing) rolls back: all traffic to blue, green stopped,
the endpoint ``InService`` on the old config with a ``FailureReason``. Waits and the timeout run
on local_aws's clock (the time scale); bringing the green fleet up takes real time, and that
real time counts against the timeout. Validation is SageMaker's: a canary holds at most half of
the instances, a linear step 10-50% of them, the variant names stay the same.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local_aws.protocol.errors import validation_error
from local_aws.services.base import now
from local_aws.services.sagemaker.hosting import instance
from local_aws.services.sagemaker.hosting.fleet import Deployment
from local_aws.services.sagemaker.hosting.instance import StartupFailure

if TYPE_CHECKING:
    from local_aws.services.sagemaker.hosting.deployments import Deployments
    from local_aws.services.sagemaker.hosting.records import (
        EndpointConfigRecord,
        EndpointRecord,
        HostingState,
    )

log = logging.getLogger("local_aws.hosting.rollouts")

ROLLED_BACK = "Rolled back to the previous endpoint configuration:"
ALARM_POLL_SECONDS = 10.0  # simulated seconds between looks at the rollback alarms
MIN_POLL_REAL_SECONDS = 0.1


# -- the plan: pure ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    share: float  # of the requests routed to the green fleet
    active: int  # green instances taking traffic
    seconds: float  # simulated seconds of baking
    status: str  # ProductionVariantStatus: ActivatingTraffic, Baking
    message: str


@dataclass(frozen=True)
class TrafficPlan:
    routing: str
    instances: int
    phases: tuple[Phase, ...]
    timeout: float | None  # simulated seconds for the whole deployment


def capacity(size: dict[str, Any], instances: int) -> int:
    """Instances a CapacitySize stands for (``CAPACITY_PERCENT`` rounds down, at least one)."""
    if size["Type"] == "INSTANCE_COUNT":
        return int(size["Value"])
    return max(1, math.floor(instances * int(size["Value"]) / 100))


def _size_text(size: dict[str, Any]) -> str:
    unit = "%" if size["Type"] == "CAPACITY_PERCENT" else " instance(s)"
    return f"{size['Value']}{unit}"


def plan_blue_green(policy: dict[str, Any], instances: int) -> TrafficPlan:
    """The phases of a BlueGreenUpdatePolicy over ``instances`` (the new config's total); a
    ValidationException in SageMaker's terms when the policy does not fit."""
    routing = policy["TrafficRoutingConfiguration"]
    kind, wait = routing["Type"], float(routing["WaitIntervalInSeconds"])
    termination = float(policy.get("TerminationWaitInSeconds") or 0)
    canary, step = routing.get("CanarySize"), routing.get("LinearStepSize")
    wanted = {"CANARY": (True, False), "LINEAR": (False, True), "ALL_AT_ONCE": (False, False)}[kind]
    if (canary is not None, step is not None) != wanted:
        needs = {"CANARY": "CanarySize and no LinearStepSize", "LINEAR": "LinearStepSize and no CanarySize",
                 "ALL_AT_ONCE": "neither CanarySize nor LinearStepSize"}[kind]  # fmt: skip
        raise validation_error(f"{kind} traffic routing takes {needs}.")
    final_message = "All traffic on the new fleet: final baking period before the old fleet is terminated."
    final = Phase(1.0, instances, termination, "Baking", final_message)
    if kind == "ALL_AT_ONCE":
        phases: tuple[Phase, ...] = (
            Phase(1.0, instances, wait, "Baking", "All traffic shifted to the new fleet at once: baking."),
            final,
        )
    elif kind == "CANARY":
        assert canary is not None
        active = capacity(canary, instances)
        if (canary["Type"] == "CAPACITY_PERCENT" and int(canary["Value"]) > 50) or 2 * active > instances:
            raise validation_error(
                f"CanarySize {_size_text(canary)} is {active} of {instances} instance(s): the canary "
                "must be at most 50% of the variant's total instance count."
            )
        share = f"{active / instances:.0%}"
        message = f"Canary: {active} of {instances} instance(s) of the new fleet take {share} of the traffic."
        phases = (Phase(active / instances, active, wait, "Baking", message), final)
    else:
        assert step is not None
        active = capacity(step, instances)
        percent = int(step["Value"]) if step["Type"] == "CAPACITY_PERCENT" else 100 * active / instances
        if not 10 <= percent <= 50 or 2 * active > instances:
            raise validation_error(
                f"LinearStepSize {_size_text(step)} is {active} of {instances} instance(s): each linear step "
                "must be 10-50% of the variant's total instance count."
            )
        steps = [
            Phase(reached / instances, reached, wait, "Baking",
                  f"Linear step: {reached} of {instances} instance(s) of the new fleet take traffic.")
            for reached in range(active, instances, active)
        ]  # fmt: skip
        phases = (*steps, final)
    timeout = policy.get("MaximumExecutionTimeoutInSeconds")
    waits = sum(phase.seconds for phase in phases)
    if timeout is not None and float(timeout) < waits:
        raise validation_error(
            f"MaximumExecutionTimeoutInSeconds ({timeout}) must be larger than the total waiting time of the "
            f"deployment ({waits:g} seconds of WaitIntervalInSeconds and TerminationWaitInSeconds)."
        )
    return TrafficPlan(kind, instances, phases, float(timeout) if timeout is not None else None)


@dataclass(frozen=True)
class BlueGreenUpdate:
    """A checked request for a blue/green update: the DeploymentConfig as given, and its plan."""

    deployment_config: dict[str, Any]
    plan: TrafficPlan


class TrafficSplit:
    """Which fleet a request goes to: exactly ``share`` of them to the green one, interleaved."""

    def __init__(self) -> None:
        self.share = 0.0
        self._routed = 0
        self._to_green = 0
        self._lock = threading.Lock()

    def shift(self, share: float) -> None:
        with self._lock:
            self.share, self._routed, self._to_green = share, 0, 0

    def to_green(self) -> bool:
        with self._lock:
            self._routed += 1
            if self._to_green < self.share * self._routed - 1e-9:
                self._to_green += 1
                return True
            return False


# -- running it ----------------------------------------------------------------------------------
class BlueGreenRollout:
    """One blue/green update of an endpoint, run by :meth:`run` in a background thread."""

    def __init__(
        self,
        state: HostingState,
        deployments: Deployments,
        endpoint: EndpointRecord,
        config: EndpointConfigRecord,
        update: BlueGreenUpdate,
    ):
        self._state = state
        self._deployments = deployments
        self.endpoint = endpoint
        self.config = config
        self.deployment_config = update.deployment_config
        self.plan = update.plan
        self.alarms = rollback_alarms(update.deployment_config)
        self.started = now()
        self.split = TrafficSplit()
        self.green: Deployment | None = None
        self.status, self.message, self.status_since = "Creating", "Creating the new fleet.", now()
        self.active = 0
        self._started = time.monotonic()
        self._provisioning = 0.0  # real seconds it took to bring the green fleet up
        self._provisioned_at = 0.0

    # what requests and DescribeEndpoint see (under the state lock) -------------------------------
    def pick(self) -> Deployment | None:
        """The green fleet for this request, or None for the blue one."""
        if self.green is not None and self.split.share > 0 and self.split.to_green():
            return self.green
        return None

    def green_share(self) -> float:
        return self.split.share if self.green is not None else 0.0

    # the procedure -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            green = self._deployments.deploy(self.endpoint, self.config)
        except StartupFailure as failure:
            self._end(str(failure), green=None)
            return
        with self._state.lock:
            if self.endpoint.deleted:
                stale = green
            else:
                stale, self.green = None, green
        if stale is not None:
            self._deployments.retire(stale)
            return
        self._provisioned_at = time.monotonic()
        self._provisioning = self._provisioned_at - self._started
        for phase in self.plan.phases:
            self._enter(phase)
            reason = self._bake(phase.seconds)
            if reason is not None:
                self._roll_back(reason)
                return
        self._complete()

    def _enter(self, phase: Phase) -> None:
        log.info("blue/green %s -> %s: %s", self.endpoint.name, self.config.name, phase.message)
        with self._state.lock:
            self.split.shift(phase.share)
            self.active = phase.active
            self.status, self.message, self.status_since = phase.status, phase.message, now()
            self.endpoint.modified = now()

    def _bake(self, seconds: float) -> str | None:
        """Watch the alarms (and the timeout) for ``seconds`` of simulated time; the rollback's
        reason, or None when the period passed clean."""
        clock = self._state.context.clock
        deadline = time.monotonic() + clock.real(seconds)
        poll = max(MIN_POLL_REAL_SECONDS, clock.real(ALARM_POLL_SECONDS))
        while True:
            if self.endpoint.deleted or self._deployments.closing.is_set():
                return "the endpoint was deleted during the deployment"
            reason = self._alarm_reason() or self._timeout_reason()
            if reason is not None:
                return reason
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(poll, left))

    def _alarm_reason(self) -> str | None:
        if not self.alarms:
            return None
        try:
            described = self._state.context.client("cloudwatch").describe_alarms(AlarmNames=self.alarms)
        except Exception as error:  # CloudWatch unreachable: SageMaker would not roll back on that
            log.warning("could not read the rollback alarms of %s: %s", self.endpoint.name, error)
            return None
        firing = [a for a in described.get("MetricAlarms", []) if a.get("StateValue") == "ALARM"]
        if not firing:
            return None
        names = ", ".join(a["AlarmName"] for a in firing)
        reason = (
            f"{ROLLED_BACK} CloudWatch alarm(s) [{names}] went into ALARM during the blue/green deployment "
            f"of {self.config.name} ({firing[0].get('StateReason', '')})"
        )
        return reason[:1024]

    def _timeout_reason(self) -> str | None:
        if self.plan.timeout is None or not self._provisioned_at:
            return None
        clock = self._state.context.clock
        elapsed = self._provisioning + clock.simulated(time.monotonic() - self._provisioned_at)
        if elapsed <= self.plan.timeout:
            return None
        return (
            f"{ROLLED_BACK} the blue/green deployment of {self.config.name} exceeded "
            f"MaximumExecutionTimeoutInSeconds ({self.plan.timeout:g})."
        )

    def _roll_back(self, reason: str) -> None:
        log.warning("blue/green %s: %s", self.endpoint.name, reason)
        with self._state.lock:
            self.split.shift(0.0)  # every new request goes to the blue fleet from here on
            if not self.endpoint.deleted:
                self.endpoint.status, self.endpoint.modified = "RollingBack", now()
        self._end(reason, green=self.green)

    def _end(self, failure: str, green: Deployment | None) -> None:
        """Back on the old config, InService, with ``failure`` as the FailureReason."""
        with self._state.lock:
            self.green = None
            if not self.endpoint.deleted:
                self.endpoint.status, self.endpoint.modified = "InService", now()
                self.endpoint.failure_reason, self.endpoint.pending = failure, None
                self.endpoint.rollout = None
                self.endpoint.last_deployment_config = self.deployment_config
        if green is not None:
            green.in_flight.wait_idle(timeout=instance.INVOCATION_TIMEOUT_SECONDS + 5)
            self._deployments.retire(green)

    def _complete(self) -> None:
        with self._state.lock:
            blue = self.endpoint.deployment
            if self.endpoint.deleted:
                return
            self.endpoint.deployment, self.endpoint.config_name = self.green, self.config.name
            self.endpoint.status, self.endpoint.modified, self.endpoint.pending = "InService", now(), None
            self.endpoint.rollout, self.green = None, None
            self.endpoint.last_deployment_config = self.deployment_config
        log.info("blue/green %s: now on %s", self.endpoint.name, self.config.name)
        if blue is not None:
            blue.in_flight.wait_idle(timeout=instance.INVOCATION_TIMEOUT_SECONDS + 5)
            self._deployments.retire(blue)


def rollback_alarms(deployment_config: dict[str, Any]) -> list[str]:
    alarms = (deployment_config.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    return [alarm["AlarmName"] for alarm in alarms]


def check_alarms_exist(context: Any, deployment_config: dict[str, Any]) -> None:
    """AutoRollbackConfiguration must name alarms that exist (SageMaker reads them to roll back)."""
    names = rollback_alarms(deployment_config)
    if not names:
        return
    described = context.client("cloudwatch").describe_alarms(AlarmNames=names)
    found = {alarm["AlarmName"] for alarm in described.get("MetricAlarms", [])}
    missing = [name for name in names if name not in found]
    if missing:
        raise validation_error(f"CloudWatch alarm(s) {missing} of AutoRollbackConfiguration do not exist.")


def blue_green_policy(deployment_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The deployment config's BlueGreenUpdatePolicy; a rolling one is refused (not implemented)."""
    if not deployment_config:
        return None
    if deployment_config.get("RollingUpdatePolicy"):
        if deployment_config.get("BlueGreenUpdatePolicy"):
            raise validation_error("Only one update policy should be used in the deployment configuration.")
        raise validation_error("local_aws does not implement rolling deployments (RollingUpdatePolicy).")
    return deployment_config.get("BlueGreenUpdatePolicy") or {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    }
