"""run.py: runs every benchmark of `make bench`, prints the tables, draws out/latency.png.

    python run.py --build DIR --out DIR --py PYTHON --crossbeam BIN --src DIR [--smoke]

The programs print JSON lines (see bench_util.h); this script computes medians and ratios,
checks them against the goals and prints one table per part with a verdict column. A missed goal
is reported, never an error: the exit status is nonzero only when a benchmark program failed
(crashed, returned nonzero, timed out, or printed something unreadable).

Ratios are always stopper / reference, so below 1 means stopper is faster or smaller. For the
per-operation pairs the ratio is the median over rounds of (stopper time / reference time) of
the same round (the two run back to back, so a round's noise hits both).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FAILURES = []  # (program, why)
NOTES = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_program(name, argv, timeout):
    """Runs one benchmark program; returns its stdout lines, or None when it failed."""
    log(f"[{name}] {' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))}")
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        FAILURES.append((name, f"timed out after {timeout} s"))
        return None
    except OSError as e:
        FAILURES.append((name, f"could not start: {e}"))
        return None
    if p.returncode != 0:
        how = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
        FAILURES.append((name, how))
        return None
    log(f"[{name}] {time.monotonic() - t0:.1f} s")
    return p.stdout.splitlines()


def parse_json_lines(name, lines, into):
    for line in lines or []:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            FAILURES.append((name, f"unreadable output line: {line[:80]}"))
            continue
        kind = rec.get("kind")
        if kind == "note":
            NOTES.append(f"{name}: {rec['text']}")
        elif kind in ("pair", "samples", "value", "rate"):
            into[rec["id"]] = rec
        elif kind == "meta":
            into.setdefault("_meta", []).append(rec)


def parse_rates(name, lines):
    out = {}
    for line in lines or []:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RESULT":
            try:
                out[parts[1]] = float(parts[2])
            except ValueError:
                FAILURES.append((name, f"unreadable rate: {line}"))
    return out


# ---------------------------------------------------------------- formatting


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    ns = float(ns)
    if ns < 10:
        return f"{ns:.2f} ns"
    if ns < 1000:
        return f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_ratio(r):
    if r is None:
        return "n/a"
    return f"{r:.2f}x" if r >= 0.01 else f"{r:.1e}x"


def fmt_rate(r):
    return "n/a" if r is None else f"{r / 1e6:.1f} M/s"


def table(title, rows, headers=("measure", "stopper", "reference", "ratio", "goal", "verdict")):
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = [title, ""]
    out.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out) + "\n"


def verdict(ok):
    return "n/a" if ok is None else ("ok" if ok else "MISS")


def pair_stats(rec):
    """median stopper ns, median reference ns, median of per-round ratios"""
    a, b = rec["a"], rec["b"]
    ratios = [x / y for x, y in zip(a, b) if y > 0]
    return statistics.median(a), statistics.median(b), (statistics.median(ratios) if ratios else None)


def ratio_row(label, a, b, ratio, limit, fmt=fmt_ns, goal_text=None):
    ok = None if ratio is None or limit is None else ratio <= limit
    goal = goal_text or (f"<= {limit:.2f}x" if limit is not None else "-")
    return (label, fmt(a), fmt(b), fmt_ratio(ratio), goal, verdict(ok) if limit is not None else "info")


def missing_row(label, why="not measured"):
    return (label, why, "", "", "", "n/a")


# ---------------------------------------------------------------- part 1: core


# The C++ wrapper's rows (bench_cpp): against <stop_token>, then against the bare C calls
# (goal: the wrapper adds at most 10% over the C calls it makes).
CPP_SPEC = [
    ("cpp_is_set", "C++ stopper::source::is_set() vs stop_token::stop_requested", 1.2, None),
    ("cpp_token_stop_requested", "C++ stopper::token::stop_requested() vs stop_token::stop_requested", 1.2, None),
    ("cpp_source", "C++ stopper::source ctor+dtor vs std::stop_source", 1.5, None),
    ("cpp_get_token", "C++ source::get_token()+~token vs stop_source::get_token()+~stop_token", None, None),
    ("cpp_callback", "C++ stopper::callback ctor+dtor vs std::stop_callback", 1.5, None),
    ("cpp_source_vs_c", "C++ stopper::source vs stopper_new+release (C)", 1.1, None),
    ("cpp_token_stop_requested_vs_c", "C++ token::stop_requested() vs stopper_flag_is_set (C)", 1.1, None),
    ("cpp_get_token_vs_c", "C++ get_token()+~token vs stopper_retain+release (C)", 1.1, None),
    ("cpp_callback_vs_c_calls", "C++ stopper::callback vs the C calls it makes: retain+on_stop+unregister+release",
     1.1, None),
    ("cpp_callback_vs_c", "C++ stopper::callback(source) vs bare on_stop+unregister (C; the callback also "
     "holds a reference)", 1.1, None),
    ("cpp_callback_token_vs_c", "C++ stopper::callback(token) vs bare on_stop+unregister (C; same)", 1.1, None),
]


def cpp_table(r):
    rows = []
    for key, label, limit, goal_text in CPP_SPEC:
        if key in r:
            a, b, ratio = pair_stats(r[key])
            rows.append(ratio_row(label, a, b, ratio, limit, goal_text=goal_text))
        else:
            rows.append(missing_row(label))
    return table("C++ wrapper (bench_cpp)", rows)


def core_table(r, smoke):
    rows = []
    spec = [
        ("flag_check", "inline flag check: stopper_flag_is_set vs stop_token::stop_requested", 1.2, None),
        ("is_set_call", "stopper_is_set() vs an empty library call (stopper_abi_version)", 1.3, None),
        ("new_release", "stopper_new+release vs stop_source ctor+dtor", 1.5, None),
        ("callback_reg_unreg", "on_stop+unregister vs stop_callback ctor+dtor", 1.5, None),
        ("stop_1000_callbacks", "stop with 1000 callbacks, per callback, vs request_stop", 0.25,
         "<= 0.25x (4x faster)"),
    ] + CPP_SPEC
    for key, label, limit, goal_text in spec:
        if key in r:
            a, b, ratio = pair_stats(r[key])
            rows.append(ratio_row(label, a, b, ratio, limit, goal_text=goal_text))
        elif key.startswith("cpp_"):
            continue  # the wrapper rows come with bench_cpp (a note says when it is missing)
        else:
            rows.append(missing_row(label))
    w, c, f = r.get("wake_stopper_wait"), r.get("wake_cv_any"), r.get("wake_futex")
    if w and c:
        rows.append(ratio_row("wake-up, median: stopper_wait vs condition_variable_any", w["p50"], c["p50"],
                              w["p50"] / c["p50"], 1.0))
    else:
        rows.append(missing_row("wake-up vs condition_variable_any"))
    if w and f:
        rows.append(ratio_row("wake-up, median: stopper_wait vs raw futex wake", w["p50"], f["p50"],
                              w["p50"] / f["p50"], 1.1))
        rows.append(ratio_row("wake-up, p99: stopper_wait vs cv_any", w["p99"], c["p99"] if c else None,
                              (w["p99"] / c["p99"]) if c else None, None))
        rows.append(ratio_row("wake-up, p99: stopper_wait vs raw futex", w["p99"], f["p99"],
                              w["p99"] / f["p99"], None))
    else:
        rows.append(missing_row("wake-up vs raw futex"))
    mu, mc, ms = r.get("mem_stopper_usable"), r.get("mem_stopper_chunk"), r.get("mem_std_usable")
    if mu:
        std_b = ms["value"] if ms else None
        rows.append(("heap bytes per idle stopper (malloc_usable_size) vs std::stop_source",
                     f"{mu['value']:.0f} B", f"{std_b:.0f} B" if std_b is not None else "n/a",
                     fmt_ratio(mu["value"] / std_b) if std_b else "n/a", "<= 64 B",
                     verdict(mu["value"] <= 64)))
    else:
        rows.append(missing_row("heap bytes per idle stopper"))
    if mc:
        msc = r.get("mem_std_chunk")
        alloc = r.get("mem_stopper_allocs")
        rows.append((f"  same, with malloc's chunk header (mallinfo2); allocations: "
                     f"{alloc['value']:.2f}" if alloc else "  same, with malloc's chunk header (mallinfo2)",
                     f"{mc['value']:.0f} B", f"{msc['value']:.0f} B" if msc else "n/a",
                     fmt_ratio(mc["value"] / msc["value"]) if msc and msc["value"] else "n/a", "-", "info"))
    meta = next((m for m in r.get("_meta", []) if m.get("program") == "bench_core"), {})
    title = ("Part 1. Core: stopper's C ABI vs the C++20 standard library (g++ -O2 -std=c++20; "
             f"per-op times are medians of {meta.get('rounds', '?')} interleaved rounds; "
             f"wake-ups: {meta.get('samples', '?')} samples each)")
    return table(title, rows)


# ---------------------------------------------------------------- part 2: deadlines, channel


def timechan_table(r, rates, chan_cfgs):
    rows = []
    for n in sorted(int(k.rsplit("_", 1)[1]) for k in r if k.startswith("deadline_late_")):
        rec = r[f"deadline_late_{n}"]
        fl, fd = r.get(f"deadline_floor_{n}"), r.get(f"deadline_floor_default_{n}")
        if fl:
            # the floor: a bare absolute clock_nanosleep with 1 ns timer slack, sampled
            # interleaved with the probes (same delays, same run)
            rows.append(ratio_row(f"deadline lateness, {n} pending, p50 of {rec['n']} probes: stopper "
                                  "vs the floor (absolute clock_nanosleep, 1 ns timer slack)",
                                  rec["p50"], fl["p50"], rec["p50"] / fl["p50"] if fl["p50"] > 0 else None,
                                  1.3, goal_text="<= 1.30x floor"))
            rows.append(ratio_row("  p99 vs the floor's p99", rec["p99"], fl["p99"],
                                  rec["p99"] / fl["p99"] if fl["p99"] > 0 else None, 1.3,
                                  goal_text="<= 1.30x floor"))
        ok = rec["p99"] <= 2e6
        rows.append(("  p50 / p99 (max), absolute" if fl else
                     f"deadline lateness, {n} pending: p50 / p99 (max) of {rec['n']} probes",
                     f"{fmt_ns(rec['p50'])} / {fmt_ns(rec['p99'])} ({fmt_ns(rec['max'])})",
                     f"{fmt_ns(fl['p50'])} / {fmt_ns(fl['p99'])} ({fmt_ns(fl['max'])})" if fl else "-", "-",
                     "p99 <= 2 ms", verdict(ok)))
        if fd:
            rows.append(ratio_row("  p50 vs clock_nanosleep with the default timer slack (50 us)", rec["p50"],
                                  fd["p50"], rec["p50"] / fd["p50"] if fd["p50"] > 0 else None, None))
        thr, rss = r.get(f"deadline_threads_{n}"), r.get(f"deadline_rss_per_{n}")
        if thr:
            rows.append((f"  threads in the process with {n} pending"
                         + (f"; resident memory per pending deadline {rss['value']:.0f} B" if rss else ""),
                         f"{thr['value']:.0f}", "-", "-", "-", "info"))
    if not any(k.startswith("deadline_late_") for k in r):
        rows.append(missing_row("deadline lateness"))
    bu = r.get("deadline_burst")
    if bu:
        sp = r.get("deadline_burst_spread", {}).get("value", 0)
        rows.append((f"burst: {bu['n']} deadlines due over {fmt_ns(sp)}, all firing: lateness p50 / p99 (max)",
                     f"{fmt_ns(bu['p50'])} / {fmt_ns(bu['p99'])} ({fmt_ns(bu['max'])})", "-", "-", "-", "info"))
    for cfg in chan_cfgs:
        p_c, cap = cfg.split(":")
        what = f"channel {p_c} {'unbounded' if cap == '0' else 'cap ' + cap}"
        s = rates.get(("stopper", cfg))
        sn = rates.get(("stopper_null", cfg))
        x = rates.get(("crossbeam", cfg))
        if s and x:
            # throughput: higher is better; ratio stopper / crossbeam of each round's medians
            ms, mx = statistics.median(s), statistics.median(x)
            rs = [a / b for a, b in zip(s, x)]
            ratio = statistics.median(rs)
            rows.append((f"{what}: items/s, send+recv with a stopper vs crossbeam", fmt_rate(ms), fmt_rate(mx),
                         fmt_ratio(ratio), ">= 0.80x", verdict(ratio >= 0.8)))
            if sn:
                rn = statistics.median([a / b for a, b in zip(sn, x)])
                rows.append(("  same, stopper = NULL", fmt_rate(statistics.median(sn)), fmt_rate(mx),
                             fmt_ratio(rn), ">= 0.80x", verdict(rn >= 0.8)))
        else:
            rows.append(missing_row(f"{what} throughput"))
    cr, cw, cp = r.get("chan_recv_stop"), r.get("chan_wait_stop"), r.get("chan_poll_recipe")
    if cr and cw:
        ratio = cr["p50"] / cw["p50"]
        rows.append(("blocked stopper_chan_recv: stop-to-return, median vs stopper_wait (same run)",
                     fmt_ns(cr["p50"]), fmt_ns(cw["p50"]), fmt_ratio(ratio), "<= 10x (same order)",
                     verdict(ratio <= 10)))
        rows.append(("  p99 vs stopper_wait p99", fmt_ns(cr["p99"]), fmt_ns(cw["p99"]),
                     fmt_ratio(cr["p99"] / cw["p99"]), "-", "info"))
    else:
        rows.append(missing_row("blocked stopper_chan_recv stop-to-return"))
    if cr and cp:
        meta = next((m for m in r.get("_meta", []) if "chanlat" in m.get("program", "")), {})
        rows.append((f"  median vs the recipe's poll (recv timeout {meta.get('poll_ms', '?')} ms, then flag)",
                     fmt_ns(cr["p50"]), fmt_ns(cp["p50"]), fmt_ratio(cr["p50"] / cp["p50"]), "-", "info"))
    return table("Part 2. Deadlines and the channel (C); channel rates are medians over interleaved rounds",
                 rows)


# ---------------------------------------------------------------- part 3: Python


def stop_to_exit_rows(r, cases, limit_ns, goal_text, no_ref="never ends"):
    """One row per (stopper id, reference id, label): stopper's median (p99) against the
    reference's, the goal on stopper's median."""
    rows = []
    for st_id, ref_id, label in cases:
        st, rf = r.get(st_id), r.get(ref_id)
        ref = f"{fmt_ns(rf['p50'])} ({fmt_ns(rf['p99'])})" if rf else no_ref
        if not st:
            rows.append((label + ", median (p99)", "n/a", ref, "n/a", goal_text, "n/a"))
            continue
        ratio = st["p50"] / rf["p50"] if rf else None
        rows.append((label + ", median (p99)", f"{fmt_ns(st['p50'])} ({fmt_ns(st['p99'])})", ref,
                     fmt_ratio(ratio), goal_text, verdict(st["p50"] <= limit_ns)))
    return rows


def is_set_goal(r):
    """The goal of the is_set row for the interpreter py_bench ran on: Event.is_set() is a Python
    method returning a Python attribute, Stopper.is_set() a Python method that must read the
    byte the library writes, which costs one C call (5-12 ns): <= 1.1x before 3.11, where every
    Python call costs a frame of about 100 ns; <= 1.35x from 3.11, where the specialising
    interpreter runs Event.is_set() in about 25 ns with no C call at all (benches/README.md,
    "Limits", has the measurements)."""
    meta = next((m for m in r.get("_meta", []) if m.get("program") == "py_bench"), {})
    version = meta.get("python", "?")
    try:
        major_minor = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        major_minor = (0, 0)
    return (1.35 if major_minor >= (3, 11) else 1.1), version


def python_table(r):
    rows = []
    if "py_is_set" in r:
        a, b, ratio = pair_stats(r["py_is_set"])
        limit, version = is_set_goal(r)
        rows.append(ratio_row(f"Stopper.is_set() vs Event.is_set() (per loop step; Python {version})", a, b, ratio,
                              limit))
    else:
        rows.append(missing_row("Stopper.is_set() vs Event.is_set()"))
    if "py_import" in r:
        a, b, ratio = pair_stats(r["py_import"])
        rows.append(ratio_row("import stopper vs import threading (python -X importtime, cumulative)",
                              a, b, ratio, None))
    ws, we = r.get("py_wake_stopper"), r.get("py_wake_event")
    if ws and we:
        rows.append(ratio_row("wake of a blocked wait(), median: Stopper vs Event", ws["p50"], we["p50"],
                              ws["p50"] / we["p50"], 1.0))
        rows.append(ratio_row("  p99", ws["p99"], we["p99"], ws["p99"] / we["p99"], None))
    else:
        rows.append(missing_row("wake of a blocked wait(): Stopper vs Event"))
    pe, ps, pl = r.get("py_proc_wake_event"), r.get("py_proc_wake_stopper"), r.get("py_proc_wake_local")
    if ps and pl:
        rows.append(ratio_row("cross-process wake, median: shared Stopper.wait() in a child process "
                              "vs in-process Stopper.wait() (same run)", ps["p50"], pl["p50"],
                              ps["p50"] / pl["p50"], 2.0))
    elif pe:
        rows.append(missing_row("cross-process wake: shared Stopper vs in-process Stopper"))
    if ps and pe:
        rows.append(ratio_row("  same, vs multiprocessing.Event.wait() in a child process (RECIPES 5's flag)",
                              ps["p50"], pe["p50"], ps["p50"] / pe["p50"], None))
        rows.append(ratio_row("  p99: shared Stopper vs multiprocessing.Event", ps["p99"], pe["p99"],
                              ps["p99"] / pe["p99"], None))
    elif pe:
        rows.append(("cross-process wake: multiprocessing.Event.wait() in a child process, median (p99)", "n/a",
                     f"{fmt_ns(pe['p50'])} ({fmt_ns(pe['p99'])})", "n/a", "-", "n/a"))
    period = r.get("recipe_sleep_period", {}).get("value", 1.0)
    qto = r.get("recipe_queue_timeout", {}).get("value", 0.5)
    rows += stop_to_exit_rows(r, (
        ("stopper_sleep_loop", "recipe_sleep_loop", f"stop-to-exit: time.sleep({period:g}) loop -> s.wait({period:g})"),
        ("stopper_queue_get", "recipe_queue_get", f"stop-to-exit: queue.get(timeout={qto:g}) -> Channel.get(stopper=s)"),
        ("stopper_event_wait", "recipe_event_wait", "stop-to-exit: Event.wait(1.0) (Cookbook) -> s.wait(1.0)"),
    ), 1e6, "stopper <= 1 ms", no_ref="n/a")
    rs, rr = r.get("raise_stopper_wait"), r.get("raise_recipe_sleep")
    rp = r.get("raise_recipe_period", {}).get("value", 0.5)
    if rs or rr:
        ratio = rs["p50"] / rr["p50"] if rs and rr else None
        rows.append((f"async raise delivery: StoppableThread(interrupt=True) in a stopper wait "
                     f"vs ThreadWithExc in time.sleep({rp:g}), median",
                     fmt_ns(rs["p50"]) if rs else "n/a", fmt_ns(rr["p50"]) if rr else "n/a",
                     fmt_ratio(ratio), "-", "info"))
    tn = r.get("timer_count", {}).get("value", 1000)
    tt, dt = r.get("timer_threads"), r.get("deadline_py_threads")
    if tt:
        rows.append((f"{tn:.0f} pending timers: threads added, stop_after vs threading.Timer",
                     f"{dt['value']:.0f}" if dt else "n/a", f"{tt['value']:.0f}", "-",
                     "stopper <= 1", verdict(dt["value"] <= 1) if dt else "n/a"))
        tm, dm = r.get("timer_rss_per"), r.get("deadline_py_rss_per")
        rows.append(("  resident memory per timer", f"{dm['value']:.0f} B" if dm else "n/a",
                     f"{tm['value']:.0f} B" if tm else "n/a",
                     fmt_ratio(dm["value"] / tm["value"]) if dm and tm and tm["value"] > 0 else "n/a", "-", "info"))
        ta, da = r.get("timer_arm_us"), r.get("deadline_py_arm_us")
        rows.append(("  time to create and arm one", f"{da['value']:.1f} us" if da else "n/a",
                     f"{ta['value']:.1f} us" if ta else "n/a",
                     fmt_ratio(da["value"] / ta["value"]) if da and ta and ta["value"] > 0 else "n/a", "-", "info"))
    return table("Part 3. Python: the stopper package vs the recipes (shared/RECIPES.md)", rows)


def frameworks_table(r):
    local = (
        ("fw_executor_stopper", "fw_executor_poll",
         "future.cancel() of a running task -> thread ended: stopper.futures vs a 50 ms flag poll"),
        ("fw_asyncio_stopper", "fw_asyncio_poll",
         "cancelled await -> thread ended: stopper.aio.to_thread vs asyncio.to_thread + 50 ms poll"),
        ("fw_subprocess_stopper", "fw_subprocess_poll",
         "stop -> process group gone: stopper.subprocess.run vs a poll()/terminate loop"),
        ("fw_serve_stopper", "fw_serve_shutdown",
         "stop -> server returned: stopper.serve vs serve_forever + shutdown()"),
    )
    rows = stop_to_exit_rows(r, local, 1e6, "stopper <= 1 ms")
    rows += stop_to_exit_rows(r, (("fw_grpc_stopper", "fw_grpc_is_active_poll",
                                   "client stop -> server handler ended over loopback gRPC: "
                                   "stopper.grpc vs polling context.is_active()"),), 50e6,
                              "stopper <= 50 ms")
    return table("Part 3b. Python: cancel means stop (executor, asyncio, subprocess, serve, gRPC)", rows)


def sync_patch_table(r):
    rows = []
    if "sync_lock_uncontended" in r:
        a, b, ratio = pair_stats(r["sync_lock_uncontended"])
        rows.append(ratio_row("uncontended acquire+release: stopper.sync.Lock vs threading.Lock", a, b, ratio, 3.0))
    else:
        rows.append(missing_row("uncontended acquire+release: stopper.sync.Lock vs threading.Lock"))
    if "patch_overhead_select" in r:
        a, b, ratio = pair_stats(r["patch_overhead_select"])
        rows.append((f"patched select.select outside any scope vs the original (+{fmt_ns(a - b)})", fmt_ns(a),
                     fmt_ns(b), fmt_ratio(ratio), "<= +200 ns", verdict(a - b <= 200)))
    else:
        rows.append(missing_row("patched call outside any scope vs the original"))
    for prefix, what, ref in (("sync_stop_", "stopper.sync", "never ends (threading/queue)"),
                              ("patch_stop_", "patched", "never ends (unpatched)")):
        keys = sorted(k for k in r if k.startswith(prefix))
        if not keys:
            rows.append(missing_row(f"stop-to-exit, {what} blocking calls"))
        for k in keys:
            st = r[k]
            rows.append((f"stop-to-exit, {what} {k[len(prefix):]}, median (p99)",
                         f"{fmt_ns(st['p50'])} ({fmt_ns(st['p99'])})", ref, "-",
                         "stopper <= 1 ms", verdict(st["p50"] <= 1e6)))
    return table("Part 3c. Python: stopper.sync and stopper.patch() (checkpoint mode)", rows)


# ---------------------------------------------------------------- part 4: processes


def proc_table(r):
    rows = []
    ws, wl, wt, wf = (r.get(k) for k in ("proc_wake_shared", "proc_wake_local", "proc_wake_shared_thread",
                                         "proc_wake_futex"))
    if ws and wl:
        rows.append(ratio_row("cross-process wake, median: child process in stopper_wait on a shared stopper "
                              "vs a thread in stopper_wait on a plain one", ws["p50"], wl["p50"],
                              ws["p50"] / wl["p50"], 2.0))
        rows.append(ratio_row("  p99", ws["p99"], wl["p99"], ws["p99"] / wl["p99"], None))
    else:
        rows.append(missing_row("cross-process wake vs in-process wake"))
    if ws and wf:
        rows.append(ratio_row("  median vs the floor: a raw FUTEX_WAIT in a child process, FUTEX_WAKE here",
                              ws["p50"], wf["p50"], ws["p50"] / wf["p50"], 1.5))
    if wt and wl:
        rows.append(ratio_row("in-process wake, median: a thread waiting on a shared stopper vs a plain one",
                              wt["p50"], wl["p50"], wt["p50"] / wl["p50"], None))
    for key, label in (("proc_is_set", "stopper_is_set(): shared stopper vs in-process stopper"),
                       ("proc_flag_check", "inline flag check (stopper_flag_is_set): shared vs in-process")):
        if key in r:
            a, b, ratio = pair_stats(r[key])
            rows.append(ratio_row(label, a, b, ratio, 1.1))
        else:
            rows.append(missing_row(label))
    meta = next((m for m in r.get("_meta", []) if m.get("program") == "bench_proc"), {})
    title = ("Part 4. Processes: shared stoppers (C; wake-ups: "
             f"{meta.get('samples', '?')} samples of each kind, interleaved; per-op times are medians of "
             f"{meta.get('rounds', '?')} interleaved rounds)")
    return table(title, rows)


# ---------------------------------------------------------------- part 5: Rust async


def rust_async_table(r):
    """Stopper::stopped() vs tokio-util's CancellationToken::cancelled() (benches/rust/bench_async.rs)."""
    rows = []
    for exe, label in (("tokio_ct", "tokio current-thread runtime"), ("tokio_mt", "tokio multi-thread runtime"),
                       ("block_on", "futures::executor::block_on")):
        a, b = r.get(f"async_wake_stopper_{exe}"), r.get(f"async_wake_token_{exe}")
        if a and b:
            rows.append(ratio_row(f"wake of an awaiting task, median, {label}: stopped() vs cancelled()",
                                  a["p50"], b["p50"], a["p50"] / b["p50"], 1.0))
            rows.append(ratio_row("  p99", a["p99"], b["p99"], a["p99"] / b["p99"], None))
        else:
            rows.append(missing_row(f"wake of an awaiting task, {label}"))
    if "async_register_drop" in r:
        a, b, ratio = pair_stats(r["async_register_drop"])
        rows.append(ratio_row("future created, polled once (registers), dropped (unregisters): "
                              "stopped() vs cancelled()", a, b, ratio, None))
    else:
        rows.append(missing_row("stopped() register + drop"))
    meta = next((m for m in r.get("_meta", []) if m.get("program") == "bench_async"), {})
    title = ("Part 5. Rust async: Stopper::stopped() vs tokio-util CancellationToken::cancelled() (wake-ups: "
             f"{meta.get('samples', '?')} samples of each kind, interleaved; per-op times are medians of "
             f"{meta.get('rounds', '?')} interleaved rounds)")
    return table(title, rows)


# ---------------------------------------------------------------- plot


def plot(r, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import math

    # (record id, label, line style, colour); a recipe and its stopper version share a colour
    panels = [
        ("Native wake-up: stop -> blocked waiter returns", [
            ("wake_stopper_wait", "stopper_wait", "-", "C0"),
            ("wake_cv_any", "condition_variable_any + stop_token", "-", "C1"),
            ("wake_futex", "raw futex wake", "-", "C2"),
            ("chan_wait_stop", "stopper_wait (chanlat run)", ":", "C0"),
            ("chan_recv_stop", "stopper_chan_recv (chanlat run)", ":", "C3"),
            ("proc_wake_shared", "shared stopper, waiter in a child process", "--", "C4"),
            ("proc_wake_futex", "raw futex, waiter in a child process", "--", "C2")]),
        ("Python wake-up: stop()/set() -> blocked wait() returns", [
            ("py_wake_stopper", "Stopper.wait()", "-", "C0"),
            ("py_wake_event", "threading.Event.wait()", "-", "C1"),
            ("py_proc_wake_stopper", "shared Stopper.wait(), child process", "--", "C0"),
            ("py_proc_wake_event", "multiprocessing.Event.wait(), child process", "--", "C1")]),
        ("Stop-to-exit: recipes (dashed) vs stopper (solid)", [
            ("recipe_sleep_loop", "recipe: time.sleep loop", "--", "C0"),
            ("stopper_sleep_loop", "stopper: s.wait loop", "-", "C0"),
            ("recipe_queue_get", "recipe: queue.get(timeout)", "--", "C1"),
            ("stopper_queue_get", "stopper: Channel.get(stopper=s)", "-", "C1"),
            ("recipe_event_wait", "recipe: Event.wait(1.0)", "--", "C2"),
            ("stopper_event_wait", "stopper: s.wait(1.0)", "-", "C2"),
            ("raise_recipe_sleep", "recipe: async raise into time.sleep", "--", "C3"),
            ("raise_stopper_wait", "stopper: interrupt=True in a stopper wait", "-", "C3"),
            ("chan_poll_recipe", "recipe in C: recv(timeout) poll", "--", "C4"),
            ("chan_recv_stop", "stopper in C: blocked stopper_chan_recv", "-", "C4")]),
        ("Deadline lateness (callback ran - due)", [
            ("deadline_late_1", "1 pending", "-", "C0"),
            ("deadline_late_100", "100 pending", "-", "C4"),
            ("deadline_late_1000", "1 000 pending", "-", "C1"),
            ("deadline_late_100000", "100 000 pending", "-", "C2"),
            ("deadline_burst", "burst: all firing within 1 s", "--", "C3"),
            ("deadline_floor_1", "floor: clock_nanosleep, 1 ns slack", ":", "C7"),
            ("deadline_floor_default_1", "clock_nanosleep, default 50 us slack", ":", "C5")]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    for ax, (title, series) in zip(axes.flat, panels):
        lo, hi = math.inf, 0.0
        for key, label, style, colour in series:
            rec = r.get(key)
            if not rec or not rec.get("values"):
                continue
            xs = [max(v, 1) / 1e3 for v in rec["values"]]  # us, clipped to 1 ns for the log axis
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            lo, hi = min(lo, xs[0]), max(hi, xs[-1])
            ax.step(xs, ys, where="post", linestyle=style, color=colour, linewidth=1.7,
                    label=f"{label}  (median {fmt_ns(rec['p50'])}, n={rec['n']})")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("microseconds (log scale)")
        ax.set_ylabel("fraction of samples <= x")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(0, 1.02)
        if hi > 0:
            # whole decades, so that every panel has labelled ticks
            ax.set_xlim(10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi)))
            wide = "Stop-to-exit" in title
            ax.legend(fontsize=7.5 if wide else 8, loc="center" if wide else "lower right", framealpha=0.9)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("stopper latency distributions (cumulative; left and up is better)", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--py", required=True)
    ap.add_argument("--crossbeam", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--plot-only", action="store_true", help="redraw out/latency.png from out/results.json")
    ap.add_argument("--only-cpp", action="store_true", help="run only bench_cpp and print the C++ wrapper's rows")
    a = ap.parse_args()
    if a.only_cpp:
        r = {}
        cpp_args = ["--scale", "0.001", "--rounds", "2"] if a.smoke else ["--rounds", "15"]
        parse_json_lines("bench_cpp", run_program("bench_cpp", [os.path.join(a.build, "bench_cpp")] + cpp_args, 120), r)
        load = os.getloadavg()
        print(f"\nload average (1 min) {load[0]:.2f} on {os.cpu_count()} cores\n\n" + cpp_table(r), flush=True)
        return 0
    if a.plot_only:
        with open(os.path.join(a.out, "results.json")) as f:
            plot(json.load(f)["records"], os.path.join(a.out, "latency.png"))
        return 0
    os.makedirs(a.out, exist_ok=True)
    smoke = a.smoke
    t_start = time.monotonic()
    load_start = os.getloadavg()
    r = {}
    b = lambda name: os.path.join(a.build, name)  # noqa: E731

    # Part 1
    core_args = ["--scale", "0.001", "--rounds", "2", "--samples", "5"] if smoke else ["--rounds", "15", "--samples", "2000"]
    parse_json_lines("bench_core", run_program("bench_core", [b("bench_core")] + core_args, 120), r)
    if os.access(b("bench_cpp"), os.X_OK):
        cpp_args = ["--scale", "0.001", "--rounds", "2"] if smoke else ["--rounds", "15"]
        parse_json_lines("bench_cpp", run_program("bench_cpp", [b("bench_cpp")] + cpp_args, 120), r)
    else:
        NOTES.append("C++ wrapper rows left out: bench_cpp was not built "
                     "(bindings/cpp/stopper.hpp missing or not compiling)")
    parse_json_lines("bench_mem", run_program("bench_mem", [b("bench_mem")] + (["1000"] if smoke else []), 60), r)

    # Part 2
    dl_args = ["--counts", "1,100,1000", "--probes", "3", "--burst", "1000"] if smoke else ["--probes", "300"]
    parse_json_lines("deadlines", run_program("deadlines", [b("bench_timechan"), "deadlines"] + dl_args, 60), r)
    chan_cfgs = ["1x1:1024", "2x2:1024", "1x1:0"]
    items = "20000" if smoke else "2000000"
    rounds = 1 if smoke else 9
    rates = {}
    have_crossbeam = os.access(a.crossbeam, os.X_OK)
    if not have_crossbeam:
        NOTES.append(f"crossbeam-ref not built ({a.crossbeam}): channel rows have no reference")
    for _ in range(rounds):
        runs = [("stopper", [b("bench_timechan"), "chan", items] + chan_cfgs),
                ("stopper_null", [b("bench_timechan"), "chan", "--null", items] + chan_cfgs)]
        if have_crossbeam:
            runs.append(("crossbeam", [a.crossbeam, items] + chan_cfgs))
        for who, argv in runs:
            got = parse_rates(who, run_program(f"chan/{who}", argv, 60))
            for cfg, v in got.items():
                rates.setdefault((who, cfg), []).append(v)
    lat_args = ["--samples", "5", "--poll-ms", "20", "--pollers", "2"] if smoke else ["--samples", "1000"]
    parse_json_lines("chanlat", run_program("chanlat", [b("bench_timechan"), "chanlat"] + lat_args, 60), r)

    # Part 4: shared stoppers across processes (C)
    proc_args = ["--samples", "5", "--rounds", "2", "--scale", "0.001"] if smoke else ["--samples", "1000", "--rounds", "15"]
    parse_json_lines("bench_proc", run_program("bench_proc", [b("bench_proc")] + proc_args, 120), r)

    # Part 3
    py_argv = [a.py, os.path.join(a.src, "py_bench.py")] + (["--smoke"] if smoke else [])
    parse_json_lines("py_bench", run_program("py_bench", py_argv, 120), r)

    # Part 5: Rust async (built by the Makefile's rust-async target)
    if os.access(b("bench_async"), os.X_OK):
        async_args = (["--samples", "5", "--rounds", "2", "--scale", "0.001"] if smoke
                      else ["--samples", "2000", "--rounds", "15"])
        parse_json_lines("bench_async", run_program("bench_async", [b("bench_async")] + async_args, 120), r)
    else:
        NOTES.append("Rust async rows left out: bench_async was not built (make rust-async)")

    # Tables
    load_end = os.getloadavg()
    report = [f"machine: {os.cpu_count()} cores; load average (1 min) {load_start[0]:.2f} at the start, "
              f"{load_end[0]:.2f} at the end (other work on the machine makes every number noisier)\n"]
    report.append(core_table(r, smoke))
    report.append(timechan_table(r, rates, chan_cfgs))
    report.append(python_table(r))
    report.append(frameworks_table(r))
    report.append(sync_patch_table(r))
    report.append(proc_table(r))
    report.append(rust_async_table(r))
    text = "\n".join(report)
    if NOTES:
        text += "\nNotes:\n" + "".join(f"  - {n}\n" for n in NOTES)
    text += ("\nratio = stopper / reference (below 1: stopper faster or smaller; for channel rates "
             "above 1: stopper faster). verdict: ok = goal holds in this run, MISS = it does not "
             "(a missed goal is reported, not an error).\n")
    if smoke:
        text = "bench-smoke (tiny counts: the numbers mean nothing, only that every program runs)\n\n" + text
    print("\n" + text, flush=True)
    with open(os.path.join(a.out, "smoke.txt" if smoke else "report.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "smoke.json" if smoke else "results.json"), "w") as f:
        json.dump({"records": r, "rates": {f"{k[0]}:{k[1]}": v for k, v in rates.items()},
                   "notes": NOTES, "failures": FAILURES}, f, indent=1)

    png = os.path.join(a.out, "latency-smoke.png" if smoke else "latency.png")
    try:
        plot(r, png)
        print(f"latency distributions: {png}")
    except ImportError:
        if smoke:
            print("(no matplotlib here: plot skipped in bench-smoke)")
        else:
            FAILURES.append(("plot", "matplotlib is missing from the bench venv"))
    except Exception as e:  # a plotting bug must not hide the tables, but it is a failure
        FAILURES.append(("plot", f"{type(e).__name__}: {e}"))

    print(f"total {time.monotonic() - t_start:.0f} s")
    if FAILURES:
        print("\nFAILED benchmark programs:")
        for name, why in FAILURES:
            print(f"  {name}: {why}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
