"""Execution environments: one worker pool per function version, kept warm, reaped when idle.

A ``$LATEST`` revision that changes gets a fresh pool; the old one is retired (its busy
workers finish, then stop). Provisioned concurrency asks a pool to keep N workers warm; a
maintenance round every few seconds reaps idle on-demand workers and replaces dead
provisioned ones.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid

from local_aws.infra.background import every
from local_aws.protocol.errors import AwsError
from local_aws.services.awslambda.pool import Worker, WorkerPool
from local_aws.services.awslambda.state import Function, LambdaState, VersionRecord

log = logging.getLogger("local_aws.lambda")

IDLE_WORKER_SECONDS = 300.0
MAINTENANCE_INTERVAL_SECONDS = 2.0
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's init phase limit; on-demand inits get the function timeout if longer


class ExecutionEnvironments:
    def __init__(self, state: LambdaState):
        self._state = state
        self._logs = state.context.logs
        self._pools: dict[tuple[str, str], tuple[VersionRecord, WorkerPool]] = {}
        self._retired: list[WorkerPool] = []
        self.stopping = threading.Event()
        self.idle_worker_seconds = IDLE_WORKER_SECONDS
        self._maintenance = every(
            MAINTENANCE_INTERVAL_SECONDS, "lambda-maintenance", self._maintain, self.stopping
        )

    def pool(self, function: Function, record: VersionRecord) -> WorkerPool:
        """The pool running ``record``; a changed $LATEST gets a fresh pool (the old one drains)."""
        key = (function.name, record.version)
        with self._state.lock:
            if self.stopping.is_set():
                raise AwsError("ServiceException", "local_aws is shutting down.", 503)
            existing = self._pools.get(key)
            if existing is not None and existing[0] is record:
                return existing[1]
            pool = WorkerPool(lambda: self._start_worker(function, record))
            pool.provisioned = function.provisioned_for(record.version)
            self._pools[key] = (record, pool)
            old = existing[1] if existing else None
            if old is not None:
                self._retired.append(old)
        if old is not None:
            old.retire()
        return pool

    def retire(self, function_name: str, version: str) -> None:
        """The version's code or configuration changed: new invocations get new workers."""
        with self._state.lock:
            entry = self._pools.pop((function_name, version), None)
            if entry is not None:
                self._retired.append(entry[1])
        if entry is not None:
            entry[1].retire()

    def close(self, function_name: str, version: str | None = None) -> None:
        """Kill the workers of one version, or of every version of the function (it is deleted)."""
        with self._state.lock:
            keys = [key for key in self._pools if key[0] == function_name and version in (None, key[1])]
            pools = [self._pools.pop(key)[1] for key in keys]
        for pool in pools:
            pool.close()

    def sync_provisioned(self, function: Function) -> None:
        """Tell every pool of the function how many workers to keep warm."""
        with self._state.lock:
            pools = [(key[1], pool) for key, (_, pool) in self._pools.items() if key[0] == function.name]
            for version, pool in pools:
                pool.provisioned = function.provisioned_for(version)

    def size(self, function_name: str, version: str) -> int:
        with self._state.lock:
            entry = self._pools.get((function_name, version))
        return entry[1].size() if entry else 0

    def pids(self, function_name: str, version: str) -> list[int]:
        with self._state.lock:
            entry = self._pools.get((function_name, version))
        return entry[1].pids() if entry else []

    @staticmethod
    def new_log_stream(version: str) -> str:
        return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{uuid.uuid4().hex}"

    def ship_init_log(self, function: Function, worker: Worker) -> str:
        text = f"INIT_START Runtime Version: python:{sys.version_info.major}.{sys.version_info.minor}\n"
        text += worker.init_log
        self._logs.put_text(function.log_group, worker.log_stream, text)
        return text

    def _start_worker(self, function: Function, record: VersionRecord) -> Worker:
        config = record.config
        stream = self.new_log_stream(record.version)
        with self._state.lock:
            provisioned = function.provisioned_for(record.version) > 0
        environment = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            # No profile from this machine's ~/.aws may steer the handler's boto3 elsewhere.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **self._state.context.worker_environment(),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": record.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency" if provisioned else "on-demand",
            "LAMBDA_TASK_ROOT": str(record.code_dir),
            "_HANDLER": config.handler,
            **config.environment,
        }
        return Worker.start(
            env=environment,
            task_root=record.code_dir,
            log_stream=stream,
            init_log_path=function.directory / ".init" / f"{uuid.uuid4().hex}.log",
            init_timeout=max(INIT_TIMEOUT_SECONDS, float(config.timeout)),
        )

    def _maintain(self) -> None:
        """Reap idle workers, replace dead provisioned ones, forget drained retired pools."""
        with self._state.lock:
            pools = [(name, pool) for (name, _), (_, pool) in self._pools.items()]
            self._retired = [p for p in self._retired if not p.drained()]
        for name, pool in pools:
            try:
                pool.reap(self.idle_worker_seconds)
                if pool.provisioned and pool.size() < pool.provisioned:
                    with self._state.lock:
                        function = self._state.functions.get(name)
                    if function is not None:
                        for worker in pool.warm(pool.provisioned):
                            self.ship_init_log(function, worker)
            except Exception:  # one bad pool must not stop the housekeeping of the others
                log.warning("lambda maintenance of %s failed", name, exc_info=True)

    def shutdown(self) -> None:
        """Stop every worker process (whole process groups) and the maintenance thread."""
        self.stopping.set()
        self._maintenance.join(timeout=5)
        with self._state.lock:
            pools = [pool for _, pool in self._pools.values()] + self._retired
            self._pools, self._retired = {}, []
        for pool in pools:
            pool.close()
