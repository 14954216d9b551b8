"""Job files: YAML descriptions of a pipeline, validated, with secrets from the environment.

``load_job(path)`` reads and validates a file; ``build_job(job)`` constructs its stages;
``run_job(path)`` does both and runs the pipeline. See ``docs/concepts/jobs.md``.
"""

from etlsync.jobs.build import BuiltJob, build_job
from etlsync.jobs.env import Redactor
from etlsync.jobs.registry import register, unregister
from etlsync.jobs.runner import DryRun, JobResult, dry_run, run_job
from etlsync.jobs.spec import DEFAULT_CHECKPOINT, Job, JobSpec, load_job, parse_job

__all__ = [
    "DEFAULT_CHECKPOINT", "BuiltJob", "DryRun", "Job", "JobResult", "JobSpec", "Redactor",
    "build_job", "dry_run", "load_job", "parse_job", "register", "run_job", "unregister",
]
