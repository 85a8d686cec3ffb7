"""Smoke test of an installed stopper, run by test-packaging.sh from outside the source tree.

Checks that the package imported is the installed one with its bundled library, then that a
wait wakes on a stop and a StoppableThread stops and joins.
usage: python smoke.py [EXPECTED_LIBRARY]   (default: the library beside the package)
"""

import os
import sys
import sysconfig
import threading

import stopper

site = os.path.realpath(sysconfig.get_paths()["purelib"])
package_dir = os.path.realpath(os.path.dirname(stopper.__file__))
assert package_dir == os.path.join(site, "stopper"), (package_dir, site)
expected = sys.argv[1] if len(sys.argv) > 1 else os.path.join(package_dir, "libstopper.so.0")
assert os.path.realpath(stopper.library_path()) == os.path.realpath(expected), (
    stopper.library_path(),
    expected,
)

s = stopper.Stopper()
woke = []
waiter = threading.Thread(target=lambda: woke.append(s.wait(60)))
waiter.start()
assert s.stop() is True
waiter.join(60)
assert woke == [True] and s.is_set() and not waiter.is_alive(), woke


class Worker(stopper.StoppableThread):
    def run(self):
        self.laps = 0
        while not self.stopped():
            self.laps += 1
            self.stopper.wait(60)


w = Worker()
w.start()
w.join(60)
assert not w.is_alive() and w.stopped()
print(
    "smoke ok: Python %s, library %s at %s"
    % (sys.version.split()[0], stopper.library_version(), stopper.library_path())
)
