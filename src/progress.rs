//! What a run shows while it works.
//!
//! On a terminal (and without `--no-progress`), `up` and `down` keep one live line per
//! resource kind, with a spinner, its status and the time it has taken, drawn with
//! `indicatif`; log lines are printed above those lines. Anywhere else — stderr piped to a
//! file or CI log, or `--no-progress` — nothing is drawn and the log is plain lines. The
//! walker reports each kind's start and end through [`start`] and [`finish`].

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

struct Live {
    multi: MultiProgress,
    bars: Mutex<HashMap<&'static str, ProgressBar>>,
}

static LIVE: OnceLock<Live> = OnceLock::new();

/// Turns live progress on for this process (call once, before logging starts).
pub fn enable() {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let _ = LIVE.set(Live {
        multi,
        bars: Mutex::new(HashMap::new()),
    });
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A kind started.
pub fn start(kind: &'static str, verb: &str) {
    let Some(live) = LIVE.get() else {
        return;
    };
    let bar = live.multi.add(ProgressBar::new_spinner());
    bar.set_style(style("{spinner} {prefix:<24} {msg} ({elapsed})"));
    bar.set_prefix(kind);
    bar.set_message(verb.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut bars = live.bars.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(old) = bars.insert(kind, bar) {
        old.finish_and_clear();
    }
}

/// A running kind's status on its live line (e.g. a canary's bake).
pub fn status(kind: &'static str, message: &str) {
    let Some(live) = LIVE.get() else {
        return;
    };
    let bars = live.bars.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(bar) = bars.get(kind) {
        bar.set_message(message.to_string());
    }
}

/// A kind finished: its line stays, with the outcome and the time it took.
pub fn finish(kind: &'static str, ok: bool) {
    let Some(live) = LIVE.get() else {
        return;
    };
    let bars = live.bars.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(bar) = bars.get(kind) {
        bar.set_style(style("{prefix:<26} {msg} ({elapsed})"));
        bar.finish_with_message(if ok { "done" } else { "FAILED" });
    }
}

/// The walk is over: the live lines stay as they are, and what follows is printed below.
pub fn end() {
    let Some(live) = LIVE.get() else {
        return;
    };
    let bars: Vec<ProgressBar> = live
        .bars
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, b)| b)
        .collect();
    for bar in &bars {
        if !bar.is_finished() {
            bar.abandon();
        }
    }
    drop(bars);
}

/// Where log lines go: above the live lines when they are drawn, else plain stderr.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LIVE.get() {
            Some(live) => {
                live.multi.suspend(|| std::io::stderr().write_all(buf))?;
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
