"""AWS Lambda for local_aws: the control plane the deploy operator uses, and Invoke that really
runs the handler in worker processes.

The operations live by resource, each a class sharing one :class:`LambdaState`:
:mod:`.functions`, :mod:`.versions`, :mod:`.aliases`, :mod:`.concurrency` (reserved and
provisioned), :mod:`.tags` and :mod:`.invoke`; :mod:`.environments` runs the worker pools
(:mod:`.pool`) whose processes are :mod:`.worker`.
"""

from __future__ import annotations

from local_aws.protocol.api import Handler, handlers_of
from local_aws.services.awslambda.aliases import Aliases
from local_aws.services.awslambda.api import LAMBDA
from local_aws.services.awslambda.concurrency import Concurrency
from local_aws.services.awslambda.environments import ExecutionEnvironments
from local_aws.services.awslambda.functions import Functions
from local_aws.services.awslambda.invoke import Invocations
from local_aws.services.awslambda.state import LambdaState
from local_aws.services.awslambda.tags import Tags
from local_aws.services.awslambda.versions import Versions
from local_aws.services.base import Context, Service


class LambdaService(Service):
    api = LAMBDA

    def __init__(self, context: Context):
        super().__init__(context)
        self.state = LambdaState(context)
        self.environments = ExecutionEnvironments(self.state)
        versions = Versions(self.state, self.environments)
        concurrency = Concurrency(self.state, self.environments)
        self.invocations = Invocations(self.state, self.environments)
        self._apis = (
            Functions(self.state, self.environments, versions),
            versions,
            Aliases(self.state, self.environments, concurrency),
            concurrency,
            Tags(self.state),
            self.invocations,
        )

    def handlers(self) -> dict[str, Handler]:
        return {name: handler for api in self._apis for name, handler in handlers_of(api).items()}

    @property
    def idle_worker_seconds(self) -> float:
        return self.environments.idle_worker_seconds

    @idle_worker_seconds.setter
    def idle_worker_seconds(self, seconds: float) -> None:
        self.environments.idle_worker_seconds = seconds

    def worker_pids(self, function_name: str, version: str) -> list[int]:
        """Live worker processes of one function version (for tests and diagnostics)."""
        return self.environments.pids(function_name, version)

    def shutdown(self) -> None:
        """Stop every worker process (whole process groups) and the background threads."""
        self.environments.shutdown()
        self.invocations.shutdown()
