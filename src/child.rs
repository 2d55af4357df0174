//! A `keyshift` child process, as `keyshift bench kafka` and the end-to-end
//! tests run one: stopped with SIGTERM (or SIGKILL), measured from `/proc`,
//! and killed when dropped so that a failed bench or test leaves nothing
//! running.

use std::collections::BTreeMap;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child process; killed on drop unless it already exited.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
}

impl Child {
    /// Starts `command`.
    pub fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        Ok(Self { child })
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The standard output pipe, when the command asked for one (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The standard error pipe, when the command asked for one (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Sends SIGTERM (a graceful shutdown) without waiting.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.id());
        }
        Ok(())
    }

    /// SIGTERM, then waits: an error unless the process exited with success.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()?;
        let status = self.child.wait().context("waiting for the child")?;
        if !status.success() {
            bail!("{} exited with {status}", self.id());
        }
        Ok(())
    }

    /// SIGKILL (a crash), and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory so far, KiB (`VmHWM` of `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time (user + system, clock ticks) per thread name.
    pub fn cpu_ticks_by_thread_name(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.id())) else {
            return out;
        };
        for entry in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close].to_owned();
            // utime and stime: fields 14 and 15, the 12th and 13th after `)`.
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks: u64 = fields
                .get(11..13)
                .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
                .unwrap_or(0);
            *out.entry(name).or_default() += ticks;
        }
        out
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port nobody listens on right now (for a child's API).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminated_child_is_reported_and_a_dropped_one_is_killed() {
        let sleep = || {
            let mut c = Command::new("sleep");
            c.arg("30");
            c
        };
        let child = Child::spawn(sleep()).expect("sleep");
        assert!(child.peak_rss_kib().is_some_and(|kib| kib > 0));
        let err = child.stop().expect_err("sleep dies of SIGTERM");
        assert!(err.to_string().contains("signal: 15"), "{err}");
        let child = Child::spawn(sleep()).expect("sleep");
        let pid = child.id();
        drop(child);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
