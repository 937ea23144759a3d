"""Dev tooling around the stand-in (not part of it): the demo, the Airflow stack, the sandbox, compose env."""
