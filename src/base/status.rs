//! Status codes: stable numbers, never reused.

/// The outcome of an operation, as the C ABI numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// The stopper was (or already is) stopped.
    Stopped = 1,
    /// The time limit passed first.
    TimedOut = 2,
    /// The channel is closed (and, for receive, drained).
    Closed = 3,
    /// Bad argument: NULL where one is needed, mismatched exit, unknown id.
    Inval = -1,
    /// Out of memory.
    NoMem = -2,
    /// The call would wait for the calling thread itself.
    Deadlk = -3,
    /// A system call failed; `errno` holds its cause.
    Os = -4,
    /// A bug inside the library was caught at the boundary.
    Internal = -5,
}

impl Status {
    /// The C value.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status for a C value, if it is one.
    pub fn from_code(code: i32) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::Stopped,
            2 => Status::TimedOut,
            3 => Status::Closed,
            -1 => Status::Inval,
            -2 => Status::NoMem,
            -3 => Status::Deadlk,
            -4 => Status::Os,
            -5 => Status::Internal,
            _ => return None,
        })
    }

    /// A short, static description, as a C string (what `stopper_strerror` returns).
    pub fn c_message(self) -> &'static std::ffi::CStr {
        match self {
            Status::Ok => c"STOPPER_OK: done",
            Status::Stopped => c"STOPPER_STOPPED: the stopper is stopped",
            Status::TimedOut => c"STOPPER_TIMEDOUT: the time limit passed first",
            Status::Closed => c"STOPPER_CLOSED: the channel is closed",
            Status::Inval => c"STOPPER_EINVAL: invalid argument",
            Status::NoMem => c"STOPPER_ENOMEM: out of memory",
            Status::Deadlk => c"STOPPER_EDEADLK: the call would wait for the calling thread itself",
            Status::Os => c"STOPPER_EOS: a system call failed (see errno)",
            Status::Internal => c"STOPPER_EINTERNAL: internal error caught at the library boundary",
        }
    }

    /// A short, static description.
    pub fn message(self) -> &'static str {
        self.c_message().to_str().unwrap_or("stopper status")
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Status {}
