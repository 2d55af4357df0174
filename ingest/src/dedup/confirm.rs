//! Asks the table about keys the dedup index is unsure of (see
//! [`super::Seen::Unsure`]): which of these `(rp_id, event_id)` pairs were
//! stored since the window's start. Runs in the control lane.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keyshift_store::QueryEngine;

use super::string_column;
use crate::Result;

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

/// Per pair of `ids`, whether `auth_events` holds it, stored since `since`.
pub async fn stored(
    engine: &QueryEngine,
    since: DateTime<Utc>,
    ids: &[(&str, &str)],
) -> Result<Vec<bool>> {
    let mut found = vec![false; ids.len()];
    for (chunk, start) in ids.chunks(PER_QUERY).zip((0..).step_by(PER_QUERY)) {
        let at: HashMap<(&str, &str), usize> = chunk.iter().copied().zip(start..).collect();
        let batches = super::control_rows(engine, statement(since, chunk)).await?;
        for batch in &batches {
            let (rp, id) = (string_column(batch, 0)?, string_column(batch, 1)?);
            for pair in rp.iter().zip(id.iter()) {
                if let (Some(rp), Some(id)) = pair
                    && let Some(i) = at.get(&(rp, id))
                {
                    found[*i] = true;
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
