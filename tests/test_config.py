"""config: the allocator setting applied at import (config.tune_allocator), and fold names (parse_fold)."""

import platform
import subprocess
import sys

import pytest

from fer_keras import config

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _import_state(env_value: str | None) -> subprocess.CompletedProcess:
    """Import fer_keras in a fresh process with $FER_KERAS_MALLOC_TOP_PAD set (or unset) and print its state."""
    import os

    env = {k: v for k, v in os.environ.items() if k != config.MALLOC_ENV}
    if env_value is not None:
        env[config.MALLOC_ENV] = env_value
    code = "import fer_keras, fer_keras.config as c; print(c.ALLOCATOR['allocator'], c.ALLOCATOR['malloc_top_pad'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


@pytest.mark.skipif(not GLIBC, reason="M_TOP_PAD is a glibc setting; elsewhere tune_allocator is a no-op")
def test_importing_fer_keras_sets_the_top_pad_and_zero_leaves_glibc_alone():
    assert _import_state(None).stdout.split() == ["glibc", str(config.MALLOC_TOP_PAD)]
    assert _import_state("0").stdout.split() == ["default", "None"]
    assert _import_state("67108864").stdout.split() == ["glibc", "67108864"]


@pytest.mark.skipif(not GLIBC, reason="M_TOP_PAD is a glibc setting")
def test_a_bad_top_pad_value_is_one_line_and_the_default_is_used():
    done = _import_state("lots")
    assert done.stdout.split() == ["glibc", str(config.MALLOC_TOP_PAD)]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and config.MALLOC_ENV in lines[0] and "Fix:" in lines[0] and "Traceback" not in done.stderr


def test_tune_allocator_reports_what_it_did_and_provenance_carries_it():
    state = config.tune_allocator(0)
    assert state == {"allocator": "default", "malloc_top_pad": None} and config.ALLOCATOR == state
    state = config.tune_allocator(config.MALLOC_TOP_PAD)
    assert state["allocator"] == ("glibc" if GLIBC else "default") and config.ALLOCATOR == state
    from fer_keras import provenance

    assert provenance.provenance(["x"])["allocator"] == state


def test_parse_fold_reads_i_of_k_and_refuses_the_rest_in_one_line():
    assert config.parse_fold("1/3") == (1, 3) and config.parse_fold("0/2") == (0, 2)
    for bad in ("3/3", "1", "a/b", "0/1", "-1/2"):
        with pytest.raises(ValueError, match="write (it as )?I/K"):
            config.parse_fold(bad)
