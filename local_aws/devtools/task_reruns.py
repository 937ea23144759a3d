"""``airflow tasks test`` for several tasks of one DAG run, in one process.

Each ``airflow tasks test`` process spends seconds importing Airflow, its providers and the
plugin package before the task runs; re-running every task of a run that way spends most of
its time starting up. This runs the same CLI command (``airflow tasks test <dag> <task>
<run_id>``, parsed by Airflow's own parser) once per task in one interpreter and reads each
task instance's state back from the metadata database, which is what a retry or a clear
leaves behind. Prints one JSON object: ``{"ran": [task_id, ...], "failed": {task_id: reason}}``;
exits 1 if any task did not succeed.

Usage: ``python -m local_aws.devtools.task_reruns <dag_id> <run_id> <task_id>...``
"""

from __future__ import annotations

import json
import sys
import time


def rerun(dag_id: str, run_id: str, task_ids: list[str]) -> tuple[list[str], dict[str, str]]:
    from airflow.cli import cli_parser
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    parser = cli_parser.get_parser()
    ran: list[str] = []
    failed: dict[str, str] = {}
    for task_id in task_ids:
        started = time.monotonic()
        ran.append(task_id)
        args = parser.parse_args(["tasks", "test", dag_id, task_id, run_id])
        try:
            args.func(args)
        except (Exception, SystemExit) as error:  # SystemExit too: the next task still runs
            failed[task_id] = f"{type(error).__name__}: {error}"
            continue
        finally:
            print(f"[reruns] {task_id} in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=-1)
                .one()
            )
            if ti.state != "success":
                failed[task_id] = f"ended {ti.state}"
    return ran, failed


def main(argv: list[str] | None = None) -> int:
    dag_id, run_id, *task_ids = sys.argv[1:] if argv is None else argv
    ran, failed = rerun(dag_id, run_id, task_ids)
    print(json.dumps({"ran": ran, "failed": failed}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
