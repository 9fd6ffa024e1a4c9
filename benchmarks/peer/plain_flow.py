"""The peer of benchmarks/overhead.py: a plain three-task Prefect flow that does nothing."""

from prefect import flow, task


@task
def pre() -> int:
    return 1


@task
def main(value: int) -> int:
    return value + 1


@task
def post(value: int) -> int:
    return value + 1


@flow(name="plain-three-tasks", persist_result=False)
def plain_three_tasks() -> int:
    return post(main(pre()))
