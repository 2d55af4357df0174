//! A fault-injection seam for tests: makes chosen commits fail with real
//! deltalake errors of each [`ErrorKind`](crate::ErrorKind), so the kind is
//! followed through the writer, the ingest paths and the HTTP answer.
//!
//! Inert unless armed, and armed only through code (`Writer::spawn_with`,
//! the binary's `StartOptions`): no configuration key or environment
//! variable reaches it.

use std::sync::{Arc, Mutex, PoisonError};

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::{CommitConflictError, TransactionError};

use crate::{Result, StoreError};

/// What [`Faults`] rules name instead of a table to fail the writer's
/// reload of the tables (a partition assignment's `refresh`).
#[doc(hidden)]
pub const REFRESH: &str = "refresh";

/// The kind of failure to inject.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Another writer committed first.
    Conflict,
    /// The object store did not answer.
    Transient,
    /// The object store refused us (permissions).
    Fatal,
    /// keyshift wrote something invalid (a Parquet encoding error).
    Bug,
}

#[derive(Debug)]
enum Rule {
    Next {
        fault: Fault,
        table: &'static str,
        times: usize,
    },
    Row {
        fault: Fault,
        table: &'static str,
        event_id: String,
    },
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    hits: usize,
}

/// Shared switchboard of injected faults; clones control the same writer.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

impl Faults {
    /// The next `times` commits to `table` fail with `fault`, before
    /// anything is written.
    pub fn fail_next(&self, fault: Fault, table: &'static str, times: usize) {
        self.lock().rules.push(Rule::Next {
            fault,
            table,
            times,
        });
    }

    /// Every commit to `table` holding the event `event_id` fails (a poison
    /// row).
    pub fn fail_rows_with(&self, fault: Fault, table: &'static str, event_id: &str) {
        self.lock().rules.push(Rule::Row {
            fault,
            table,
            event_id: event_id.to_owned(),
        });
    }

    /// Disarms every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// How many commits failed by injection so far.
    pub fn hits(&self) -> usize {
        self.lock().hits
    }

    /// Fails the commit of `event_ids` to `table` when a rule says so.
    pub(crate) fn check<'a>(
        &self,
        table: &'static str,
        event_ids: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<()> {
        let mut state = self.lock();
        if state.rules.is_empty() {
            return Ok(());
        }
        let mut hit = None;
        for rule in &mut state.rules {
            match rule {
                Rule::Next {
                    fault,
                    table: t,
                    times,
                } if *t == table && *times > 0 => {
                    *times -= 1;
                    hit = Some(*fault);
                    break;
                }
                Rule::Row {
                    fault,
                    table: t,
                    event_id,
                } if *t == table && event_ids.clone().any(|id| id == event_id) => {
                    hit = Some(*fault);
                    break;
                }
                _ => {}
            }
        }
        let Some(fault) = hit else { return Ok(()) };
        state.hits += 1;
        Err(StoreError::delta(table)(injected(fault)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The deltalake error a real failure of this kind would produce.
fn injected(fault: Fault) -> DeltaTableError {
    let cause = || Box::new(std::io::Error::other("injected fault")) as _;
    match fault {
        Fault::Conflict => DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
        },
        Fault::Transient => DeltaTableError::ObjectStore {
            source: deltalake::ObjectStoreError::Generic {
                store: "injected",
                source: cause(),
            },
        },
        Fault::Fatal => DeltaTableError::ObjectStore {
            source: deltalake::ObjectStoreError::PermissionDenied {
                path: "injected".to_owned(),
                source: cause(),
            },
        },
        Fault::Bug => DeltaTableError::Parquet {
            source: deltalake::parquet::errors::ParquetError::General(
                "injected encoding failure".to_owned(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn each_fault_is_a_real_error_of_its_kind() {
        for (fault, kind) in [
            (Fault::Conflict, ErrorKind::Conflict),
            (Fault::Transient, ErrorKind::Transient),
            (Fault::Fatal, ErrorKind::Fatal),
            (Fault::Bug, ErrorKind::Bug),
        ] {
            let faults = Faults::default();
            faults.fail_next(fault, "t", 1);
            let err = faults.check("t", std::iter::empty()).expect_err("armed");
            assert_eq!(err.kind(), kind);
            assert!(faults.check("t", std::iter::empty()).is_ok(), "only once");
            assert_eq!(faults.hits(), 1);
        }
    }

    #[test]
    fn a_poison_row_fails_only_commits_that_hold_it() {
        let faults = Faults::default();
        faults.fail_rows_with(Fault::Bug, "t", "e7");
        assert!(faults.check("t", ["e1", "e2"].into_iter()).is_ok());
        assert!(faults.check("other", ["e7"].into_iter()).is_ok());
        assert!(faults.check("t", ["e1", "e7"].into_iter()).is_err());
        faults.clear();
        assert!(faults.check("t", ["e7"].into_iter()).is_ok());
    }
}
