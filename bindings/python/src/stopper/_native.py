"""The one place that knows the C ABI of libstopper.

This module finds and loads the shared library, checks its ABI version, declares every C
prototype once (``argtypes``/``restype``, on first use: :data:`_PROTOTYPES`, so that
``import stopper`` does not pay for the ones a program never calls), and maps status codes to
Python exceptions (:func:`check`).  Nothing outside this module calls :mod:`ctypes` on library
symbols by name.

Functions loaded through :class:`ctypes.CDLL` release the GIL for the duration of the call,
so every blocking call of the library (waits, joins, channel operations) lets other Python
threads run.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_int16,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_ulong,
    c_void_p,
)
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Iterator, List, NoReturn, Optional, Tuple

#: The ABI major version this package was written for (``stopper_abi_version() >> 16``).
ABI_MAJOR = 0
#: The lowest ABI minor version that has everything this package calls.
ABI_MINOR = 1
#: File name of the library as it is bundled beside the package and known to the loader.
LIBRARY_FILE = "libstopper.so.0"

# Status codes (SPEC.md, "Status codes").
OK = 0
STOPPED = 1
TIMEDOUT = 2
CLOSED = 3
EINVAL = -1
ENOMEM = -2
EDEADLK = -3
EOS = -4
EINTERNAL = -5

REASON_REQUESTED = 1
REASON_DEADLINE = 2
REASON_SIGNAL = 3

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

#: ``STOPPER_MAX_OPEN_SHARED``: shared stoppers one process can have open at once.
MAX_OPEN_SHARED = 127

POLLIN = 0x001
POLLOUT = 0x004


class StopperError(RuntimeError):
    """A status code from libstopper that has no more specific Python exception.

    ``code`` holds the library's status code (for example ``-1`` for ``STOPPER_EINVAL``).
    Seeing one usually means a misuse the binding could not catch earlier, or a bug.
    """

    def __init__(self, code: int, what: str) -> None:
        self.code = code
        super().__init__(f"{what}: {strerror(code)} (status {code})")


def _candidates() -> Iterator[Tuple[str, str]]:
    """Where to look for the library, in order: (description, path or name).  Lazy: the slow
    ``ctypes.util`` lookup is made only when the usual places failed."""
    env = os.environ.get("STOPPER_LIBRARY")
    if env:
        # Set explicitly: that file and nothing else, so a wrong setting is never hidden
        # by a library found elsewhere.
        yield ("$STOPPER_LIBRARY", env)
        return
    yield ("beside the package", os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_FILE))
    yield ("system path", LIBRARY_FILE)
    import ctypes.util

    found = ctypes.util.find_library("stopper")
    if found and found != LIBRARY_FILE:
        yield ("system path", found)


#: ELF e_machine numbers of the platforms a wheel may be built for, by os.uname().machine.
_ELF_MACHINES = {
    62: "x86_64", 183: "aarch64", 3: "i686", 40: "armv7l", 243: "riscv64", 21: "ppc64le", 22: "s390x",
}


def _why_not_loadable(path: str) -> str:
    """Explains a load failure of a file that exists: not a shared library, or one built for
    another machine (glibc then says "No such file or directory", which misleads)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return ""
    if head[:4] != b"\x7fELF":
        return " (the file exists but is not an ELF shared library)"
    if len(head) < 20:
        return " (the file exists but is truncated)"
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    built_for = _ELF_MACHINES.get(machine, f"ELF machine {machine}")
    here = os.uname().machine
    if built_for != here:
        return (
            f" (the file exists but was built for {built_for}, and this is {here}:"
            " a wheel for another platform?)"
        )
    return " (the file exists; see the loader's message)"


def _load() -> ctypes.CDLL:
    tried: List[str] = []
    for where, path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} ({where}): no such file")
            continue
        try:
            lib = ctypes.CDLL(path, use_errno=True)
        except OSError as e:
            tried.append(f"{path} ({where}): {e}{_why_not_loadable(path)}")
            continue
        try:
            fn = lib.stopper_abi_version
        except AttributeError:
            tried.append(f"{path} ({where}): not a libstopper (no stopper_abi_version)")
            continue
        fn.argtypes = []
        fn.restype = c_uint32
        abi = int(fn())
        major, minor = abi >> 16, abi & 0xFFFF
        if major != ABI_MAJOR or minor < ABI_MINOR:
            tried.append(
                f"{path} ({where}): ABI version {major}.{minor}, "
                f"this package needs {ABI_MAJOR}.{ABI_MINOR} or a later {ABI_MAJOR}.x"
            )
            continue
        return lib
    raise ImportError(
        "stopper: cannot load the native library libstopper "
        f"(expected ABI version {ABI_MAJOR}.{ABI_MINOR}, i.e. stopper_abi_version() == "
        f"{(ABI_MAJOR << 16) | ABI_MINOR:#x} or a later minor). Tried:\n  "
        + "\n  ".join(tried)
        + "\nReinstall the package (`pip install` builds the library with cargo), or set "
        "STOPPER_LIBRARY to the path of a libstopper.so.0 built for this machine."
    )


lib = _load()
#: Path or name of the library that was loaded.
LIBRARY_PATH: str = lib._name


# ---------------------------------------------------------------- C types
stopper_p = c_void_p
chan_p = c_void_p
CALLBACK_FN = CFUNCTYPE(None, c_void_p, c_int32)
HOOK_FN = CFUNCTYPE(None, c_void_p, c_uint64, c_int32)


class Hook(Structure):
    """``struct stopper_hook``."""

    _fields_ = [("fn", HOOK_FN), ("data", c_void_p), ("repeat_ns", c_int64)]


def _proto(name: str, restype: Any, *argtypes: Any, optional: bool = False) -> Any:
    try:
        f = getattr(lib, name)
    except AttributeError:
        if optional:
            return None
        raise ImportError(f"stopper: {LIBRARY_PATH} lacks the symbol {name}") from None
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# Every prototype, declared once, on first use (module __getattr__ below): name -> (restype,
# *argtypes).  Pointers travel as c_void_p (Python int or None), never as objects a user could
# see.
_PROTOTYPES = {
    "stopper_new": (stopper_p,),
    "stopper_new_child": (stopper_p, stopper_p),
    "stopper_new_linked": (stopper_p, POINTER(c_void_p), c_size_t),
    "stopper_retain": (stopper_p, stopper_p),
    "stopper_release": (None, stopper_p),
    "stopper_stop": (c_int32, stopper_p, c_int32),
    "stopper_is_set": (c_bool, stopper_p),
    "stopper_flag": (c_void_p, stopper_p),
    "stopper_reason": (c_int32, stopper_p),
    "stopper_wait": (c_int32, stopper_p, c_int64),
    "stopper_wait_any": (c_int32, POINTER(c_void_p), c_size_t, c_int64, POINTER(c_size_t)),
    "stopper_strerror": (c_char_p, c_int32),
    "stopper_on_stop": (c_int32, stopper_p, CALLBACK_FN, c_void_p, POINTER(c_uint64)),
    "stopper_unregister": (c_int32, stopper_p, c_uint64),
    "stopper_enter": (c_int32, stopper_p, POINTER(Hook)),
    "stopper_exit": (c_int32, stopper_p),
    "stopper_current": (stopper_p,),
    "stopper_join": (c_int32, stopper_p, c_int64),
    "stopper_thread_id": (c_uint64,),
    "stopper_stop_after": (c_int32, stopper_p, c_int64, c_int32),
    "stopper_remaining_ns": (c_int64, stopper_p),
    "stopper_fd": (c_int32, stopper_p),
    "stopper_wait_fd": (c_int32, stopper_p, c_int32, c_int16, c_int64, POINTER(c_int16)),
    "stopper_abi_version": (c_uint32,),
    "stopper_version": (c_char_p,),
    "stopper_chan_new": (chan_p, c_size_t),
    "stopper_chan_release": (None, chan_p),
    "stopper_chan_send": (c_int32, chan_p, c_uint64, stopper_p, c_int64),
    "stopper_chan_recv": (c_int32, chan_p, POINTER(c_uint64), stopper_p, c_int64),
    "stopper_chan_close": (None, chan_p),
    "stopper_chan_len": (c_size_t, chan_p),
    "stopper_open_shared": (stopper_p, c_char_p),
    "stopper_unlink_shared": (c_int32, c_char_p),
    "stopper_watch_process": (c_int32, stopper_p, c_int32, c_int64),
    "stopper_stop_on_signal": (c_int32, stopper_p, c_int32),
}


def __getattr__(name: str) -> Any:
    """Declares a library function the first time it is used (then it is a module global)."""
    spec = _PROTOTYPES.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    fn = _proto(name, *spec)
    globals()[name] = fn
    return fn


def function(name: str) -> Any:
    """The library function ``name`` (declared on first use), for this module's own calls."""
    return globals().get(name) or __getattr__(name)


# CPython's own API, for the interrupt hook.  PyDLL keeps the GIL held during the call (the
# caller must hold it).  Two prototypes of one symbol: one raises a class, one clears (NULL).
_PyAsyncExc = ctypes.PYFUNCTYPE(c_int, c_ulong, ctypes.py_object)
_PyAsyncClear = ctypes.PYFUNCTYPE(c_int, c_ulong, c_void_p)
set_async_exc = _PyAsyncExc(("PyThreadState_SetAsyncExc", ctypes.pythonapi))
clear_async_exc = _PyAsyncClear(("PyThreadState_SetAsyncExc", ctypes.pythonapi))

#: A view type for the stop flag: ``c_bool.from_address(stopper_flag(s))`` reads the byte
#: in place (no call into the library); ``not not view`` is its truth value.
FlagView = c_bool
assert ctypes.sizeof(c_bool) == ctypes.sizeof(c_uint8) == 1


def keep_forever(obj: Any) -> None:
    """Leaks one reference to ``obj`` (a ctypes trampoline the library may call at any time,
    even during module teardown)."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def strerror(code: int) -> str:
    """The library's name for a status code."""
    s = function("stopper_strerror")(code)
    return s.decode("utf-8", "replace") if s else f"status {code}"


def fail(code: int, what: str) -> NoReturn:
    """Raises the Python exception for a negative status ``code`` returned by ``what``."""
    if code == ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    if code == EOS:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err) if err else strerror(code)}")
    if code == EDEADLK:
        raise RuntimeError(f"{what}: the calling thread is a worker of this stopper and would wait for itself")
    raise StopperError(code, what)


def check(code: int, what: str) -> int:
    """Returns a non-negative status (OK, STOPPED, TIMEDOUT, CLOSED); raises for the others."""
    if code < 0:
        fail(code, what)
    return code


def version() -> str:
    """The loaded library's version string (``stopper_version()``)."""
    v = function("stopper_version")()
    return v.decode() if v else ""


def abi_version() -> Tuple[int, int]:
    """The loaded library's ABI version as (major, minor)."""
    v = int(function("stopper_abi_version")())
    return v >> 16, v & 0xFFFF


def handles_array(handles: "list[Optional[int]]") -> Any:
    """A C array of stopper pointers for wait_any / new_linked."""
    return (c_void_p * len(handles))(*handles)
