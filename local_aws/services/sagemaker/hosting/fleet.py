"""A production variant's instances, and one endpoint config brought up.

* :class:`VariantFleet` is a production variant's instances with round-robin routing,
  scale-out (start, wait for /ping, then route) and scale-in (unroute, drain, stop).
* :class:`Deployment` is one endpoint config brought up: every variant's fleet, plus the
  count of requests in flight so an update can drain it before stopping it.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_aws.services.sagemaker.hosting.instance import InFlight, ModelInstance, StartupFailure

InstanceFactory = Callable[[], ModelInstance]


@dataclass
class VariantFleet:
    """A production variant's instances; ``routable`` are the ones requests go to."""

    name: str
    image: str
    model_dir: Path
    weight: float
    desired_count: int
    startup_timeout: float
    new_instance: InstanceFactory
    deployed_at: Any
    instances: list[ModelInstance] = field(default_factory=list)
    routable: list[ModelInstance] = field(default_factory=list)
    _cursor: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scaling: threading.Lock = field(default_factory=threading.Lock)

    @property
    def current_count(self) -> int:
        with self._lock:
            return len(self.routable)

    def scale_to(self, count: int) -> None:
        """Start instances up to ``count`` (all healthy before any is routed), or drain and stop extras."""
        with self._scaling:
            self.desired_count = count
            with self._lock:
                missing = count - len(self.instances)
            if missing > 0:
                started = [self.new_instance() for _ in range(missing)]
                with self._lock:
                    self.instances.extend(started)
                _start_all(started, self.startup_timeout)  # raises StartupFailure: the caller stops the fleet
                with self._lock:
                    self.routable.extend(started)
            elif missing < 0:
                with self._lock:
                    extra = self.instances[count:]
                    del self.instances[count:]
                    self.routable = [i for i in self.routable if i not in extra]
                for instance in extra:
                    instance.in_flight.wait_idle(timeout=65)
                    instance.stop()

    def candidates(self) -> list[ModelInstance]:
        """Routable instances in round-robin order: each request starts one further along."""
        with self._lock:
            routable = list(self.routable)
            start = next(self._cursor) % len(routable) if routable else 0
        return routable[start:] + routable[:start]

    @contextlib.contextmanager
    def leased(self, instance: ModelInstance) -> Iterator[bool]:
        """Count a request in flight on ``instance`` if it is still routable (scale-in waits for it)."""
        with self._lock:
            routable = instance in self.routable
            if routable:
                instance.in_flight.enter()
        try:
            yield routable
        finally:
            if routable:
                instance.in_flight.exit()

    def unroute(self, instance: ModelInstance) -> None:
        with self._lock:
            if instance in self.routable:
                self.routable.remove(instance)

    def reroute(self, instance: ModelInstance) -> None:
        with self._lock:
            if instance in self.instances and instance not in self.routable:
                self.routable.append(instance)

    def stop(self) -> None:
        with self._lock:
            instances = list(self.instances)
            self.routable = []
        _run_all([instance.stop for instance in instances])


def _start_all(instances: list[ModelInstance], timeout: float) -> None:
    errors = _run_all([lambda instance=instance: instance.start(timeout) for instance in instances])
    if errors:
        raise errors[0]


def _run_all(tasks: list[Callable[[], None]]) -> list[BaseException]:
    """Run tasks in threads, wait for all, return what they raised."""
    errors: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(task,), daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# -- one endpoint config, deployed ----------------------------------------------------------------
class Deployment:
    """An endpoint config's variants, running. Requests hold a lease (``in_flight``) while they use it."""

    def __init__(self, config_name: str, directory: Path, variants: list[VariantFleet]):
        self.config_name = config_name
        self.directory = directory
        self.variants = {variant.name: variant for variant in variants}
        self.in_flight = InFlight()
        self._stopped = threading.Event()

    def start(self) -> None:
        errors = _run_all([lambda v=v: v.scale_to(v.desired_count) for v in self.variants.values()])
        if errors:
            self.stop()
            raise errors[0] if isinstance(errors[0], StartupFailure) else StartupFailure(str(errors[0]))
        if self._stopped.is_set():
            raise StartupFailure("deployment stopped while starting")

    def pick_variant(self, target: str | None) -> VariantFleet | None:
        if target:
            return self.variants.get(target)
        variants = list(self.variants.values())
        weights = [variant.weight for variant in variants]
        if sum(weights) <= 0:
            weights = [1.0] * len(variants)
        return random.choices(variants, weights=weights)[0]  # noqa: S311 - traffic split, not security

    def stop(self) -> None:
        self._stopped.set()
        _run_all([variant.stop for variant in self.variants.values()])
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()
