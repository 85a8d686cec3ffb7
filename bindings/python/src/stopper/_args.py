"""Argument checks shared by the package's modules (plain functions, no state)."""

from __future__ import annotations

import math
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Optional

from . import _native as _n


def timeout_ns(timeout: Optional[float], what: str = "timeout") -> int:
    """None -> -1 (no limit); a number of seconds >= 0 -> nanoseconds."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout != timeout:  # NaN
        raise ValueError(f"{what} must be a number of seconds or None, not NaN")
    if timeout < 0:
        raise ValueError(f"{what} must be >= 0 or None, got {timeout!r}")
    if math.isinf(timeout):
        return -1
    ns = int(timeout * 1_000_000_000)
    return ns if ns < _n.INT64_MAX else _n.INT64_MAX


def reason_arg(reason: int) -> int:
    if isinstance(reason, bool) or not isinstance(reason, int):
        raise TypeError(f"reason must be an int, not {type(reason).__name__}")
    if not _n.INT32_MIN <= reason <= _n.INT32_MAX:
        raise ValueError(f"reason must fit in 32 bits, got {reason}")
    return reason


def fd_arg(sock_or_fd: Any) -> int:
    if isinstance(sock_or_fd, bool):
        raise TypeError("expected a file descriptor or an object with fileno(), not bool")
    if isinstance(sock_or_fd, int):
        fd = sock_or_fd
    else:
        fileno = getattr(sock_or_fd, "fileno", None)
        if fileno is None:
            raise TypeError(
                f"expected a file descriptor or an object with fileno(), not {type(sock_or_fd).__name__}"
            )
        fd = fileno()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError("fileno() must return an int")
    if not 0 <= fd <= _n.INT32_MAX:
        raise ValueError(f"invalid file descriptor {fd}")
    return fd
