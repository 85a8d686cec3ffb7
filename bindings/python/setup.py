"""Build hook: bundles the built libstopper.so.0 into the package.

The library is taken from $STOPPER_LIBDIR, or else from ../../build/lib (the repository's
`make lib` output).  The install fails with a clear message when it has not been built.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = "libstopper.so.0"


def find_library() -> str:
    libdir = os.environ.get("STOPPER_LIBDIR") or os.path.join(HERE, "..", "..", "build", "lib")
    path = os.path.realpath(os.path.join(libdir, LIB))
    if not os.path.isfile(path):
        raise SystemExit(
            f"stopper: {os.path.join(libdir, LIB)} not found: build the native library first "
            "(`make lib` at the repository root), or set STOPPER_LIBDIR to the directory "
            f"that holds {LIB}."
        )
    return path


class BuildPyWithLibrary(build_py):
    def run(self) -> None:
        src = find_library()
        super().run()
        dest_dir = os.path.join(self.build_lib, "stopper")
        os.makedirs(dest_dir, exist_ok=True)
        shutil.copyfile(src, os.path.join(dest_dir, LIB))
        os.chmod(os.path.join(dest_dir, LIB), 0o755)


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
