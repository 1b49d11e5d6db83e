"""Many inputs through a BModel (TPU-MLIR's chip simulator) or a lowered `*_final.mlir` (its
interpreter), split into shares: processes on this machine's cores, or, inside Ray (a matrix cell),
Ray tasks wherever the cluster has a core free, so one long accuracy evaluation spreads over the cluster.

Each share runs in one process (templates/simulate_many.py), which pays TPU-MLIR's start-up once.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.progress import steps
from ocrgraft.targets import tpu_mlir_env

POLL_S = 1  # how often the simulator's finished outputs are counted
RAY_SHARE = 8  # inputs per Ray task when a matrix cell's simulator runs spread over a cluster
SIMULATE_MANY = Path(__file__).parent / "templates" / "simulate_many.py"


def simulate(tc, work: Path, program: str, chip: str, inputs: list[dict]) -> tuple[list[dict], str]:
    """`program` (a file in `work`) on every input: its raw outputs by TPU-MLIR's names, and where they
    ran. A final.mlir needs its weight file beside it, so only BModels leave this machine."""
    if program.endswith(".bmodel") and _in_ray():
        return _simulate_on_ray(work / program, chip, inputs)
    return _simulate_here(tc, work, program, chip, inputs)


def _in_ray() -> bool:
    ray = sys.modules.get("ray")  # never imported for this question: only a Ray worker has it loaded
    return ray is not None and ray.is_initialized()


def _simulate_here(tc, work: Path, program: str, chip: str, inputs: list[dict]) -> tuple[list[dict], str]:
    """Split over this machine's cores, each share in one process, in `work` (beside the program)."""
    folder = work / "eval"
    shutil.rmtree(folder, ignore_errors=True)
    names = _write_inputs(folder, inputs)
    workers = max(1, min(os.cpu_count() or 1, len(inputs)))

    def run(w: int) -> None:
        share = [f"eval/{n}" for n in names[w::workers]]
        _run_share(tc, work, program, "eval/out", share, folder / f"simulate_{w}.log", chip)

    with (
        concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool,
        steps(f"{program} on the simulator", len(inputs), "input") as bar,
    ):
        running = [pool.submit(run, w) for w in range(workers)]
        while True:  # count the outputs written while the simulator works through the inputs
            done, pending = concurrent.futures.wait(running, timeout=POLL_S)
            bar.advance(sum(1 for _ in (folder / "out").glob("*.npz")) - bar.done)
            if not pending:
                break
        for future in done:
            future.result()  # a failed share raises here
    raw = _read_outputs(folder / "out", names)
    shutil.rmtree(folder, ignore_errors=True)
    return raw, f"{workers} process(es) here"


def _write_inputs(folder: Path, inputs: list[dict]) -> list[str]:
    """Each input as folder/in_NNNNN.npz (and folder/out/ for the outputs); the file names."""
    (folder / "out").mkdir(parents=True)
    names = [f"in_{i:05d}.npz" for i in range(len(inputs))]
    for name, feeds in zip(names, inputs):
        np.savez(folder / name, **feeds)
    return names


def _run_share(tc, cwd: Path, program: str, out: str, inputs: list[str], log: Path, chip: str) -> None:
    """templates/simulate_many.py: the inputs through `program` in one process, out/<input name> each."""
    tc.run(
        [str(tc.python), str(SIMULATE_MANY), program, out, *inputs],
        cwd=cwd,
        log=log,
        what=f"the {chip} simulator on {len(inputs)} input(s)",
        timeout=120 + 60 * len(inputs),
        clock=False,
    )


def _read_outputs(out: Path, names: list[str]) -> list[dict]:
    raw = []
    for name in names:
        with np.load(out / name) as z:
            raw.append({k: z[k] for k in z.files})
    return raw


def _simulate_on_ray(bmodel: Path, chip: str, inputs: list[dict]) -> tuple[list[dict], str]:
    """Shares of at most RAY_SHARE inputs, one Ray task (one core) each, wherever the cluster has room;
    the BModel travels once through Ray's object store."""
    import ray

    size = max(1, min(RAY_SHARE, -(-len(inputs) // max(1, int(ray.cluster_resources().get("CPU", 1))))))
    starts = range(0, len(inputs), size)
    program = ray.put(bmodel.read_bytes())
    task = ray.remote(num_cpus=1)(_simulate_share)
    pending = {task.remote(program, bmodel.name, chip, inputs[s : s + size]): s for s in starts}
    got: dict[int, list[dict]] = {}
    with steps(f"{bmodel.name} on the simulator (Ray)", len(inputs), "input") as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            start = pending.pop(done[0])
            try:
                got[start] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # the share's own error, without Ray's wrapping
                cause = exc.cause
                if not isinstance(cause, OcrgraftError):
                    cause = OcrgraftError(f"the {chip} simulator on Ray: {type(cause).__name__}: {cause}")
                raise cause from None
            bar.advance(len(got[start]))
    return [out for s in starts for out in got[s]], f"{len(starts)} Ray task(s)"


def _simulate_share(program: bytes, name: str, chip: str, inputs: list[dict]) -> list[dict]:
    """One share of inputs through a BModel in one simulator process, in a folder of its own (a Ray
    task, possibly on another machine with its own TPU-MLIR environment)."""
    import tempfile

    tc = tpu_mlir_env.ensure(progress=lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="ocrgraft-simulate-") as tmp:
        folder = Path(tmp)
        (folder / name).write_bytes(program)
        names = _write_inputs(folder, inputs)
        _run_share(tc, folder, name, "out", names, folder / "simulate.log", chip)
        return _read_outputs(folder / "out", names)
