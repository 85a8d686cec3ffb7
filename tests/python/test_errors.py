"""Bad input: clear TypeError/ValueError; missing or mismatched library: ImportError."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import stopper
from conftest import run_python


@pytest.mark.parametrize("bad", ["1", [], object(), True])
def test_wait_timeout_type(bad):
    with pytest.raises(TypeError, match="timeout"):
        stopper.Stopper().wait(bad)


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan")])
def test_wait_timeout_value(bad):
    with pytest.raises(ValueError, match="timeout"):
        stopper.Stopper().wait(bad)


def test_stop_reason_checks():
    s = stopper.Stopper()
    with pytest.raises(TypeError, match="reason"):
        s.stop(1.5)
    with pytest.raises(TypeError):
        s.stop("1")
    with pytest.raises(ValueError, match="32 bits"):
        s.stop(2**31)
    assert not s.is_set()


def test_stop_after_checks():
    s = stopper.Stopper()
    with pytest.raises(ValueError):
        s.stop_after(-1)
    with pytest.raises(TypeError):
        s.stop_after("soon")
    with pytest.raises(TypeError):
        s.stop_after(1, reason=None)
    assert s.remaining() is None


def test_on_stop_needs_callable():
    with pytest.raises(TypeError, match="callable"):
        stopper.Stopper().on_stop(3)


def test_fd_arguments():
    s = stopper.Stopper()
    with pytest.raises(TypeError):
        s.wait_readable(1.5)
    with pytest.raises(TypeError):
        s.wait_readable(object())
    with pytest.raises(ValueError):
        s.wait_readable(-3)
    with pytest.raises(ValueError):
        s.wait_writable(0, timeout=-1)


def test_wait_any_arguments():
    with pytest.raises(TypeError):
        stopper.wait_any(stopper.Stopper())
    with pytest.raises(TypeError):
        stopper.wait_any([stopper.Stopper(), 2.0])
    with pytest.raises(TypeError):
        stopper.wait_any(5)
    with pytest.raises(ValueError):
        stopper.wait_any([stopper.Stopper()], -2)


def test_not_picklable():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(stopper.Stopper())


def test_missing_library_import_error():
    rc, out, err = run_python("import stopper", env={"STOPPER_LIBRARY": "/nonexistent/libstopper.so.0"})
    assert rc != 0
    assert "ImportError" in err
    assert "/nonexistent/libstopper.so.0" in err
    assert "ABI version 0.1" in err


def test_not_a_stopper_library_import_error():
    rc, out, err = run_python("import stopper", env={"STOPPER_LIBRARY": "libc.so.6"})
    assert rc != 0 and "ImportError" in err and "stopper_abi_version" in err


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_abi_mismatch_import_error(tmp_path):
    src = tmp_path / "fake.c"
    src.write_text("unsigned stopper_abi_version(void) { return 7u << 16; }\n")
    lib = tmp_path / "libstopper.so.0"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    rc, out, err = run_python("import stopper", env={"STOPPER_LIBRARY": str(lib)})
    assert rc != 0
    assert "ImportError" in err and "ABI version 7.0" in err and str(lib) in err


def test_env_override_loads_that_library():
    path = stopper.library_path()
    rc, out, err = run_python("import stopper; print(stopper.library_path())", env={"STOPPER_LIBRARY": path})
    assert rc == 0 and out.strip() == path


def test_library_is_bundled_beside_the_package():
    here = os.path.dirname(stopper.__file__)
    assert os.path.isfile(os.path.join(here, "libstopper.so.0"))
    assert os.path.isfile(os.path.join(here, "py.typed"))
    assert stopper.library_path() == os.path.join(here, "libstopper.so.0")


def test_install_fails_clearly_without_built_library(tmp_path):
    root = os.environ.get("STOPPER_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    src = tmp_path / "src"
    shutil.copytree(os.path.join(root, "bindings", "python"), src, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so*"))
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(tmp_path / "w"), str(src)],
        capture_output=True,
        text=True,
        env=dict(os.environ, STOPPER_LIBDIR=str(tmp_path / "nowhere")),
        timeout=120,
    )
    assert p.returncode != 0
    assert "libstopper.so.0 not found" in p.stdout + p.stderr
    assert "make lib" in p.stdout + p.stderr
