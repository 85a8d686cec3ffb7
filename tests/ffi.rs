//! The C ABI itself, called from Rust: NULL and bad arguments get the contract's statuses.

use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};

use ::stopper::ffi;
use ::stopper::ffi::*;

unsafe extern "C" fn count(data: *mut c_void, _reason: i32) {
    // SAFETY: tests pass a pointer to a live AtomicUsize.
    unsafe {
        (*(data as *const std::sync::atomic::AtomicUsize))
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    };
}

#[test]
fn null_stoppers_read_as_never_stopped_and_changes_are_einval() {
    assert!(!stopper_is_set(null()));
    assert_eq!(stopper_reason(null()), 0);
    let flag = stopper_flag(null());
    assert!(!flag.is_null());
    // SAFETY: a static byte.
    assert_eq!(unsafe { *flag }, 0);
    assert_eq!(
        stopper_wait(null(), -1),
        STOPPER_EINVAL,
        "would block forever"
    );
    assert_eq!(stopper_wait(null(), 1_000_000), STOPPER_TIMEDOUT);
    assert_eq!(stopper_remaining_ns(null()), -1);
    assert_eq!(stopper_stop(null_mut(), 0), STOPPER_EINVAL);
    assert_eq!(stopper_stop_after(null_mut(), 1, 0), STOPPER_EINVAL);
    assert_eq!(stopper_enter(null_mut(), null()), STOPPER_EINVAL);
    assert_eq!(stopper_exit(null_mut()), STOPPER_EINVAL);
    assert_eq!(stopper_join(null_mut(), 0), STOPPER_EINVAL);
    assert_eq!(stopper_fd(null_mut()), STOPPER_EINVAL);
    assert_eq!(
        stopper_on_stop(null_mut(), Some(count), null_mut(), null_mut()),
        STOPPER_EINVAL
    );
    assert_eq!(stopper_unregister(null_mut(), 1), STOPPER_EINVAL);
    assert_eq!(stopper_spawn(null_mut(), None, null_mut()), STOPPER_EINVAL);
    assert!(stopper_new_child(null_mut()).is_null());
    assert!(stopper_retain(null_mut()).is_null());
    stopper_release(null_mut());
    assert!(stopper_current().is_null());
}

#[test]
fn wait_any_argument_rules() {
    let mut which = usize::MAX;
    assert_eq!(stopper_wait_any(null(), 3, 0, &mut which), STOPPER_EINVAL);
    assert_eq!(stopper_wait_any(null(), 0, -1, &mut which), STOPPER_EINVAL);
    assert_eq!(
        stopper_wait_any(null(), 0, 1_000_000, &mut which),
        STOPPER_TIMEDOUT
    );
    let nulls = [null::<ffi::stopper>(); 2];
    assert_eq!(
        stopper_wait_any(nulls.as_ptr(), 2, -1, &mut which),
        STOPPER_EINVAL
    );
    assert_eq!(which, usize::MAX, "outputs are written only on success");
    let s = stopper_new();
    stopper_stop(s, 0);
    let list = [null(), s as *const ffi::stopper];
    assert_eq!(
        stopper_wait_any(list.as_ptr(), 2, -1, &mut which),
        STOPPER_STOPPED
    );
    assert_eq!(which, 1);
    assert_eq!(
        stopper_wait_any(list.as_ptr(), 2, -1, null_mut()),
        STOPPER_STOPPED,
        "which may be NULL"
    );
    stopper_release(s);
}

#[test]
fn linked_argument_rules() {
    assert!(stopper_new_linked(null(), 2).is_null());
    let plain = stopper_new_linked(null(), 0);
    assert!(!plain.is_null());
    let list = [plain, null_mut()];
    assert!(
        stopper_new_linked(list.as_ptr(), 2).is_null(),
        "a NULL entry"
    );
    let l = stopper_new_linked(list.as_ptr(), 1);
    assert_eq!(stopper_stop(plain, 9), 1);
    assert_eq!(stopper_reason(l), 9);
    stopper_release(l);
    stopper_release(plain);
}

#[test]
fn callbacks_ids_and_null_function() {
    let s = stopper_new();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let data = &n as *const _ as *mut c_void;
    let mut id = 0u64;
    assert_eq!(stopper_on_stop(s, None, data, &mut id), STOPPER_EINVAL);
    assert_eq!(stopper_on_stop(s, Some(count), data, &mut id), STOPPER_OK);
    assert_ne!(id, 0);
    assert_eq!(
        stopper_on_stop(s, Some(count), data, null_mut()),
        STOPPER_OK,
        "id may be NULL"
    );
    assert_eq!(stopper_unregister(s, 0), STOPPER_EINVAL);
    assert_eq!(stopper_unregister(s, id ^ 0xdead_0000_0000), STOPPER_EINVAL);
    assert_eq!(stopper_stop(s, 0), 1);
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(stopper_unregister(s, id), STOPPER_STOPPED);
    let mut id2 = 77u64;
    assert_eq!(
        stopper_on_stop(s, Some(count), data, &mut id2),
        STOPPER_STOPPED
    );
    assert_eq!(id2, 0);
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 3, "ran inline");
    stopper_release(s);
}

#[test]
fn hook_with_null_function_is_einval() {
    let s = stopper_new();
    let h = stopper_hook {
        func: None,
        data: null_mut(),
        repeat_ns: 0,
    };
    assert_eq!(stopper_enter(s, &h), STOPPER_EINVAL);
    assert!(
        stopper_current().is_null(),
        "a refused enter enters nothing"
    );
    stopper_release(s);
}

#[test]
fn install_signal_refuses_what_it_must() {
    for bad in [
        0,
        -1,
        65,
        1000,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGABRT,
    ] {
        assert_eq!(stopper_install_signal(bad), STOPPER_EINVAL, "signal {bad}");
    }
    // A signal with a host's handler is not taken.
    extern "C" fn host(_: i32) {}
    // SAFETY: installing a plain handler for SIGUSR2 in this test process.
    unsafe {
        libc::signal(
            libc::SIGUSR2,
            host as extern "C" fn(i32) as libc::sighandler_t,
        )
    };
    assert_eq!(stopper_install_signal(libc::SIGUSR2), STOPPER_EINVAL);
    // SAFETY: reads the disposition back.
    let now = unsafe { libc::signal(libc::SIGUSR2, libc::SIG_DFL) };
    assert_eq!(
        now, host as extern "C" fn(i32) as libc::sighandler_t,
        "the host's handler was replaced"
    );
    // SIG_IGN is the host's choice too.
    // SAFETY: plain signal call.
    unsafe { libc::signal(libc::SIGURG, libc::SIG_IGN) };
    assert_eq!(stopper_install_signal(libc::SIGURG), STOPPER_EINVAL);
    let rt = libc::SIGRTMIN() + 3;
    assert_eq!(stopper_install_signal(rt), STOPPER_OK);
    assert_eq!(stopper_install_signal(rt), STOPPER_OK, "twice is fine");
}

#[test]
fn channel_argument_rules() {
    let mut item = 5u64;
    assert_eq!(stopper_chan_send(null_mut(), 1, null(), 0), STOPPER_EINVAL);
    assert_eq!(
        stopper_chan_recv(null_mut(), &mut item, null(), 0),
        STOPPER_EINVAL
    );
    assert_eq!(stopper_chan_len(null()), 0);
    stopper_chan_close(null_mut());
    stopper_chan_release(null_mut());
    assert!(stopper_chan_retain(null_mut()).is_null());
    let c = stopper_chan_new(1);
    assert_eq!(stopper_chan_recv(c, null_mut(), null(), 0), STOPPER_EINVAL);
    assert_eq!(stopper_chan_recv(c, &mut item, null(), 0), STOPPER_TIMEDOUT);
    assert_eq!(item, 5, "not written on failure");
    assert_eq!(stopper_chan_send(c, 42, null(), 0), STOPPER_OK);
    assert_eq!(stopper_chan_len(c), 1);
    let c2 = stopper_chan_retain(c);
    stopper_chan_release(c);
    assert_eq!(stopper_chan_recv(c2, &mut item, null(), -1), STOPPER_OK);
    assert_eq!(item, 42);
    stopper_chan_close(c2);
    stopper_chan_close(c2);
    assert_eq!(stopper_chan_recv(c2, &mut item, null(), -1), STOPPER_CLOSED);
    stopper_chan_release(c2);
}

#[test]
fn strerror_and_versions() {
    for code in [-5, -4, -3, -2, -1, 0, 1, 2, 3] {
        // SAFETY: static C strings.
        let msg = unsafe { CStr::from_ptr(stopper_strerror(code)) }
            .to_str()
            .unwrap();
        assert!(msg.starts_with("STOPPER_"), "{code}: {msg}");
    }
    // SAFETY: static C string.
    assert_eq!(
        unsafe { CStr::from_ptr(stopper_strerror(99)) }
            .to_str()
            .unwrap(),
        "unknown status code"
    );
    // SAFETY: static C string.
    let v = unsafe { CStr::from_ptr(stopper_version()) }
        .to_str()
        .unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    assert_eq!(stopper_abi_version(), major << 16 | minor);
}

#[test]
fn checked_in_header_declares_every_export() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/stopper.h")).unwrap();
    let mut exported = Vec::new();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi")).unwrap() {
        let src = std::fs::read_to_string(f.unwrap().path()).unwrap();
        let mut lines = src.lines().peekable();
        while let Some(l) = lines.next() {
            if l.trim() == "#[no_mangle]" {
                let sig = lines.next().unwrap();
                let name = sig
                    .split("fn ")
                    .nth(1)
                    .unwrap()
                    .split('(')
                    .next()
                    .unwrap()
                    .to_string();
                exported.push(name);
            }
        }
    }
    assert!(
        exported.len() >= 30,
        "found only {} exports",
        exported.len()
    );
    for name in &exported {
        let declared =
            header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}("));
        assert!(declared, "{name} is exported but not in include/stopper.h");
    }
}

#[test]
fn processes_bad_input_sets_errno_einval() {
    let s = stopper_new();
    type Check = (&'static str, Box<dyn Fn() -> i32>);
    let checks: [Check; 5] = [
        (
            "watch NULL",
            Box::new(|| stopper_watch_process(null_mut(), 1, 0)),
        ),
        (
            "watch pid 0",
            Box::new(move || stopper_watch_process(s, 0, 0)),
        ),
        (
            "signal NULL",
            Box::new(|| stopper_stop_on_signal(null_mut(), libc::SIGUSR1)),
        ),
        (
            "signal KILL",
            Box::new(move || stopper_stop_on_signal(s, libc::SIGKILL)),
        ),
        (
            "unlink bad",
            Box::new(|| stopper_unlink_shared(c"a/b".as_ptr())),
        ),
    ];
    for (what, call) in checks {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        assert_eq!(call(), STOPPER_EINVAL, "{what}");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINVAL),
            "{what}: errno"
        );
    }
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = 0 };
    assert!(stopper_open_shared(c"../etc".as_ptr()).is_null());
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL)
    );
    stopper_release(s);
}
