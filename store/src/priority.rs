//! OS scheduling priority of keyshift's background threads: the query
//! runtime, table maintenance and ingest's parsing threads.

/// Gives the calling thread a lower scheduling priority (`nice`, absolute;
/// 0 leaves it as it is). Linux applies `setpriority(PRIO_PROCESS, tid)` to
/// that one thread; a failure is logged, and the thread runs on as it was.
pub fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %e, nice, "cannot lower the priority of a background thread");
    }
}
