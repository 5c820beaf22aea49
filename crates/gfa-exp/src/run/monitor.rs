//! What `gfa run` shows while it works, and what it writes into each run's `log.txt`.
//!
//! On a terminal: one progress bar over the grid's stages, whose message follows the current
//! run (epoch, attack batch), with a line printed above it per finished epoch and stage. With
//! stderr redirected (nohup, Slurm): one plain line per stage and epoch, each starting with the
//! time since the command started and the run id (a `--jobs` worker's lines pass through its
//! parent, which shows them the same way). `--quiet`: nothing. Every
//! event also goes to the run's `log.txt` (stages, epochs, attack batches, timings), whatever is
//! shown.
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::results::store::RunDir;

/// How events are shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// A progress bar (stderr is a terminal).
    Bar,
    /// One line per stage and epoch (stderr is a file or a pipe).
    Lines,
    /// As `Lines`, without the time: a `--jobs` worker, whose parent adds its own.
    Worker,
    /// Nothing (`--quiet`, tests).
    Quiet,
}

/// The grid's progress display, shared by the runner and the stages (cloning shares it).
#[derive(Debug, Clone)]
pub struct Monitor {
    bar: ProgressBar,
    show: Show,
    start: Instant,
}

impl Default for Monitor {
    /// Shows nothing.
    fn default() -> Self {
        Self::with(Show::Quiet)
    }
}

impl Monitor {
    /// A bar on a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self::with(match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => Show::Quiet,
            (false, true) => Show::Bar,
            (false, false) => Show::Lines,
        })
    }

    pub fn with(show: Show) -> Self {
        let bar = if show == Show::Bar { ProgressBar::new(0) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} stages [{elapsed_precise}] {msg}")
                .expect("valid template"),
        );
        Self { bar, show, start: Instant::now() }
    }

    pub fn show(&self) -> Show {
        self.show
    }

    /// The number of stages the bar counts to.
    pub fn set_total(&self, stages: u64) {
        self.bar.set_length(stages);
    }

    /// One stage of the grid done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// What the bar says it is doing.
    pub fn status(&self, text: impl Into<String>) {
        self.bar.set_message(text.into());
    }

    /// A line for the user: above the bar, or on its own line, or nowhere.
    pub fn line(&self, text: &str) {
        match self.show {
            Show::Bar => self.bar.println(text),
            Show::Lines => eprintln!("[{}] {text}", hms(self.start.elapsed().as_secs())),
            Show::Worker => eprintln!("{text}"),
            Show::Quiet => {}
        }
    }

    /// A stage or epoch of a run: into its log, and shown as a line.
    pub fn event(&self, dir: &RunDir, text: &str) {
        dir.log(text);
        self.line(&format!("{} {text}", dir.id()));
    }

    /// Progress inside a stage (an attack's batches): into the run's log and the bar's message,
    /// never a line of its own.
    pub fn progress(&self, dir: &RunDir, text: &str) {
        dir.log(text);
        if self.show == Show::Bar {
            self.bar.set_message(format!("{} {text}", dir.id()));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `h:mm:ss`.
pub fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
