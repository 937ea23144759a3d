"""Machinery every service shares, written once: nothing here knows about an AWS API.

* :mod:`.background`: work in daemon threads whose exceptions are logged, and periodic loops.
* :mod:`.processes`: a command in its own process group (output pumped line by line,
  SIGTERM then SIGKILL after a grace period, restart).
* :mod:`.cloudwatch_logs`: one shipper of log lines to CloudWatch Logs (batched, ordered, best effort).
* :mod:`.ports`: a free loopback port.
* :mod:`.s3` and :mod:`.archives`: S3 URIs, directory uploads, tar archives.
"""
