"""Build script: compiles libstopper with cargo (through setuptools-rust) into the package.

The Rust crate lives at the repository root, two directories up.  An sdist carries a copy of
it under ``rust/`` (see ``SdistWithCrate``), so the same script builds from a checkout and from
an unpacked sdist.  The library lands beside the package's modules as ``libstopper.so.0``, the
name ``stopper._native`` looks for.

Environment:
  STOPPER_LIBDIR    use the ``libstopper.so.0`` already built there instead of running cargo
                    (the repository's Makefile sets it to ``build/lib`` after ``make lib``).
  CARGO_TARGET_DIR  cargo's output directory (default in a checkout: build/cargo-python at the
                    repository root, shared with `make wheel`; in an sdist: cargo's own).
  CARGO             the cargo to run (default: ``cargo`` on PATH).
"""

import os
import shutil
from typing import NoReturn, Optional

from setuptools import setup
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, Strip
from setuptools_rust.build import build_rust

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 (pyproject.toml asks for newer; kept for old pips)
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
#: File name of the bundled library; stopper._native.LIBRARY_FILE must say the same.
LIBRARY_FILE = "libstopper.so.0"
#: What cargo needs to build the crate, relative to the crate's root (copied into an sdist).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "include/stopper.h"]
CRATE_DIRS = ["src"]
CRATE_OPTIONAL = ["LICENSE", "LICENSE-MIT", "LICENSE-APACHE"]
SDIST_CRATE = "rust"


def find_crate() -> Optional[str]:
    """The crate beside us in an sdist, or else the repository root of a checkout."""
    for root in (os.path.join(HERE, SDIST_CRATE), os.path.join(HERE, "..", "..")):
        if os.path.isfile(os.path.join(root, "Cargo.toml")):
            return os.path.normpath(root)
    return None


def crate_root() -> str:
    root = find_crate()
    if root is None:
        fail(
            f"stopper: the Rust crate was not found ({SDIST_CRATE}/Cargo.toml or "
            "../../Cargo.toml): build from a checkout of the repository or from the sdist"
        )
    return root


def fail(message: str) -> NoReturn:
    """Stops the build with one line on stderr (pip shows it as the error)."""
    raise SystemExit(f"error: {message}")


class BuildNativeLibrary(build_rust):
    """setuptools-rust's build_rust, with the library named as the loader expects."""

    def run(self) -> None:
        libdir = os.environ.get("STOPPER_LIBDIR")
        if libdir:
            self.copy_prebuilt(os.path.join(libdir, LIBRARY_FILE))
            return
        root = crate_root()
        if root != os.path.join(HERE, SDIST_CRATE) and "CARGO_TARGET_DIR" not in os.environ:
            # A checkout: share the build with `make wheel` and keep clear of `make lib`'s
            # target/ (a cdylib-only build there would make each of them rebuild the other's).
            os.environ["CARGO_TARGET_DIR"] = os.path.join(root, "build", "cargo-python")
        cargo = os.environ.get("CARGO", "cargo")
        if shutil.which(cargo) is None or shutil.which("rustc") is None:
            fail(
                "stopper: cargo is needed to build the native library libstopper "
                "(install Rust from https://rustup.rs and put cargo and rustc on PATH)"
            )
        super().run()

    def copy_prebuilt(self, path: str) -> None:
        if not os.path.isfile(path):
            fail(
                f"stopper: {path} not found (STOPPER_LIBDIR is set: build it with `make lib` "
                "at the repository root, or unset STOPPER_LIBDIR to build it with cargo)"
            )
        dest = self.get_dylib_ext_path(self.extensions[0], self.extensions[0].name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.realpath(path), dest)
        os.chmod(dest, 0o755)

    def get_dylib_ext_path(self, ext: RustExtension, target_fname: str) -> str:
        # setuptools-rust names the file like a CPython extension module
        # (libstopper.cpython-311-x86_64-linux-gnu.so); ctypes loads it by its SONAME instead.
        ext_path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(ext_path), LIBRARY_FILE)


class PlatformWheel(bdist_wheel):
    """One wheel for every CPython: ctypes needs no per-version build, only this platform."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


class SdistWithCrate(sdist):
    """Copies the Rust crate into the sdist as rust/, so pip can build from it alone."""

    def make_release_tree(self, base_dir, files) -> None:
        super().make_release_tree(base_dir, files)
        root = crate_root()
        dest = os.path.join(base_dir, SDIST_CRATE)
        for name in CRATE_FILES + [n for n in CRATE_OPTIONAL if os.path.exists(os.path.join(root, n))]:
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copyfile(os.path.join(root, name), os.path.join(dest, name))
        for name in CRATE_DIRS:
            shutil.copytree(
                os.path.join(root, name),
                os.path.join(dest, name),
                ignore=shutil.ignore_patterns("*~", ".*"),
            )


setup(
    rust_extensions=[
        RustExtension(
            "stopper.libstopper",
            path=os.path.join(find_crate() or os.path.join(HERE, SDIST_CRATE), "Cargo.toml"),
            binding=Binding.NoBinding,
            cargo_manifest_args=["--locked"],
            strip=Strip.Debug,
        )
    ],
    cmdclass={
        "build_rust": BuildNativeLibrary,
        "bdist_wheel": PlatformWheel,
        "sdist": SdistWithCrate,
    },
    zip_safe=False,
)
