"""A C++ worker and a Python thread stopping together through one stopper.

Python creates the stopper with ctypes, straight on libstopper.so (no binding needed), hands the
pointer to a C++ shared library (libcppworker.so, built from cpp_worker.cpp with stopper.hpp)
that starts its own worker inside it, and starts a Python thread inside the same stopper. One
stopper_stop wakes both at once; stopper_join waits for both, whatever language they run in.

    python3 together.py [--run SECONDS] [--check]

Finds the libraries in $STOPPER_LIBDIR and $CPPWORKER_LIB (defaults: ../../build/lib and
./build/libcppworker.so). --check fails (exit 1) when a worker saw the stop 200 ms or more
after it, or the join did not finish.
"""
import ctypes
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIR = os.environ.get("STOPPER_LIBDIR") or os.path.join(HERE, "..", "..", "build", "lib")
WORKER = os.environ.get("CPPWORKER_LIB") or os.path.join(HERE, "build", "libcppworker.so")
MAX_LATENCY_MS = 200.0
STOPPED, OK = 1, 0


def load_stopper():
    lib = ctypes.CDLL(os.path.join(LIBDIR, "libstopper.so"))
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    for name, res, args in [
        ("stopper_new", p, []),
        ("stopper_release", None, [p]),
        ("stopper_stop", i32, [p, i32]),
        ("stopper_is_set", ctypes.c_bool, [p]),
        ("stopper_reason", i32, [p]),
        ("stopper_wait", i32, [p, i64]),
        ("stopper_enter", i32, [p, p]),
        ("stopper_exit", i32, [p]),
        ("stopper_join", i32, [p, i64]),
    ]:
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


def mapped_copies(fragment):
    """The distinct files mapped in this process whose name contains fragment."""
    files = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and fragment in parts[5]:
                st = os.stat(parts[5])
                files.add((st.st_dev, st.st_ino))
    return files


def main():
    run = 1.0
    check = "--check" in sys.argv
    if "--run" in sys.argv:
        run = float(sys.argv[sys.argv.index("--run") + 1])

    lib = load_stopper()
    worker_lib = ctypes.CDLL(WORKER)
    worker_lib.start_cpp_worker.restype = ctypes.c_int
    worker_lib.start_cpp_worker.argtypes = [ctypes.c_void_p]
    worker_lib.cpp_worker_woke_ns.restype = ctypes.c_int64
    worker_lib.cpp_worker_reason.restype = ctypes.c_int32

    copies = mapped_copies("libstopper.so")
    print(f"[python] libstopper mapped from {len(copies)} file(s): one library, one stopper")

    s = lib.stopper_new()
    py_result = {}

    def python_worker():
        lib.stopper_enter(s, None)  # a worker of s: stopper_join waits for it
        try:
            units = 0
            while not lib.stopper_is_set(s):
                units += 1                           # one unit of work
                lib.stopper_wait(s, 100_000_000)     # 100 ms, GIL released; a stop wakes it at once
            py_result["woke_ns"] = time.monotonic_ns()
            py_result["reason"] = lib.stopper_reason(s)
            print(f"[python] thread saw the stop (reason {py_result['reason']}) after {units} units", flush=True)
        finally:
            lib.stopper_exit(s)

    t = threading.Thread(target=python_worker, name="python-worker")
    t.start()
    rc = worker_lib.start_cpp_worker(s)
    if rc != 0:
        print(f"[python] start_cpp_worker failed: {rc}")
        return 1

    time.sleep(run)
    stop_ns = time.monotonic_ns()
    lib.stopper_stop(s, 42)                  # one stop, both languages
    joined = lib.stopper_join(s, 2_000_000_000) == OK
    join_ms = (time.monotonic_ns() - stop_ns) / 1e6
    t.join(timeout=2)

    cpp_ms = (worker_lib.cpp_worker_woke_ns() - stop_ns) / 1e6
    py_ms = (py_result.get("woke_ns", 0) - stop_ns) / 1e6
    print(f"[python] stop -> C++ worker woke {cpp_ms:.3f} ms, Python thread woke {py_ms:.3f} ms, "
          f"both joined {join_ms:.3f} ms")
    lib.stopper_release(s)

    failures = []
    if len(copies) != 1:
        failures.append(f"libstopper mapped from {len(copies)} files")
    if not joined:
        failures.append("stopper_join did not return OK within 2 s")
    if worker_lib.cpp_worker_reason() != 42 or py_result.get("reason") != 42:
        failures.append("a worker did not see reason 42")
    for name, ms in (("C++ worker", cpp_ms), ("Python thread", py_ms), ("join", join_ms)):
        if not 0 <= ms < MAX_LATENCY_MS:
            failures.append(f"{name}: {ms:.3f} ms (limit {MAX_LATENCY_MS:.0f} ms)")
    if failures and check:
        for f in failures:
            print(f"together: FAIL: {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
