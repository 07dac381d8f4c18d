"""Where a number came from: command, commit, versions, backend and hardware, for results/*.json."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from fer_keras import config


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """HEAD commit of the repository holding `folder` (this package by default), '+dirty' if modified."""
    folder = Path(folder or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return os.environ.get("FER_KERAS_COMMIT")
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("FER_KERAS_COMMIT")


def sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (a model a result started from, so the number names exactly which file)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hardware() -> dict:
    """CPU, core count and accelerators visible to the Keras backend."""
    import keras

    info = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "accelerators": []}
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            info["accelerators"] = [str(d) for d in jax.devices() if d.platform != "cpu"]
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                info["accelerators"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        elif backend == "tensorflow":
            import tensorflow as tf

            info["accelerators"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception as err:  # pragma: no cover - diagnostic only
        info["accelerators_error"] = str(err)
    return info


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products; without them bf16 is emulated, and slow


def native_bf16(flags=None) -> bool:
    """True where the CPU has native bf16 dot products (any of BF16_FLAGS). flags: /proc/cpuinfo's flag words
    (default: this CPU's, as cpu() reads them; none off Linux, so float32 stays)."""
    flags = cpu().get("flags", []) if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def cpu_class(flags=None) -> str:
    """The kind of CPU a timed series is tied to: 'amx' (AMX bf16 matrix units), 'avx512_bf16' (native bf16 dot
    products, no AMX) or 'float32' (bf16 emulated: trains in float32). flags as native_bf16's."""
    flags = cpu().get("flags", []) if flags is None else flags
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if native_bf16(flags) else "float32"


def cpu() -> dict:
    """CPU model and the SIMD flags that decide training speed (bf16 is only fast with avx512_bf16/amx_bf16)."""
    info = {"model_name": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model_name": fields.get("model name", info["model_name"]), "family": fields.get("cpu family"),
            "model": fields.get("model"), "flags": [f for f in CPU_FLAGS if f in flags]}


def load() -> dict:
    """What else was running: the 1-minute load average now, and $FER_KERAS_CONCURRENT (what the person
    running the command says ran beside it; timing runs set it to 'nothing')."""
    return {"loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "concurrent": os.environ.get("FER_KERAS_CONCURRENT", "not stated")}


def provenance(command: list[str] | None = None) -> dict:
    """The record every results JSON carries."""
    import keras
    import numpy

    from fer_keras import __version__

    return {
        "command": " ".join(command if command is not None else sys.argv),
        "commit": git_commit(),
        "fer_keras": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "backend": keras.backend.backend(),
        "hardware": hardware() | {"cpu": cpu()},
        "load": load(),
        "allocator": dict(config.ALLOCATOR),
    }
