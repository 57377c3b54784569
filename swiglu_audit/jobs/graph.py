"""The audit's expensive work as a graph of jobs: what each job is, what it waits for, what it is
estimated to cost, and what the graph as a whole takes on k workers.

A job is a unit that writes cache entries (a model's clean trainings, or one suite's
measurements of one model, which train the suite's own models first); the pytest items read those
entries and judge. Torch-free: the plan prints the graph and the executors run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    suite: str  # "training" for a model's clean trainings; else the suite whose measurements these are
    seconds: float  # the plan's estimate (0 where the plan could not time the model)
    cached: bool = False  # every cache entry the job writes is already there (known for trainings)
    deps: tuple[str, ...] = field(default_factory=tuple)
    part: str = ""  # a part of the suite's job that runs on its own first (one poisoned set, say)
    # whether the model's trainings stack, as the graph's builder chose (None: not known, each
    # process chooses): a worker follows it, so it trains, and splits the job into parts, the same way
    stack: bool | None = None


class JobGraph:
    def __init__(self, jobs: list[Job]):
        self.jobs = {job.id: job for job in jobs}
        if len(self.jobs) != len(jobs):
            raise ValueError("two jobs share an id")
        for job in jobs:
            for dep in job.deps:
                if dep not in self.jobs:
                    raise ValueError(f"job {job.id} waits for {dep}, which is not in the graph")
        self.order = self._topological()

    def _topological(self) -> list[str]:
        """Every job after the jobs it waits for (ties in the order they were declared)."""
        done: list[str] = []
        seen: set[str] = set()
        visiting: set[str] = set()

        def visit(job_id: str) -> None:
            if job_id in seen:
                return
            if job_id in visiting:
                raise ValueError(f"the jobs wait for each other in a circle through {job_id}")
            visiting.add(job_id)
            for dep in self.jobs[job_id].deps:
                visit(dep)
            visiting.discard(job_id)
            seen.add(job_id)
            done.append(job_id)

        for job_id in self.jobs:
            visit(job_id)
        return done

    def remaining(self, job: Job) -> float:
        return 0.0 if job.cached else job.seconds

    def total_seconds(self) -> float:
        return sum(self.remaining(job) for job in self.jobs.values())

    def critical_path(self) -> tuple[float, list[str]]:
        """(seconds, job ids) of the longest chain of dependent jobs: no number of workers
        finishes the graph sooner."""
        finish: dict[str, float] = {}
        via: dict[str, str | None] = {}
        for job_id in self.order:
            job = self.jobs[job_id]
            before = max(job.deps, key=lambda d: finish[d], default=None)
            finish[job_id] = (finish[before] if before else 0.0) + self.remaining(job)
            via[job_id] = before
        if not finish:
            return 0.0, []
        last: str | None = max(finish, key=lambda j: finish[j])
        path = []
        while last is not None:
            path.append(last)
            last = via[last]
        return finish[path[0]], path[::-1]

    def ideal_seconds(self, workers: int) -> float:
        """The wall time on `workers` workers that share the work perfectly: the larger of the
        critical path and the total divided among them (a lower bound a scheduler approaches)."""
        return max(self.critical_path()[0], self.total_seconds() / max(1, workers))

    def to_dict(self) -> dict:
        seconds, path = self.critical_path()
        return {"jobs": len(self.jobs), "cached": sum(j.cached for j in self.jobs.values()),
                "estimated_seconds": round(self.total_seconds(), 1),
                "critical_path_seconds": round(seconds, 1), "critical_path": path,
                "by_suite": _count_by(self.jobs.values())}

    def lines(self, workers: tuple[int, ...] = (1, 2, 8, 32)) -> list[str]:
        seconds, path = self.critical_path()
        counts = ", ".join(f"{n} {suite}" for suite, n in _count_by(self.jobs.values()).items())
        cached = sum(j.cached for j in self.jobs.values())
        return [f"  job graph: {len(self.jobs)} jobs ({counts}; {cached} cached); critical path "
                f"{seconds:.0f} s ({' -> '.join(path)})",
                "  ideal wall time on " + ", ".join(f"{k} worker(s) {self.ideal_seconds(k):.0f} s" for k in workers)]


def _count_by(jobs) -> dict[str, int]:
    out: dict[str, int] = {}
    for job in jobs:
        kind = f"{job.suite} parts" if job.part else job.suite
        out[kind] = out.get(kind, 0) + 1
    return out
