"""CloudWatch: moto keeps the metrics and alarms and serves the API; this package evaluates the
metric alarms (state, reason, history) as CloudWatch does, on local_aws's clock."""
