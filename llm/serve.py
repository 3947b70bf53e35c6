"""`python -m llm.serve DIR`: the LLM service of one `nasloop cycle` run, driven by job files in DIR
(the protocol: `contracts.service`).

It loads the base model at its first generation job and keeps it for every later one, switching the
LoRA adapter per job (`SamplingBackend.use_adapter`); it loads it again only when a job asks for
another model or other engine settings (counted in `service.json`: `model_loads`). A generation job
runs `llm.generate.draw`, so its outputs, resume included, are those of `python -m llm.generate`. A
fine-tuning job runs `accelerate launch -m llm.finetune JOB.json` as a child process, exactly as the
one-shot container did, while the sampling engine sleeps (its GPU memory freed: vLLM's sleep mode,
level 1; the transformers model moved to CPU memory); the next generation job wakes it. Every line of
the child goes to this process's output.

Jobs run one at a time in name order; a job without a final status (a service killed mid-job) is run
again when a service starts on the same directory. The service exits when DIR/stop exists and no job
is pending, or when the host's heartbeat is older than `--host-timeout` seconds (the orchestrator is
gone). Exit status: 0 stopped, 2 bad arguments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from contracts.jobfile import read_job
from contracts.llm import JOB_KINDS, FinetuneJob, GenerateJob, finetune_command
from contracts.service import (DONE, FAILED, FINAL_STATES, JOB_ENDED, JOB_STARTED, RUNNING, JobStatus, ServicePaths,
                               ServiceState, read_status, write_state, write_status)

POLL_SECONDS = 0.2


def engine_key(job: GenerateJob) -> tuple[Any, ...]:
    """What a loaded engine is for: a job that differs in any of these loads the model again."""
    return (job.backend, job.model, job.device, job.batch_size, job.batching, job.max_lora_rank,
            tuple(sorted(asdict(job.decoding).items())))


class Service:
    def __init__(self, root: Path, host_timeout: float | None) -> None:
        self.paths = ServicePaths(Path(root))
        self.host_timeout = host_timeout
        self.engine = None  # a SamplingBackend once a generation job ran
        self.key: tuple[Any, ...] | None = None
        self.model_loads = 0
        self.jobs_done = 0

    def serve(self) -> int:
        # `docker stop` sends SIGTERM to this process, the container's pid 1, which has no default
        # action for it: exit through the `finally` below.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.paths.jobs.mkdir(parents=True, exist_ok=True)
        self.paths.status.mkdir(parents=True, exist_ok=True)
        self._state("idle")
        print(f"serve: ready in {self.paths.root} (pid {os.getpid()})", file=sys.stderr, flush=True)
        try:
            while True:
                name = self._next_job()
                if name is not None:
                    self._run(name)
                    continue
                if self.paths.stop.exists():
                    print("serve: stop requested", file=sys.stderr, flush=True)
                    return 0
                if self._host_gone():
                    print(f"serve: no heartbeat from the host for {self.host_timeout:.0f}s: stopping",
                          file=sys.stderr, flush=True)
                    return 0
                time.sleep(POLL_SECONDS)
        finally:
            self._close_engine()
            self._state("stopped")

    def _next_job(self) -> str | None:
        for name in self.paths.job_names():
            try:
                status = read_status(self.paths, name)
            except ValueError:
                status = None  # a status cut short by a killed service: run the job again
            if status is None or status.state not in FINAL_STATES:
                return name
        return None

    def _host_gone(self) -> bool:
        if self.host_timeout is None:
            return False
        try:
            age = time.time() - self.paths.heartbeat.stat().st_mtime
        except FileNotFoundError:
            return False  # a host that never beats (a service driven by hand)
        return age > self.host_timeout

    def _run(self, name: str) -> None:
        started = time.time()
        print(f"{JOB_STARTED}{name}", file=sys.stderr, flush=True)
        write_status(self.paths, JobStatus(job=name, kind="unknown", state=RUNNING, started=started))
        kind, exit_code, error, summary = "unknown", 1, None, {}
        try:
            job = read_job(self.paths.job_file(name), JOB_KINDS)
            kind = type(job).__name__
            write_status(self.paths, JobStatus(job=name, kind=kind, state=RUNNING, started=started))
            self._state("busy")
            if isinstance(job, GenerateJob):
                summary = self._generate(job)
                exit_code = 0
            else:
                exit_code = self._finetune(name, job)
                error = None if exit_code == 0 else f"llm.finetune exited with status {exit_code}"
        except Exception as exc:  # noqa: BLE001 - every failure is the job's status, the service goes on
            from llm.models import ModelNotFound

            exit_code = 2 if isinstance(exc, (ValueError, FileNotFoundError, ModelNotFound)) else 1
            error = f"{type(exc).__name__}: {exc}"
            print(f"error: {error}", file=sys.stderr, flush=True)
            if exit_code == 1:
                traceback.print_exc()
                self._close_engine()  # its state is unknown after an unexpected error: load afresh
        state = DONE if exit_code == 0 else FAILED
        self.jobs_done += 1
        write_status(self.paths, JobStatus(job=name, kind=kind, state=state, exit_code=exit_code, error=error,
                                           started=started, finished=time.time(), summary=summary))
        print(f"{JOB_ENDED}{name} {state}", file=sys.stderr, flush=True)
        self._state("sleeping" if kind == "FinetuneJob" and self.engine is not None else "idle")

    def _generate(self, job: GenerateJob) -> dict[str, Any]:
        from llm.generate import draw, load_backend

        start = time.perf_counter()
        key = engine_key(job)
        if self.engine is None or key != self.key:
            self._close_engine()
            self.engine = load_backend(job, keep_base=True)
            self.key = key
            self.model_loads += 1
            self._state("busy")
            reused = False
        else:
            print(f"model: {job.model} already loaded"
                  + (f", adapter {job.adapter}" if job.adapter else ", base model"), file=sys.stderr, flush=True)
            self.engine.wake()  # first: the adapter is merged where a freshly loaded model would merge it
            self.engine.use_adapter(job.adapter)
            reused = True
        return draw(self.engine, job, load_seconds=time.perf_counter() - start,
                    extra={"service": {"model_loads": self.model_loads, "engine_reused": reused}})

    def _finetune(self, name: str, job: FinetuneJob) -> int:
        if self.engine is not None:
            print("serve: the sampling engine sleeps while the fine-tune runs", file=sys.stderr, flush=True)
            self.engine.sleep()
            self._state("sleeping")
        del job  # the child reads the job file itself
        command = finetune_command(sys.executable, str(self.paths.job_file(name)))
        return subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr).returncode

    def _close_engine(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
            self.key = None

    def _state(self, state: str) -> None:
        write_state(self.paths, ServiceState(state=state, pid=os.getpid(), model_loads=self.model_loads,
                                             jobs_done=self.jobs_done,
                                             engine=self.engine.describe() if self.engine is not None else None,
                                             updated=time.time()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    host_timeout: float | None = None
    if len(args) == 3 and args[1] == "--host-timeout":
        host_timeout = float(args[2])
        args = args[:1]
    if len(args) != 1:
        print("usage: python -m llm.serve DIR [--host-timeout SECONDS]", file=sys.stderr)
        return 2
    return Service(Path(args[0]), host_timeout).serve()


if __name__ == "__main__":
    sys.exit(main())
