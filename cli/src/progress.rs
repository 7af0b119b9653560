//! A progress bar on stderr, drawn only when stderr is a terminal and the run has lasted a second.

use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    bar: indicatif::ProgressBar,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// A bar to `total`, with `unit` after the counts.
    pub fn new(total: u64, unit: &str) -> Progress {
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::hidden());
        if let Ok(style) =
            indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit}, {{elapsed}}"))
        {
            bar.set_style(style);
        }
        Progress { bar, started: Instant::now(), terminal: std::io::stderr().is_terminal() }
    }

    pub fn update(&self, done: u64) {
        if self.terminal && self.bar.is_hidden() && self.started.elapsed().as_secs_f64() > 1.0 {
            self.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        self.bar.set_position(done);
    }

    pub fn finish(&self) {
        if !self.bar.is_hidden() {
            self.bar.finish_and_clear();
        }
    }
}

impl Progress {
    /// Sets the total (when it is known only once the work has started).
    pub fn set_length(&self, total: u64) {
        self.bar.set_length(total);
    }
}
