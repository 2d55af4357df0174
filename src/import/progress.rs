//! The import's progress on stderr: a bar redrawn in place on a terminal, a
//! plain line every ten seconds otherwise (a CI or cron log).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use super::FileReport;

/// Where one file's import is.
pub struct Progress {
    size: Option<u64>,
    tty: bool,
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    /// Bytes of the file stored so far.
    at: u64,
}

impl Progress {
    /// Progress through a file of `size` bytes.
    pub fn new(size: Option<u64>, enabled: bool) -> Self {
        Self {
            size,
            tty: std::io::stderr().is_terminal(),
            enabled,
            started: Instant::now(),
            last: None,
            at: 0,
        }
    }

    /// Shows `report`, stored up to byte `at` of the file, when it is time
    /// to.
    pub fn update(&mut self, report: &FileReport, at: u64) {
        self.at = at;
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if self.enabled && self.last.is_none_or(|t| t.elapsed() >= every) {
            self.last = Some(Instant::now());
            self.draw(report, false);
        }
    }

    /// Shows the final state and ends the line.
    pub fn finish(&mut self, report: &FileReport) {
        if self.enabled {
            self.draw(report, true);
        }
    }

    fn draw(&self, report: &FileReport, last: bool) {
        let fraction = self
            .size
            .filter(|s| *s > 0)
            .map(|s| self.at as f64 / s as f64);
        let line = render(report, fraction, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}\x1b[K{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
    }
}

/// One progress line: bar (when the size is known), lines, outcomes, rate.
pub fn render(r: &FileReport, fraction: Option<f64>, elapsed: Duration) -> String {
    const WIDTH: usize = 24;
    let bar = fraction.map_or_else(String::new, |f| {
        let f = f.clamp(0.0, 1.0);
        let done = (f * WIDTH as f64).round() as usize;
        format!(
            "[{}{}] {:>3.0}%  ",
            "#".repeat(done),
            "-".repeat(WIDTH - done),
            f * 100.0
        )
    });
    let rate = r.lines as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "{bar}{} lines  accepted {}  duplicates {}  rejected {}  {:.0} lines/s",
        r.lines, r.accepted, r.duplicates, r.rejected, rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bar_counts_and_rate() {
        let r = FileReport {
            lines: 1_000,
            accepted: 900,
            duplicates: 60,
            rejected: 40,
            ..FileReport::default()
        };
        let line = render(&r, Some(0.5), Duration::from_secs(2));
        assert_eq!(
            line,
            "[############------------]  50%  1000 lines  accepted 900  duplicates 60  \
             rejected 40  500 lines/s"
        );
        assert!(render(&r, None, Duration::from_secs(1)).starts_with("1000 lines"));
    }
}
