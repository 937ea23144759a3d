"""A bounded concurrent load on loopback against the local endpoint: no request may fail.

8 client threads send the same good JPEG to InvokeEndpoint for at most 30 s or 2000
requests in all, whichever comes first. Latency percentiles and throughput are printed
and written to the test's report (``record_property``); speed is not asserted, because
2 shared cores say nothing about production.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

import pytest
from bad_input_corpus import good_jpeg
from served_model import ServedModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLIENTS = 8
MAX_SECONDS = 30.0
MAX_REQUESTS = 2000


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0

    def claim(self) -> bool:
        """One more request allowed by the overall count?"""
        with self.lock:
            if self.issued >= MAX_REQUESTS:
                return False
            self.issued += 1
            return True


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@pytest.fixture(scope="module")
def served(read_only_chain) -> ServedModel:
    return read_only_chain


def run_load(served: ServedModel, body: bytes) -> tuple[LoadResult, float]:
    result = LoadResult()
    deadline = time.monotonic() + MAX_SECONDS

    def client_loop() -> None:
        runtime = served.client("sagemaker-runtime", read_timeout=60)
        while time.monotonic() < deadline and result.claim():
            started = time.perf_counter()
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=served.endpoint_name, ContentType="image/jpeg", Body=body
                )
                response["Body"].read()
                elapsed = (time.perf_counter() - started) * 1000
                with result.lock:
                    result.latencies_ms.append(elapsed)
            except Exception as error:  # every failure is a finding, whatever its type
                with result.lock:
                    result.errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=client_loop, name=f"load-{n}") for n in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(MAX_SECONDS + 90)  # a request in flight at the deadline may still finish
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    return result, time.monotonic() - started


def test_eight_clients_for_thirty_seconds_see_no_error(served, record_property):
    result, seconds = run_load(served, good_jpeg(size=64))
    count = len(result.latencies_ms)
    report = {
        "clients": CLIENTS,
        "requests": count,
        "errors": len(result.errors),
        "seconds": round(seconds, 1),
        "throughput_rps": round(count / seconds, 2),
        "latency_ms_p50": round(percentile(result.latencies_ms, 0.50), 1) if count else None,
        "latency_ms_p90": round(percentile(result.latencies_ms, 0.90), 1) if count else None,
        "latency_ms_p99": round(percentile(result.latencies_ms, 0.99), 1) if count else None,
        "latency_ms_mean": round(statistics.fmean(result.latencies_ms), 1) if count else None,
    }
    for key, value in report.items():
        record_property(key, value)
    print(f"\nload on {served.endpoint_name}: {report}")
    assert not result.errors, f"{len(result.errors)} failed requests, first: {result.errors[:3]}"
    assert count >= CLIENTS, f"only {count} requests completed in {seconds:.0f} s"
