//! What `nimbus up` shows while it prepares functions: a spinner per function on a
//! terminal, as `cargo` and `spin build` do, or a line per step when the output is not a
//! terminal (CI logs, pipes). On stdout, beside the summary; logs stay on stderr.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Writes `line` and a newline to stdout, or nothing when stdout cannot take it: `up`
/// keeps serving after its stdout's reader has gone (`nimbus up | head`, a log shipper
/// restarting), where `println!` would panic the task that printed (the watcher, which
/// prints its rebuilds).
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Progress of `nimbus up`'s preparation.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Spinners when stdout is a terminal; plain lines otherwise.
    multi: Option<MultiProgress>,
}

/// One step under way (installing a function's dependencies, say).
#[derive(Debug)]
pub(crate) struct Task {
    bar: Option<ProgressBar>,
    name: String,
    what: String,
    started: Instant,
}

impl Progress {
    /// Spinners if stdout is a terminal, plain lines if not.
    pub(crate) fn stdout() -> Progress {
        let multi = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Progress { multi }
    }

    /// Starts showing `what` being done for `name`.
    pub(crate) fn task(&self, name: &str, what: &str) -> Task {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:<20} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_owned());
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if bar.is_none() {
            say(format_args!("  building {name}: {what}"));
        }
        Task {
            bar,
            name: name.to_owned(),
            what: what.to_owned(),
            started: Instant::now(),
        }
    }
}

impl Task {
    fn finish(self, mark: &str, note: &str) {
        let line = format!(
            "{} {note} ({:.1}s)",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
        match self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:<22} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(format!("{mark} {line}"));
            }
            None => say(format_args!("  {mark} {}: {line}", self.name)),
        }
    }

    /// The step succeeded.
    pub(crate) fn done(self) {
        self.finish("ok", "done");
    }

    /// The step failed but the app can run without it.
    pub(crate) fn warn(self, why: &str) {
        self.finish("warning", &format!("skipped: {why}"));
    }

    /// The step failed.
    pub(crate) fn fail(self) {
        self.finish("failed", "failed");
    }
}
