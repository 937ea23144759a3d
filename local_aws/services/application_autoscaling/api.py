"""The Application Auto Scaling API (AWS JSON 1.1): moto keeps it; local_aws extends a few operations."""

from __future__ import annotations

from local_aws.protocol.api import Api

APPLICATION_AUTOSCALING = Api(
    "application-autoscaling", internal_error="InternalServiceException", moto_serves_the_rest=True
)
