"""CPython's own behavioural tests for threading's and queue's primitives, run against
stopper.sync: the test classes of the running interpreter's ``test.lock_tests`` and
``test.test_queue`` are parameterised by the type under test, so each is subclassed here with
ours.  Each suite runs twice: in plain threads (outside any scope: stopper.sync must be
threading itself), and with every thread of the test inside an interruptible scope that never
stops (the checkpoint path must not change a single behaviour).

The only departure: CPython's repr tests expect a one-word module name (``threading.Event``);
ours says ``stopper.sync.Event``, so those tests are replaced by the same checks on our name.
"""

import re
import sys
import unittest

import pytest

import stopper
import stopper.sync as sync

lock_tests = pytest.importorskip("test.lock_tests", reason="this Python has no test package")
test_queue = pytest.importorskip("test.test_queue", reason="this Python has no test package")


class InScope:
    """Runs the test, and every thread lock_tests starts, inside an interruptible scope."""

    def setUp(self):
        super().setUp()
        scope = stopper.Stopper().interruptible("checkpoint")
        scope.__enter__()
        self.addCleanup(scope.__exit__, None, None, None)
        original = lock_tests.start_new_thread

        def start_in_scope(fn, args):
            def run():
                with stopper.Stopper().interruptible("checkpoint"):
                    fn(*args)

            return original(run, ())

        lock_tests.start_new_thread = start_in_scope
        self.addCleanup(setattr, lock_tests, "start_new_thread", original)
        assert stopper._sync_lock.checkpoint_stopper() is not None


def _repr_check(test, obj, pattern):
    test.assertRegex(repr(obj), pattern.replace("NAME", re.escape("stopper.sync.")))


# ---------------------------------------------------------------- locks
class TestLock(lock_tests.LockTests):
    locktype = staticmethod(sync.Lock)

    def test_repr(self):
        _repr_check(self, self.locktype(), r"<unlocked NAMELock object at .*>")

    def test_locked_repr(self):
        lock = self.locktype()
        lock.acquire()
        _repr_check(self, lock, r"<locked NAMELock object at .*>")


class TestRLock(lock_tests.RLockTests):
    locktype = staticmethod(sync.RLock)


class TestEvent(lock_tests.EventTests):
    eventtype = staticmethod(sync.Event)

    def test_repr(self):
        evt = self.eventtype()
        _repr_check(self, evt, r"<NAMEEvent at .*: unset>")
        evt.set()
        _repr_check(self, evt, r"<NAMEEvent at .*: set>")


class TestConditionLock(lock_tests.ConditionTests):
    condtype = staticmethod(sync.Condition)


class TestSemaphore(lock_tests.SemaphoreTests):
    semtype = staticmethod(sync.Semaphore)

    def test_repr(self):
        sem = self.semtype(3)
        _repr_check(self, sem, r"<NAMESemaphore at .*: value=3>")
        sem.acquire()
        _repr_check(self, sem, r"<NAMESemaphore at .*: value=2>")
        sem.release(2)
        _repr_check(self, sem, r"<NAMESemaphore at .*: value=4>")


class TestBoundedSemaphore(lock_tests.BoundedSemaphoreTests):
    semtype = staticmethod(sync.BoundedSemaphore)

    def test_repr(self):
        sem = self.semtype(3)
        _repr_check(self, sem, r"<NAMEBoundedSemaphore at .*: value=3/3>")
        sem.acquire()
        _repr_check(self, sem, r"<NAMEBoundedSemaphore at .*: value=2/3>")


class TestBarrier(lock_tests.BarrierTests):
    barriertype = staticmethod(sync.Barrier)

    def test_repr(self):
        barrier = self.barriertype(3)
        _repr_check(self, barrier, r"<NAMEBarrier at .*: waiters=0/3>")
        barrier.abort()
        _repr_check(self, barrier, r"<NAMEBarrier at .*: broken>")


class TestLockInScope(InScope, TestLock):
    pass


class TestRLockInScope(InScope, TestRLock):
    pass


class TestEventInScope(InScope, TestEvent):
    pass


class TestConditionInScope(InScope, TestConditionLock):
    pass


class TestSemaphoreInScope(InScope, TestSemaphore):
    pass


class TestBoundedSemaphoreInScope(InScope, TestBoundedSemaphore):
    pass


class TestBarrierInScope(InScope, TestBarrier):
    pass


# ---------------------------------------------------------------- queues
class TestQueue(test_queue.QueueTest, unittest.TestCase):
    queue = sync


class TestLifoQueue(test_queue.LifoQueueTest, unittest.TestCase):
    queue = sync


class TestPriorityQueue(test_queue.PriorityQueueTest, unittest.TestCase):
    queue = sync


class TestFailingQueue(test_queue.FailingQueueTest, unittest.TestCase):
    queue = sync


class TestSimpleQueue(test_queue.BaseSimpleQueueTest, unittest.TestCase):
    queue = sync

    def setUp(self):
        self.type2test = sync.SimpleQueue
        super().setUp()


class QueueInScope:
    def setUp(self):
        super().setUp()
        scope = stopper.Stopper().interruptible("checkpoint")
        scope.__enter__()
        self.addCleanup(scope.__exit__, None, None, None)


class TestQueueInScope(QueueInScope, TestQueue):
    pass


class TestSimpleQueueInScope(QueueInScope, TestSimpleQueue):
    pass


def test_every_class_is_covered():
    """A guard: the CPython suites above really subclass what this interpreter ships."""
    assert issubclass(TestLock, lock_tests.BaseLockTests)
    assert sys.version_info >= (3, 8)
