//! Shared stoppers across processes, TERM→KILL escalation, stop on a signal. Child processes
//! are this test binary run again in a "child mode" (selected by STOPPER_CHILD), so no test
//! forks a multi-threaded process.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stopper::{open_shared, unlink_shared, Status, Stopper, Wait};

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs this binary's `child_entry` test in a child process with `mode` and `arg`.
fn child(mode: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STOPPER_CHILD", mode)
        .env("STOPPER_CHILD_ARG", arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_line(c: &mut Child, expect: &str) {
    use std::io::BufRead;
    let out = c.stdout.as_mut().unwrap();
    let mut r = std::io::BufReader::new(out);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 {
        if line.contains(expect) {
            return;
        }
        line.clear();
    }
    panic!("child ended without printing {expect}");
}

/// The child side, run only in child processes (through `--ignored`).
#[test]
#[ignore = "child-process entry point, run by the other tests"]
fn child_entry() {
    let Ok(mode) = std::env::var("STOPPER_CHILD") else {
        return;
    };
    let arg = std::env::var("STOPPER_CHILD_ARG").unwrap_or_default();
    let code = match mode.as_str() {
        // Open the shared stopper, report ready, wait; succeed when woken by the stop with
        // reason 42, and when this process's own callback ran.
        "shared-waiter" => {
            let s = open_shared(&arg).unwrap();
            let done = Stopper::new();
            let d = done.clone();
            s.on_stop(move |r| {
                if r == 42 {
                    d.stop(0);
                }
            })
            .forget();
            println!("ready");
            let woke = s.wait(Some(Duration::from_secs(20))) == Wait::Stopped && s.reason() == 42;
            let callback = done.wait(Some(Duration::from_secs(20))) == Wait::Stopped;
            i32::from(!(woke && callback))
        }
        "stubborn" => {
            // SAFETY: ignoring SIGTERM in this child process.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            println!("ready");
            std::thread::sleep(Duration::from_secs(30));
            0
        }
        "signal-stop" => {
            let s = Stopper::new();
            let on = Arc::new(std::sync::Mutex::new(String::new()));
            let o = Arc::clone(&on);
            let callback_done = Stopper::new();
            let cd = callback_done.clone();
            s.on_stop(move |_| {
                *o.lock().unwrap() = os_thread_name();
                cd.stop(0);
            })
            .forget();
            assert_eq!(stopper::stop_on_signal(&s, libc::SIGTERM), Status::Ok);
            // SAFETY: signalling ourselves.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            let ok = s.wait(Some(Duration::from_secs(10))) == Wait::Stopped
                && callback_done.wait(Some(Duration::from_secs(10))) == Wait::Stopped
                && s.reason() == stopper::REASON_SIGNAL
                && *on.lock().unwrap() == "stopper-service";
            i32::from(!ok)
        }
        // Open shared stoppers (so this process has a watcher), fork, and in the forked child
        // register a callback on one of them; this process stops it; the forked child must see
        // its own callback run (its watcher did not come along with the fork).
        "fork-watch" => {
            let a = open_shared(&format!("{arg}-a")).unwrap();
            let b = open_shared(&format!("{arg}-b")).unwrap();
            // SAFETY: the forked child only uses the library and exits with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let done = Stopper::new();
                let d = done.clone();
                b.on_stop(move |_| {
                    d.stop(0);
                })
                .forget();
                let ok = done.wait(Some(Duration::from_secs(10))) == Wait::Stopped;
                // SAFETY: leaving the forked child without running the harness's exit path.
                unsafe { libc::_exit(i32::from(!ok)) };
            }
            std::thread::sleep(Duration::from_millis(100));
            b.stop(0);
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            drop(a);
            i32::from(!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0))
        }
        // Open the most this process may; the next open fails with EMFILE and creates nothing.
        "emfile" => {
            let held: Vec<Stopper> = (0..stopper::MAX_OPEN_SHARED)
                .map(|i| open_shared(&format!("{arg}-{i}")).unwrap())
                .collect();
            let extra = format!("{arg}-extra");
            let refused = open_shared(&extra).unwrap_err() == Status::Os
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EMFILE);
            let left_behind = std::path::Path::new(&format!("/dev/shm/stopper.{extra}")).exists();
            let again = open_shared(&format!("{arg}-0")).is_ok(); // an open name is still fine
            for i in 0..stopper::MAX_OPEN_SHARED {
                unlink_shared(&format!("{arg}-{i}"));
            }
            drop(held);
            i32::from(!(refused && !left_behind && again))
        }
        // After the stop on SIGTERM, the signal is given back: a second SIGTERM ends us.
        "signal-twice" => {
            let s = Stopper::new();
            assert_eq!(stopper::stop_on_signal(&s, libc::SIGTERM), Status::Ok);
            // SAFETY: signalling ourselves.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            assert_eq!(s.wait(Some(Duration::from_secs(10))), Wait::Stopped);
            let given_back = common::eventually(Duration::from_secs(5), || {
                // SAFETY: querying a disposition.
                let mut a: libc::sigaction = unsafe { std::mem::zeroed() };
                unsafe { libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut a) };
                a.sa_sigaction == libc::SIG_DFL
            });
            assert!(given_back, "SIGTERM still has the library's handler");
            // SAFETY: signalling ourselves; the default action ends the process.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            0 // not reached when the signal ended us
        }
        other => panic!("unknown child mode {other}"),
    };
    std::process::exit(code);
}

#[test]
fn a_stop_in_one_process_wakes_waiters_in_all() {
    let name = unique("wake");
    let s = open_shared(&name).unwrap();
    let mut kids: Vec<Child> = (0..3).map(|_| child("shared-waiter", &name)).collect();
    for k in &mut kids {
        wait_line(k, "ready");
    }
    let t0 = Instant::now();
    assert!(s.stop(42));
    for mut k in kids {
        let st = k.wait().unwrap();
        assert!(st.success(), "child failed: {st:?}");
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(unlink_shared(&name), Status::Ok);
}

#[test]
fn a_forked_child_runs_its_own_callbacks_for_shared_stoppers() {
    let name = unique("fork");
    let st = child("fork-watch", &name).wait().unwrap();
    unlink_shared(&format!("{name}-a"));
    unlink_shared(&format!("{name}-b"));
    assert!(
        st.success(),
        "the forked child's callback never ran: {st:?}"
    );
}

#[test]
fn past_the_limit_open_fails_with_emfile_and_creates_nothing() {
    let st = child("emfile", &unique("emfile")).wait().unwrap();
    assert!(st.success(), "{st:?}");
}

#[test]
fn a_second_sigterm_after_a_stop_on_signal_ends_the_process() {
    let st = child("signal-twice", "").wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM), "{st:?}");
}

#[test]
fn same_object_twice_in_one_process_is_one_stopper() {
    let name = unique("same");
    let a = open_shared(&name).unwrap();
    let b = open_shared(&name).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.flag_ptr(), b.flag_ptr());
    unlink_shared(&name);
}

#[test]
fn late_opener_sees_the_stop_and_unlink_recreates_fresh() {
    let name = unique("late");
    let a = open_shared(&name).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    a.stop(9);
    drop(a);
    let b = open_shared(&name).unwrap();
    assert!(b.is_set());
    assert_eq!(b.reason(), 9);
    let f = Arc::clone(&fired);
    b.on_stop(move |r| {
        f.store(r as usize, Ordering::SeqCst);
    })
    .forget();
    assert_eq!(
        fired.load(Ordering::SeqCst),
        9,
        "runs inline on a stopped shared stopper"
    );
    assert_eq!(unlink_shared(&name), Status::Ok);
    assert_eq!(unlink_shared(&name), Status::Os, "no such object");
    let c = open_shared(&name).unwrap();
    assert!(!c.is_set(), "a re-created object is fresh");
    assert!(b.is_set(), "the old one is unchanged");
    unlink_shared(&name);
}

#[test]
fn shared_stopper_fd_children_and_deadline_work() {
    let name = unique("fd");
    let s = open_shared(&name).unwrap();
    let c = s.child();
    let fd = s.fd().unwrap();
    s.stop_after(Some(Duration::from_millis(20)), 0);
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 10_000) }, 1);
    assert!(c.is_set());
    assert_eq!(s.reason(), stopper::REASON_DEADLINE);
    unlink_shared(&name);
}

fn write_object(name: &str, bytes: &[u8], mode: u32) {
    let path = std::ffi::CString::new(format!("/stopper.{name}")).unwrap();
    // SAFETY: creating a test object in the shm namespace.
    let fd = unsafe {
        libc::shm_open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            mode as libc::mode_t,
        )
    };
    assert!(fd >= 0);
    // SAFETY: our descriptor.
    unsafe {
        libc::fchmod(fd, mode as libc::mode_t);
        assert_eq!(
            libc::write(fd, bytes.as_ptr().cast(), bytes.len()),
            bytes.len() as isize
        );
        libc::close(fd);
    }
}

#[test]
fn corrupt_truncated_and_open_objects_are_refused() {
    let garbage = unique("garbage");
    write_object(&garbage, &[0xAB; 4096], 0o600);
    assert_eq!(open_shared(&garbage).unwrap_err(), Status::Inval);
    let truncated = unique("trunc");
    write_object(&truncated, b"stopper\x01", 0o600);
    assert_eq!(open_shared(&truncated).unwrap_err(), Status::Inval);
    // A valid object made world-writable is not trusted either.
    let open = unique("open");
    drop(open_shared(&open).unwrap());
    let path = std::ffi::CString::new(format!("/stopper.{open}")).unwrap();
    // SAFETY: our object.
    unsafe {
        let fd = libc::shm_open(path.as_ptr(), libc::O_RDWR, 0);
        libc::fchmod(fd, 0o666);
        libc::close(fd);
    }
    assert_eq!(open_shared(&open).unwrap_err(), Status::Inval);
    for n in [&garbage, &truncated, &open] {
        unlink_shared(n);
    }
}

#[test]
fn bad_names_are_refused() {
    for n in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "sp ace",
        "nul\0",
        &"x".repeat(201),
    ] {
        assert_eq!(open_shared(n).unwrap_err(), Status::Inval, "{n:?}");
        assert_eq!(unlink_shared(n), Status::Inval, "{n:?}");
    }
    assert!(stopper::validate_shared_name(&"y".repeat(200)));
    assert!(stopper::validate_shared_name("a.b-c_D9"));
}

#[test]
fn watcher_thread_is_gone_when_no_shared_stopper_is_open() {
    let name = unique("watch");
    let s = open_shared(&name).unwrap();
    assert!(stopper::watcher_running());
    drop(s);
    unlink_shared(&name);
    // Other tests here may hold shared stoppers; wait (bounded) for a moment with none.
    assert!(common::eventually(Duration::from_secs(20), || {
        !stopper::watcher_running()
    }));
}

fn exited_by(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(st) = c.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn polite_child_ends_by_sigterm() {
    let mut c = Command::new("sleep").arg("30").spawn().unwrap();
    let s = Stopper::new();
    assert_eq!(
        stopper::watch_process(&s, c.id() as i32, 5_000_000_000),
        Status::Ok
    );
    let t0 = Instant::now();
    s.stop(0);
    let st = exited_by(&mut c, Duration::from_secs(10)).expect("still running");
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "waited for the grace period"
    );
}

#[test]
fn stubborn_child_is_killed_after_the_grace_and_not_before() {
    let mut c = child("stubborn", "");
    wait_line(&mut c, "ready");
    let s = Stopper::new();
    assert_eq!(
        stopper::watch_process(&s, c.id() as i32, 300_000_000),
        Status::Ok
    );
    let t0 = Instant::now();
    s.stop(0);
    assert!(
        exited_by(&mut c, Duration::from_millis(150)).is_none(),
        "killed before the grace"
    );
    let st = exited_by(&mut c, Duration::from_secs(10)).expect("never killed");
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(t0.elapsed() >= Duration::from_millis(280));
}

#[test]
fn watching_an_ended_or_bad_pid() {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap(); // reaped: the pid may now be reused by anyone
    let s = Stopper::new();
    assert_eq!(
        stopper::watch_process(&s, pid, 0),
        Status::Ok,
        "an ended pid is not an error"
    );
    s.stop(0); // and stopping signals nobody
    assert_eq!(stopper::watch_process(&Stopper::new(), 0, 0), Status::Inval);
    assert_eq!(
        stopper::watch_process(&Stopper::new(), -5, 0),
        Status::Inval
    );
    // The pidfd is opened at watch time: a child reaped after the watch but before the stop
    // is not signalled through a recycled pid (the pidfd refers to the dead process).
    let mut d = Command::new("true").spawn().unwrap();
    let s2 = Stopper::new();
    assert_eq!(stopper::watch_process(&s2, d.id() as i32, 0), Status::Ok);
    d.wait().unwrap();
    s2.stop(0);
}

/// The calling thread's name as the OS has it (the library names its threads with
/// `pthread_setname_np`; they are not std threads, so std's `thread::current().name()` is None).
fn os_thread_name() -> String {
    let mut buf = [0u8; 64];
    // SAFETY: a buffer of the given length for the calling thread's name.
    let rc = unsafe {
        libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr().cast(), buf.len())
    };
    assert_eq!(rc, 0);
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[test]
fn stop_on_signal_stops_on_the_service_thread() {
    let mut c = child("signal-stop", "");
    let st = c.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(
        stopper::stop_on_signal(&Stopper::new(), libc::SIGKILL),
        Status::Inval
    );
    assert_eq!(stopper::stop_on_signal(&Stopper::new(), 0), Status::Inval);
    let stopped = Stopper::new();
    stopped.stop(0);
    assert_eq!(
        stopper::stop_on_signal(&stopped, libc::SIGUSR1),
        Status::Stopped
    );
}

#[test]
fn a_local_stop_of_a_shared_stopper_runs_its_callbacks_before_returning_on_the_caller() {
    for i in 0..common::iters(300) {
        let name = unique("local");
        let s = open_shared(&name).unwrap();
        let ran_on = Arc::new(std::sync::Mutex::new(None));
        let r = Arc::clone(&ran_on);
        s.on_stop(move |_| *r.lock().unwrap() = Some(stopper::thread_id()))
            .forget();
        assert!(s.stop(0));
        assert_eq!(
            *ran_on.lock().unwrap(),
            Some(stopper::thread_id()),
            "iteration {i}: not run by the stopping thread before stop returned"
        );
        unlink_shared(&name);
    }
}

/// Running processes of group `pgid` in /proc (orphans are reaped by init, not by this test:
/// a zombie has ended).
fn group_members(pgid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the command (which may hold spaces): state, ppid, pgrp.
            let rest: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..]
                .split_whitespace()
                .take(3)
                .collect();
            rest.len() == 3 && rest[0] != "Z" && rest[2] == pgid.to_string()
        })
        .count()
}

#[test]
fn a_process_group_gets_sigterm_then_sigkill_for_what_ignores_it() {
    use std::os::unix::process::CommandExt;
    // A shell leading its own group, with a child that dies of SIGTERM and one that ignores it.
    let mut c = Command::new("sh")
        .args([
            "-c",
            "sleep 30 & (trap '' TERM; exec sleep 30) & echo ready; wait",
        ])
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_line(&mut c, "ready");
    let pgid = c.id() as i32;
    let t0 = Instant::now();
    while group_members(pgid) < 3 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(group_members(pgid), 3);
    let s = Stopper::new();
    let st = stopper::watch_process_group(&s, pgid, 300_000_000);
    if st == Status::Os {
        // Linux < 6.9: refused, never a racy killpg.
        let e = std::io::Error::last_os_error().raw_os_error();
        assert!(
            matches!(e, Some(libc::EINVAL) | Some(libc::ENOSYS)),
            "{e:?}"
        );
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        c.wait().unwrap();
        return;
    }
    assert_eq!(st, Status::Ok);
    // Not a leader: refused.
    let mut plain = Command::new("sleep").arg("30").spawn().unwrap();
    assert_eq!(
        stopper::watch_process_group(&s, plain.id() as i32, 0),
        Status::Inval
    );
    plain.kill().unwrap();
    plain.wait().unwrap();
    let t0 = Instant::now();
    s.stop(0);
    let st = c.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    // The orphans go to init (or a subreaper): wait until /proc shows none of the group.
    while group_members(pgid) > 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(group_members(pgid), 0, "members of the group left");
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "SIGKILL before the grace"
    );
}
