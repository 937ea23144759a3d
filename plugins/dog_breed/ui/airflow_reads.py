"""What the model page reads from Airflow's metadata database: the DAG's latest runs, the
states of the tasks that decide a run's row, and their return values (XComs).

Runs in the api-server (the ORM and a session are there); imported by request handlers only.
"""

from __future__ import annotations

from typing import Any

from dog_breed.ui.view_model import RUN_TASKS, RunRecord


def recent_runs(dag_id: str, limit: int, run_id: str | None = None) -> list[RunRecord]:
    """The ``limit`` newest runs of ``dag_id`` (or only ``run_id``), newest first."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id)
        if run_id is not None:
            query = query.where(DagRun.run_id == run_id)
        runs = session.scalars(query.order_by(DagRun.run_after.desc()).limit(limit)).all()
        run_ids = [run.run_id for run in runs]
        states: dict[str, dict[str, str | None]] = {rid: {} for rid in run_ids}
        for rid, task_id, state in session.execute(
            select(TaskInstance.run_id, TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id.in_(run_ids),
                TaskInstance.task_id.in_(RUN_TASKS),
                TaskInstance.map_index == -1,
            )
        ):
            states[rid][task_id] = str(state) if state is not None else None
        returns: dict[str, dict[str, Any]] = {rid: {} for rid in run_ids}
        for row in session.execute(
            select(XComModel.run_id, XComModel.task_id, XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id.in_(run_ids),
                XComModel.task_id.in_(RUN_TASKS),
                XComModel.key == "return_value",
                XComModel.map_index == -1,
            )
        ):
            returns[row.run_id][row.task_id] = XComModel.deserialize_value(row)
        return [
            RunRecord(
                run_id=run.run_id,
                run_type=str(run.run_type),
                state=str(run.state),
                run_after=run.run_after,
                start_date=run.start_date,
                conf=dict(run.conf or {}),
                task_states=states[run.run_id],
                returns=returns[run.run_id],
            )
            for run in runs
        ]
