"""The audit's expensive work as a job graph (graph.py), the jobs the suites declare
(audit_jobs.py), and the executors that run it: local processes or a Ray cluster (executors.py)."""
