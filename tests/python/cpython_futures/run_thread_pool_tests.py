"""Runs the running interpreter's own concurrent.futures thread-pool tests against
stopper.futures.ThreadPoolExecutor (drop-in check).

CPython ships its tests as ``test.test_concurrent_futures`` (one module before 3.12's layout, a
package after).  This script swaps ``concurrent.futures.ThreadPoolExecutor`` for stopper's
subclass *before* importing them, so every thread-pool test class (``ThreadPool*``) builds our
executor, checks that it really does, and runs those classes with unittest.  Exit status 0 when
all pass; 2 when this interpreter has no such tests.  Usage: python run_thread_pool_tests.py
"""

import importlib
import pkgutil
import sys
import unittest

import stopper.futures

import concurrent.futures

ORIGINAL = concurrent.futures.ThreadPoolExecutor
concurrent.futures.ThreadPoolExecutor = stopper.futures.ThreadPoolExecutor

try:
    tests = importlib.import_module("test.test_concurrent_futures")
except ImportError as e:
    print(f"no test.test_concurrent_futures in this interpreter: {e}")
    sys.exit(2)

modules = [tests]
if hasattr(tests, "__path__"):  # 3.12+: a package of test_*.py modules
    for info in pkgutil.iter_modules(tests.__path__):
        if info.name.startswith("test_") and "process" not in info.name:
            modules.append(importlib.import_module(f"test.test_concurrent_futures.{info.name}"))
    mixin = importlib.import_module("test.test_concurrent_futures.util").ThreadPoolMixin
else:
    mixin = tests.ThreadPoolMixin

if mixin.executor_type is not stopper.futures.ThreadPoolExecutor:
    print(f"the substitution did not take: ThreadPoolMixin.executor_type is {mixin.executor_type!r}")
    sys.exit(1)

loader = unittest.TestLoader()
if len(sys.argv) > 1:  # optional -k style patterns, e.g. "*test_map*"
    loader.testNamePatterns = sys.argv[1:]
suite = unittest.TestSuite()
classes = []
for mod in modules:
    for name in sorted(vars(mod)):
        obj = getattr(mod, name)
        if (
            isinstance(obj, type)
            and name.startswith("ThreadPool")
            and issubclass(obj, unittest.TestCase)
            and obj.__module__ == mod.__name__
        ):
            classes.append(f"{mod.__name__.rsplit('.', 1)[-1]}.{name}")
            suite.addTests(loader.loadTestsFromTestCase(obj))

print(f"Python {sys.version.split()[0]}: {len(classes)} thread-pool test classes: {', '.join(classes)}")
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
