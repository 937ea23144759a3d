"""AWS Lambda: functions, versions, aliases, concurrency and tags, and Invoke in real worker processes."""
