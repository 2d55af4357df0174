//! Asks the table about keys the dedup index is unsure of (see
//! [`super::Seen::Unsure`]): which of these `(rp_id, event_id)` pairs were
//! stored since the window's start. Runs in the control lane.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use keyshift_store::QueryEngine;

use crate::{IngestError, Result};

/// Event ids per query (the `IN` list).
const PER_QUERY: usize = 500;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The statement for one chunk of ids.
pub fn statement(since: DateTime<Utc>, ids: &[(&str, &str)]) -> String {
    let list: Vec<String> = ids.iter().map(|(_, id)| quote(id)).collect();
    format!(
        "SELECT rp_id, event_id FROM auth_events \
         WHERE received_at >= to_timestamp_micros({}) AND event_id IN ({})",
        since.timestamp_micros(),
        list.join(", ")
    )
}

/// The pairs of `ids` that `auth_events` holds, stored since `since`.
pub async fn stored(
    engine: &QueryEngine,
    since: DateTime<Utc>,
    ids: &[(&str, &str)],
) -> Result<HashSet<(String, String)>> {
    let wanted: HashSet<(&str, &str)> = ids.iter().copied().collect();
    let mut found = HashSet::new();
    for chunk in ids.chunks(PER_QUERY) {
        let sql = statement(since, chunk);
        let batches = super::control_rows(engine, sql).await?;
        for batch in &batches {
            let strings = |i: usize| {
                cast(batch.column(i), &DataType::Utf8)
                    .map_err(|e| IngestError::DedupLoad(e.to_string()))
            };
            let (rp, id) = (strings(0)?, strings(1)?);
            let (Some(rp), Some(id)) = (rp.as_string_opt::<i32>(), id.as_string_opt::<i32>())
            else {
                return Err(IngestError::DedupLoad(format!(
                    "unexpected column types {:?}",
                    batch.schema()
                )));
            };
            for (rp, id) in rp.iter().zip(id.iter()) {
                if let (Some(rp), Some(id)) = (rp, id)
                    && wanted.contains(&(rp, id))
                {
                    found.insert((rp.to_owned(), id.to_owned()));
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_quoted() {
        let sql = statement(DateTime::UNIX_EPOCH, &[("r", "a'b"), ("r", "c")]);
        assert!(sql.ends_with("event_id IN ('a''b', 'c')"), "{sql}");
    }
}
