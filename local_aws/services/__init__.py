"""One package per AWS service; each serves its API's operations (see :mod:`.base`).

``SERVICES`` is what ``python -m local_aws`` runs, by name (``context.services[name]``);
tests start a subset with :func:`only`.
"""

from __future__ import annotations

_AUTOSCALING = "local_aws.services.application_autoscaling"
SERVICES: dict[str, str] = {
    "cloudwatch-alarms": "local_aws.services.cloudwatch.evaluator:AlarmEvaluator",
    "sagemaker-tags": "local_aws.services.sagemaker.tags:SageMakerTags",
    "training": "local_aws.services.sagemaker.training.service:TrainingService",
    "tuning": "local_aws.services.sagemaker.tuning.service:TuningService",
    "model-registry": "local_aws.services.sagemaker.registry.service:ModelRegistry",
    "hosting": "local_aws.services.sagemaker.hosting.service:HostingService",
    "sagemaker-runtime": "local_aws.services.sagemaker_runtime.service:RuntimeService",
    "application-autoscaling-policies": f"{_AUTOSCALING}.policies:ScalingPolicyAlarms",
    "application-autoscaling": f"{_AUTOSCALING}.controller:AutoscalingController",
    "lambda": "local_aws.services.awslambda.service:LambdaService",
}


def only(*names: str) -> dict[str, str]:
    """The services called ``names`` (for a server that needs only some of them)."""
    return {name: SERVICES[name] for name in names}
