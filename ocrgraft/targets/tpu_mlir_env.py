"""TPU-MLIR's own Python 3.10 environment: found or set up once in a cache folder, then reused.

TPU-MLIR (the `tpu-mlir` wheel on PyPI) ships a CPython 3.10 extension (`pymlir.cpython-310-...so`), so
it cannot share ocrgraft's interpreter. On first use this module creates a venv with a Python 3.10
found on the machine, installs the pinned toolchain, applies the two fixes it needs here, checks it,
and writes a marker file last. A folder without the marker (an interrupted earlier attempt) is
wiped and set up again; one with a marker for the same pinned set is reused as it is.

    ~/.cache/ocrgraft/tpu-mlir-1.30.2/      (or $OCRGRAFT_TPU_MLIR_HOME)
        venv/         the toolchain's Python 3.10 environment
        setup.log     pip's full output from the last setup
        moved-glibc/  the bundled glibc 2.35 libraries taken out of the package (fix 1)
        READY         marker: what was installed, written when everything else is done

The fixes:
1. The wheel bundles Ubuntu 22.04's glibc (libc.so.6, libm.so.6, libpthread.so.0) in
   tpu_mlir/lib/third_party and puts that folder first on LD_LIBRARY_PATH for every tool, so the
   tools fail on a newer system ("version `GLIBC_2.36' not found"). The three files are moved out,
   and the system's glibc is used.
2. The ONNX front end (transform/OnnxOpt.py) imports torch and model_transform imports psutil;
   neither is a declared dependency. The real packages are installed (PyPI's cp310 torch is the
   CUDA build, several GB; it runs on the CPU).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.progress import busy

TPU_MLIR_VERSION = "1.30.2"
# Everything installed into the toolchain venv, pinned. torch and psutil are imported by TPU-MLIR's
# ONNX path without being declared; the [onnx] extra brings onnx 1.14.1, onnxruntime 1.16.3, onnxsim.
REQUIREMENTS = (f"tpu-mlir[onnx]=={TPU_MLIR_VERSION}", "psutil==7.2.2", "torch==2.11.0")
BUNDLED_GLIBC = ("libc.so.6", "libm.so.6", "libpthread.so.0")
SETUP_REVISION = 1  # bump when the setup steps change, so old caches are rebuilt
HOME_ENV = "OCRGRAFT_TPU_MLIR_HOME"
PYTHON_ENV = "OCRGRAFT_PYTHON310"

Progress = Callable[[str], None]


def default_home() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ocrgraft" / f"tpu-mlir-{TPU_MLIR_VERSION}"


def _spec(python: str) -> dict:
    return {
        "tpu_mlir": TPU_MLIR_VERSION,
        "requirements": list(REQUIREMENTS),
        "revision": SETUP_REVISION,
        "base_python": python,
    }


# ---------------------------------------------------------------------------------------- Python 3.10


def _python_candidates() -> list[tuple[str, str]]:
    """(path, where it came from), most specific first."""
    found: list[tuple[str, str]] = []
    if os.environ.get(PYTHON_ENV):
        found.append((os.environ[PYTHON_ENV], f"${PYTHON_ENV}"))
    for name in ("python3.10",):
        path = shutil.which(name)
        if path:
            found.append((path, "PATH"))
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        roots.append(Path(pyenv).resolve().parent.parent)
    roots += [Path.home() / ".pyenv", Path("/opt/pyenv"), Path("/usr/local/pyenv")]
    for root in dict.fromkeys(roots):
        versions = sorted((root / "versions").glob("3.10*"), key=_version_key, reverse=True)
        for v in versions:
            found.append((str(v / "bin" / "python3.10"), f"pyenv {root}"))
    for prefix in ("/usr/local/bin", "/usr/bin"):
        found.append((f"{prefix}/python3.10", prefix))
    return found


def _version_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.\-]", path.name))


def find_python310() -> str:
    """A Python 3.10 interpreter that can make venvs, or an error naming every place looked at."""
    tried = []
    for path, _where in dict.fromkeys(_python_candidates()):
        if not os.path.isfile(path):
            continue
        try:
            out = subprocess.run(
                [path, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{path} ({exc.__class__.__name__})")
            continue
        version = out.stdout.strip()
        if out.returncode == 0 and version == "3.10":
            return path
        tried.append(f"{path} ({'Python ' + version if version else 'no venv/ensurepip'})")
    looked = "; ".join(tried) or "python3.10 on PATH, $PYENV_ROOT/versions/3.10*, ~/.pyenv/versions/3.10*"
    raise OcrgraftError(
        f"the sophon target needs Python 3.10 for TPU-MLIR {TPU_MLIR_VERSION} (its wheel is "
        f"cpython-310 only), and none was found (looked at: {looked}); install one "
        f"(e.g. `pyenv install 3.10`) or set {PYTHON_ENV}=/path/to/python3.10"
    )


# ---------------------------------------------------------------------------------------- toolchain


@dataclass
class Toolchain:
    """A ready TPU-MLIR environment: run its tools as subprocesses with their logs kept."""

    home: Path

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def package(self) -> Path:
        return Path(next((self.venv / "lib").glob("python3.10/site-packages/tpu_mlir")))

    def env(self) -> dict[str, str]:
        """The caller's environment without anything that would leak ocrgraft's Python 3.11 into the tools."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONSTARTUP")
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PYTHONNOUSERSITE"] = "1"
        env.setdefault("OMP_NUM_THREADS", str(max(1, min(4, os.cpu_count() or 1))))
        return env

    def tool(self, name: str) -> str:
        path = self.bin / name
        if not path.exists():
            raise OcrgraftError(
                f"TPU-MLIR tool '{name}' is missing from {self.bin}; delete {self.home} to set it up again"
            )
        return str(path)

    def run(
        self, args: list[str], *, cwd: Path, log: Path, what: str, timeout: float = 3600, clock: bool = True
    ) -> str:
        """Run one tool; its combined output goes to `log`; a failure raises with the telling line.
        On a terminal a running clock shows which tool runs (`clock`: off for tools run in parallel)."""
        t = time.perf_counter()
        with open(log, "w") as fh, busy(f"    {what}", line=False) if clock else nullcontext():
            fh.write("$ " + " ".join(args) + "\n")
            fh.flush()
            try:
                proc = subprocess.run(
                    args,
                    cwd=cwd,
                    env=self.env(),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise OcrgraftError(f"{what} did not finish in {timeout:.0f}s (log: {log})") from None
            fh.write(f"\n# exit {proc.returncode} after {time.perf_counter() - t:.1f}s\n")
        text = log.read_text(errors="replace")
        if proc.returncode != 0:
            raise OcrgraftError(
                f"{what} failed (exit {proc.returncode}): {explain_failure(text)} (log: {log})"
            )
        return text


def explain_failure(log_text: str) -> str:
    """The line of a tool log that says why it failed."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    patterns = (
        r"Op not support",
        r"ASSERT",
        r"Not Implemented",
        r"npz compare FAILED",
        r"Error:",
        r"error:",
        r"Exception",
        r"RuntimeError",
        r"not found",
    )
    for pat in patterns:
        hits = [ln for ln in lines if re.search(pat, ln) and not ln.startswith("$ ")]
        if hits:
            return " ".join(hits[-1].split())[:300]
    return " ".join(lines[-1].split())[:300] if lines else "no output"


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ready(home: Path | None = None) -> Toolchain | None:
    """The toolchain if a finished setup is in the cache, else None (sets nothing up)."""
    home = home or default_home()
    marker = home / "READY"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    wanted = _spec(info.get("base_python", ""))
    if any(info.get(k) != wanted[k] for k in ("tpu_mlir", "requirements", "revision")):
        return None
    tc = Toolchain(home)
    if not (tc.python.exists() and os.path.exists(os.path.realpath(tc.python))):
        return None  # the base interpreter the venv points at is gone
    return tc


def ensure(home: Path | None = None, progress: Progress = print) -> Toolchain:
    """The ready toolchain, setting it up first if needed (minutes and several GB the first time)."""
    home = home or default_home()
    tc = ready(home)
    if tc:
        return tc
    with _flock(home.parent / f".{home.name}.lock"):
        tc = ready(home)  # another process may have finished it while we waited
        if tc:
            return tc
        return _setup(home, progress)


def _setup(home: Path, progress: Progress) -> Toolchain:
    t0 = time.perf_counter()
    python = find_python310()
    tc = Toolchain(home)
    if home.exists() and any(home.iterdir()):
        strange = sorted(p.name for p in home.iterdir() if p.name not in _OWN_ENTRIES)
        if strange:  # never wipe a folder this module did not make
            raise OcrgraftError(
                f"{home} is not an ocrgraft TPU-MLIR cache (it holds {', '.join(strange[:5])}); "
                f"point {HOME_ENV} at an empty or new folder"
            )
        progress(f"sophon toolchain: {home} holds an unfinished or outdated setup; starting it again")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    progress(
        f"sophon toolchain: first use; setting up TPU-MLIR {TPU_MLIR_VERSION} in {home} with {python} "
        "(several GB, a few minutes; later runs reuse it)"
    )
    _step([python, "-m", "venv", str(tc.venv)], "creating the Python 3.10 venv", home, progress)
    _step(
        [str(tc.python), "-m", "pip", "install", "--progress-bar", "off", "--upgrade", "pip"],
        "upgrading pip",
        home,
        progress,
    )
    _step(
        [str(tc.python), "-m", "pip", "install", "--progress-bar", "off", *REQUIREMENTS],
        f"installing {', '.join(REQUIREMENTS)}",
        home,
        progress,
        echo=True,
    )
    moved = home / "moved-glibc"
    moved.mkdir(exist_ok=True)
    third_party = tc.package / "lib" / "third_party"
    for lib in BUNDLED_GLIBC:
        if (third_party / lib).exists():
            shutil.move(str(third_party / lib), str(moved / lib))
    progress(f"sophon toolchain: moved the bundled glibc ({', '.join(BUNDLED_GLIBC)}) out of {third_party}")
    check = _step([str(tc.python), "-c", _SMOKE], "checking the toolchain", home, progress, env=tc.env())
    versions = json.loads(check.strip().splitlines()[-1])
    _step(
        [tc.tool("model_transform"), "--help"], "running model_transform --help", home, progress, env=tc.env()
    )
    info = _spec(python) | {
        "versions": versions,
        "setup_seconds": round(time.perf_counter() - t0, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = home / "READY.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, home / "READY")
    progress(f"sophon toolchain: ready in {time.perf_counter() - t0:.0f}s ({versions})")
    return tc


_OWN_ENTRIES = {"venv", "setup.log", "moved-glibc", "READY", "READY.tmp"}

_SMOKE = """
import json, importlib.metadata as md
import tpu_mlir, torch, psutil, onnx, onnxruntime
print(json.dumps({p: md.version(p) for p in ("tpu_mlir", "torch", "onnx", "onnxruntime", "numpy")}))
"""


def _step(
    args: list[str], what: str, home: Path, progress: Progress, echo: bool = False, env: dict | None = None
) -> str:
    progress(f"sophon toolchain: {what}")
    t = time.perf_counter()
    log = home / "setup.log"
    out: list[str] = []
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(args)}\n")
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            out.append(line)
            if echo and line.startswith(
                ("Collecting", "Downloading", "Installing collected", "Successfully")
            ):
                progress("  " + line.rstrip()[:160])
        rc = proc.wait()
    if rc != 0:
        tail = " ".join("".join(out[-3:]).split())[:300]
        raise OcrgraftError(
            f"sophon toolchain setup failed while {what} (exit {rc}): {tail} "
            f"(full log: {log}; the next run starts the setup again)"
        )
    progress(f"sophon toolchain: {what}: done in {time.perf_counter() - t:.0f}s")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """`make sophon-toolchain`: set up (or find) the toolchain and say where it is."""
    try:
        tc = ensure(progress=lambda m: print(m, flush=True))
    except OcrgraftError as exc:
        print(f"ocrgraft: error: {exc}", file=sys.stderr)
        return 1
    info = json.loads((tc.home / "READY").read_text())
    print(f"TPU-MLIR {TPU_MLIR_VERSION} toolchain ready at {tc.home} ({info.get('versions')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
