"""`python -m bench` (`make bench`): every speed figure measured side by side with its baseline.

Sections (each a module here): ``serving`` (endpoint handlers and model-only
latency against eager fp32, with FLOP/s over the measured peak), ``training``
(train.py's recipe against a plain fp32 loop), ``dag_parse`` (our DAG against
an empty DAG with the same imports) and ``lambda_invoke`` (local_aws Lambda
against a direct handler call). Results go to ``bench/results.json``.
"""
