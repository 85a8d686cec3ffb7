"""`import stopper` stays light: it loads only what the import needs (issue 13: <= 15 ms)."""

import json

from conftest import run_python

HEAVY = ["asyncio", "trio", "grpc", "concurrent.futures", "ctypes.util", "subprocess", "typing",
         "signal", "socket", "selectors", "multiprocessing"]


def test_import_loads_no_heavy_module():
    rc, out, err = run_python(
        f"""
        import json, sys
        before = set(sys.modules)
        import stopper
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules and m not in before)))
        """
    )
    assert rc == 0, err
    assert json.loads(out) == []


def test_prototypes_are_declared_on_first_use():
    rc, out, err = run_python(
        """
        import stopper
        from stopper import _native
        declared = set(vars(_native)) & set(_native._PROTOTYPES)
        s = stopper.Stopper()
        s.stop()
        print(sorted(declared), "stopper_stop" in vars(_native), len(_native._PROTOTYPES))
        """
    )
    assert rc == 0, err
    declared, stop_declared, total = out.rsplit(" ", 2)
    assert stop_declared == "True"
    assert "stopper_watch_process" not in declared and "stopper_chan_new" not in declared
    assert int(total) > 30


def test_unknown_native_name_is_an_attribute_error():
    rc, out, err = run_python(
        """
        from stopper import _native
        try:
            _native.stopper_no_such_function
        except AttributeError as e:
            print("AttributeError", e)
        """
    )
    assert rc == 0 and out.startswith("AttributeError"), (out, err)
