//! SIGTERM and SIGINT to `gfa run`: what `scancel`, a Slurm time limit, `kill` and Ctrl-C send.
//!
//! [`install`] replaces the default action (die at once, leaving each run's `status` at
//! "running") with an orderly stop, done by a thread of its own (a signal handler itself only
//! notes the signal and wakes that thread):
//!
//! 1. no new `--jobs` worker starts ([`spawn`] refuses once stopping);
//! 2. each worker still alive gets SIGTERM (it stops the same way), and SIGKILL after
//!    [`WORKER_GRACE`];
//! 3. every run this process works, and every run of a worker that died without saying so, is
//!    marked `interrupted` in its `status` and its `log.txt`;
//! 4. one line on stderr says how to resume (a `--jobs` worker leaves that to its parent), and
//!    the process exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT).
//!
//! The runs' locks are `flock`s, released when the process exits. Nothing else needs undoing:
//! every file is written atomically, a checkpoint being written (weights, optimizer state and
//! sidecar, one set: `gfa_data::atomic::write_group`) is finished before the exit, and each
//! finished epoch and attack batch is on disk, so a rerun resumes where the run stopped.
//!
//! A run's status is written under the lock of the list of runs in progress
//! (`results::running`), and the stopping thread keeps it until the process exits: a status
//! written after the interruption (a run finishing at that moment) cannot replace
//! "interrupted", and an interrupted run is never left marked "running".
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::results::running::status_guard;
use crate::results::store::{RunDir, Status, utc_now};

/// How long the workers have to stop after their SIGTERM before they are killed.
pub const WORKER_GRACE: Duration = Duration::from_secs(4);

/// The signal received (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The write end of the pipe that wakes the stopping thread (-1: not installed).
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// The worker processes this process started.
struct State {
    /// Worker processes alive: pid and the folder of their run.
    workers: Vec<(u32, PathBuf)>,
    stopping: bool,
}

static STATE: Mutex<State> = Mutex::new(State { workers: Vec::new(), stopping: false });

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a signal has asked this process to stop.
pub fn stopping() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: an atomic store and a write(2).
    let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = [0u8; 1];
        // SAFETY: writes one byte from a live buffer to a pipe this module opened.
        unsafe {
            libc::write(fd, byte.as_ptr().cast(), 1);
        }
    }
}

/// How the stop is announced.
#[derive(Debug, Clone)]
pub struct Announce {
    /// The command that resumes (printed in the line), e.g. `gfa run grid.toml`.
    pub command: String,
    /// A `--jobs` worker: its parent announces, it says nothing.
    pub worker: bool,
}

/// Catch SIGTERM and SIGINT for the rest of the process (see the module documentation).
pub fn install(announce: Announce) -> Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("creating the pipe of the signal handler: {}", std::io::Error::last_os_error());
    }
    WAKE.store(fds[1], Ordering::SeqCst);
    let read_end = fds[0];
    std::thread::Builder::new().name("gfa-signals".into()).spawn(move || {
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: reads one byte into a live buffer from the pipe opened above.
            let n = unsafe { libc::read(read_end, byte.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        stop(SIGNAL.load(Ordering::SeqCst), &announce);
    })?;
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only does async-signal-safe work; the sigaction
        // struct is zeroed and then filled in before use.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                bail!(
                    "installing the handler of signal {sig}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    Ok(())
}

/// Start a `--jobs` worker for the run in `dir`, unless this process is stopping (`None`).
pub fn spawn(cmd: &mut Command, dir: &Path) -> std::io::Result<Option<Child>> {
    let mut st = state();
    if st.stopping || stopping() {
        return Ok(None);
    }
    let child = cmd.spawn()?;
    st.workers.push((child.id(), dir.to_path_buf()));
    Ok(Some(child))
}

/// A worker started by [`spawn`] has been waited for.
pub fn worker_ended(pid: u32) {
    state().workers.retain(|(p, _)| *p != pid);
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// The stop itself (see the module documentation); never returns.
fn stop(sig: i32, announce: &Announce) -> ! {
    let name = signal_name(sig);
    let workers = {
        let mut st = state();
        st.stopping = true;
        st.workers.clone()
    };
    let signal_all = |s: libc::c_int| {
        for (pid, _) in state().workers.iter() {
            // SAFETY: signals a child of this process that has not been waited for yet (the
            // watcher removes it from the list once waited for, so the pid is not reused).
            unsafe {
                libc::kill(*pid as libc::pid_t, s);
            }
        }
    };
    let wait_workers = |limit: Duration| {
        let t0 = Instant::now();
        while !state().workers.is_empty() && t0.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if !workers.is_empty() {
        signal_all(libc::SIGTERM);
        wait_workers(WORKER_GRACE);
        signal_all(libc::SIGKILL);
        wait_workers(Duration::from_secs(2));
    }
    // Kept until the process exits: a checkpoint being written is finished first (its files
    // are one set), none is started after, and no status is written after this one.
    let _groups = gfa_data::atomic::stop_groups();
    let st = status_guard();
    let when = utc_now();
    let text = format!("stopped by {name} at {when}; `gfa run` resumes it");
    let mut marked: Vec<String> = Vec::new();
    for p in st.running() {
        let dir = RunDir { path: p.clone() };
        let _ = dir.write_status(&Status::Interrupted(text.clone()));
        dir.log(&format!("interrupted: {text}"));
        marked.push(dir.id());
    }
    // A worker's run it left "running" (killed before it could say otherwise).
    for (_, p) in &workers {
        let dir = RunDir { path: p.clone() };
        if dir.status() == Status::Running
            && let Ok(Some(_lock)) = dir.try_lock()
        {
            let _ = dir.write_status(&Status::Interrupted(text.clone()));
            dir.log(&format!("interrupted: {text}"));
        }
        if matches!(dir.status(), Status::Interrupted(_)) && !marked.contains(&dir.id()) {
            marked.push(dir.id());
        }
    }
    if !announce.worker {
        let runs = match marked.len() {
            0 => "no run was in progress".to_string(),
            1 => format!("run {} marked interrupted", marked[0]),
            n => format!("{n} runs marked interrupted ({})", marked.join(", ")),
        };
        let slurm = if std::env::var_os("SLURM_JOB_ID").is_some() {
            " (under Slurm: resubmit the job script)"
        } else {
            ""
        };
        eprintln!("\ngfa run: stopped by {name}; {runs}. To resume: {}{slurm}", announce.command);
    }
    // SAFETY: ends the process at once, without unwinding the other threads (libtorch's
    // included) or running exit handlers; the runs' flocks are released by the kernel.
    unsafe { libc::_exit(128 + sig) }
}

/// This process's command line, quoted for a POSIX shell: the resume command.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
    args.join(" ")
}

/// `s` as one word of a POSIX shell command.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
