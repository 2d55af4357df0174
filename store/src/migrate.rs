//! Bringing a table written by an earlier keyshift to the schema this build
//! writes: the path every schema change takes (a new event type's columns,
//! new optional fields).
//!
//! The rule is additive only. A column this build has and the table lacks
//! is added, nullable, in one metadata commit (`add_columns`); files written
//! before keep their bytes and read as null in it. A column whose type
//! differs from this build's, or a column this build does not know (a newer
//! keyshift wrote the table), stops the start with every difference named:
//! the writer never appends files whose types drift from the table's, so
//! no column can mean two things across files. Renames and type changes are
//! therefore not migrations; they are new columns.

use deltalake::DeltaTable;
use deltalake::kernel::{StructField, StructType};

use crate::{Result, StoreError};

/// What it takes to bring a table to this build's schema.
#[derive(Debug, PartialEq)]
pub(crate) enum Plan {
    /// Nothing: the schemas are equal.
    UpToDate,
    /// Add these columns (nullable), in this order.
    Add(Vec<StructField>),
}

/// The plan for a table of schema `table` and this build's `code`; an error
/// naming every column that cannot be reconciled.
pub(crate) fn plan(name: &'static str, table: &StructType, code: &StructType) -> Result<Plan> {
    let mut problems = Vec::new();
    let mut add = Vec::new();
    for field in code.fields() {
        match table.field(field.name()) {
            Some(have) if have.data_type() != field.data_type() => problems.push(format!(
                "column {} is {:?} in the table and {:?} in this build",
                field.name(),
                have.data_type(),
                field.data_type()
            )),
            Some(_) => {}
            None if !field.is_nullable() => problems.push(format!(
                "column {} is new and not nullable: rows already stored have no value for it",
                field.name()
            )),
            None => add.push(field.clone()),
        }
    }
    for field in table.fields() {
        if code.field(field.name()).is_none() {
            problems.push(format!(
                "column {} is not known to this build (was the table written by a newer keyshift?)",
                field.name()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::SchemaMismatch {
            table: name,
            reason: problems.join("; "),
        });
    }
    Ok(if add.is_empty() {
        Plan::UpToDate
    } else {
        Plan::Add(add)
    })
}

/// Applies [`plan`] to `table`: the table as it is when it already fits,
/// else after the commit that added the missing columns.
pub(crate) async fn migrate(
    table: DeltaTable,
    name: &'static str,
    code: &StructType,
) -> Result<DeltaTable> {
    let current = table.snapshot().map_err(StoreError::delta(name))?.schema();
    let Plan::Add(fields) = plan(name, &current, code)? else {
        return Ok(table);
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    tracing::info!(table = name, columns = ?names, "adding the columns of this build's schema");
    table
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(StoreError::delta(name))
}

#[cfg(test)]
mod tests {
    use deltalake::kernel::DataType;

    use super::*;

    fn schema(fields: &[(&str, DataType, bool)]) -> StructType {
        StructType::try_new(
            fields
                .iter()
                .map(|(n, t, null)| StructField::new(*n, t.clone(), *null)),
        )
        .expect("schema")
    }

    #[test]
    fn new_nullable_columns_are_added_in_order() {
        let table = schema(&[("a", DataType::STRING, false)]);
        let code = schema(&[
            ("a", DataType::STRING, false),
            ("b", DataType::LONG, true),
            ("c", DataType::STRING, true),
        ]);
        let Plan::Add(add) = plan("t", &table, &code).expect("plan") else {
            panic!("expected columns to add");
        };
        let names: Vec<_> = add.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(plan("t", &code, &code).expect("plan"), Plan::UpToDate);
    }

    #[test]
    fn type_drift_unknown_and_required_new_columns_are_refused_together() {
        let table = schema(&[
            ("a", DataType::STRING, false),
            ("t", DataType::TIMESTAMP_NTZ, false),
            ("old", DataType::STRING, true),
        ]);
        let code = schema(&[
            ("a", DataType::STRING, false),
            ("t", DataType::TIMESTAMP, false),
            ("must", DataType::INTEGER, false),
        ]);
        let err = plan("auth_events", &table, &code).expect_err("refused");
        let text = err.to_string();
        for part in [
            "column t is",
            "column must is new",
            "column old is not known",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
        assert_eq!(err.kind(), crate::ErrorKind::Fatal);
    }

    /// An `auth_events` written before schema v2's columns (`signal`,
    /// `hints`) existed: opened by this build, it gains them; old rows read
    /// as null, new rows carry values, both in one query.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_table_gains_the_new_columns_and_keeps_its_rows() {
        use std::sync::Arc;

        use deltalake::arrow::datatypes::Schema;
        use deltalake::writer::{DeltaWriter, RecordBatchWriter};

        use crate::schema::{EVENT_DATE, auth_events_schema, events_to_batch};
        use crate::tests::{count, default_writer, limits, record};
        use crate::{AUTH_EVENTS, QueryEngine, QueryExecutor, StoreConfig, Tables};

        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_str().expect("utf8").to_owned();
        let code = auth_events_schema();
        let dropped = ["signal", "hints"];
        let keep: Vec<usize> = (0..code.fields().len())
            .filter(|i| !dropped.contains(&code.field(*i).name().as_str()))
            .collect();
        let old_schema = Arc::new(Schema::new(
            keep.iter()
                .map(|i| code.field(*i).clone())
                .collect::<Vec<_>>(),
        ));
        let mut old = crate::tables::open_or_create_one(
            &root,
            AUTH_EVENTS,
            old_schema,
            Some(EVENT_DATE),
            None,
            &Default::default(),
        )
        .await
        .expect("old table");
        let rows = events_to_batch(&(0..5).map(record).collect::<Vec<_>>())
            .expect("batch")
            .project(&keep)
            .expect("project");
        let mut writer = RecordBatchWriter::for_table(&old).expect("writer");
        writer.write(rows).await.expect("write");
        writer.flush_and_commit(&mut old).await.expect("commit");

        let tables = Tables::open_or_create(&root, &Default::default())
            .await
            .expect("migrated");
        let (handle, task, cancel) = default_writer(tables);
        let mut new = record(5);
        new.event.schema_version = 2;
        new.event.event_type = keyshift_schemas::EventType::CredentialSignaled;
        new.event.payload = keyshift_schemas::Payload::CredentialSignaled {
            signal: keyshift_schemas::Signal::UnknownCredential,
        };
        handle.write(vec![new], Vec::new()).await.expect("write");
        let engine = QueryEngine::live(
            handle.published(),
            limits(),
            QueryExecutor::standalone(&StoreConfig::default()).expect("runtime"),
        )
        .expect("engine");
        assert_eq!(count(&engine, "SELECT count(*) FROM auth_events").await, 6);
        assert_eq!(
            count(
                &engine,
                "SELECT count(*) FROM auth_events WHERE signal IS NULL"
            )
            .await,
            5,
            "rows of the old files read as null"
        );
        assert_eq!(
            count(
                &engine,
                "SELECT count(*) FROM auth_events WHERE signal = 'unknown_credential' AND schema_version = 2"
            )
            .await,
            1
        );
        cancel.cancel();
        task.await.expect("join").expect("writer");
    }
}
