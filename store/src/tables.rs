//! Opening and creating the Delta tables under one root.

use std::collections::HashMap;
use std::path::Path;

use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::logstore::IORuntime;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use url::Url;

use crate::decisions::rollout_decisions_schema;
use crate::schema::{
    AUTH_EVENTS_STATS, EVENT_DATE, RECEIVED_DATE, REJECTED_EVENTS_STATS, auth_events_schema,
    rejected_events_schema,
};
use crate::{AUTH_EVENTS, REJECTED_EVENTS, ROLLOUT_DECISIONS, Result, StoreError};

/// The tables, loaded at their latest version.
#[derive(Debug, Clone)]
pub struct Tables {
    /// `auth_events`: every accepted event.
    pub events: DeltaTable,
    /// `rejected_events`: every refused input.
    pub rejected: DeltaTable,
    /// Absent in a data dir last written before the rollout controller
    /// existed and opened read-only since.
    pub decisions: Option<DeltaTable>,
}

/// Registers object-store handlers for the URL schemes this build supports.
/// Idempotent.
pub fn register_storage_handlers() {
    #[cfg(feature = "s3")]
    deltalake::aws::register_handlers(None);
}

/// Resolves `root` (a local directory or a URL) plus a table name to a table URL.
pub fn table_url(root: &str, name: &str) -> Result<Url> {
    let location = |reason: String| StoreError::Location {
        uri: root.to_owned(),
        reason,
    };
    if root.contains("://") {
        let mut url = Url::parse(root).map_err(|e| location(e.to_string()))?;
        if url.scheme() != "file" && !cfg!(feature = "s3") {
            return Err(location(format!(
                "scheme {:?} needs a keyshift built with `--features s3`",
                url.scheme()
            )));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        return url.join(name).map_err(|e| location(e.to_string()));
    }
    let dir = Path::new(root).join(name);
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let abs = std::fs::canonicalize(&dir).map_err(|source| StoreError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Url::from_directory_path(&abs)
        .map_err(|()| location(format!("{} is not absolute", abs.display())))
}

/// A handle on the table's location, its log not read yet.
fn unloaded(
    root: &str,
    name: &'static str,
    options: &HashMap<String, String>,
) -> Result<DeltaTable> {
    let url = table_url(root, name)?;
    // Object-store requests run on the runtime that opens the tables (the
    // main one), also when a query on the query runtime makes them: network
    // I/O is not delayed behind CPU-bound query work, and connections are
    // not tied to the query runtime.
    let io = tokio::runtime::Handle::try_current()
        .ok()
        .map(IORuntime::RT);
    DeltaTableBuilder::from_url(url)
        .and_then(|b| {
            let b = b.with_storage_options(options.clone());
            match io {
                Some(rt) => b.with_io_runtime(rt),
                None => b,
            }
            .build()
        })
        .map_err(StoreError::delta(name))
}

/// The table `name` under `root`, created when missing, else brought to
/// `schema` (see [`crate::migrate`]); `stats` (when given) is the list of
/// columns whose statistics the log keeps, set on a table that has another
/// list.
pub(crate) async fn open_or_create_one(
    root: &str,
    name: &'static str,
    schema: deltalake::arrow::datatypes::SchemaRef,
    partition: Option<&str>,
    stats: Option<&[&str]>,
    options: &HashMap<String, String>,
) -> Result<DeltaTable> {
    let stats = stats.map(|c| c.join(","));
    let columns = StructType::try_from_arrow(schema.as_ref())
        .map_err(|e| StoreError::delta(name)(DeltaTableError::from(e)))?;
    let table = unloaded(root, name, options)?;
    // Checking first keeps a fresh data dir from logging a failed load.
    if table
        .verify_deltatable_existence()
        .await
        .map_err(StoreError::delta(name))?
    {
        return load_existing(table, name, &columns, stats.as_deref()).await;
    }
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(columns.fields().cloned())
        .with_partition_columns(partition)
        .with_configuration_property(TableProperty::CheckpointInterval, Some("100"))
        .with_configuration_property(TableProperty::DataSkippingStatsColumns, stats.clone())
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(table) => Ok(table),
        Err(e) => {
            // Two members started on an empty root at once: the other one
            // committed version 0 first. Its table is the one to use.
            let table = unloaded(root, name, options)?;
            if table.verify_deltatable_existence().await.unwrap_or(false) {
                tracing::info!(table = name, "another writer created the table first");
                return load_existing(table, name, &columns, stats.as_deref()).await;
            }
            Err(StoreError::delta(name)(e))
        }
    }
}

/// Loads a table that exists and brings it to this build's schema and
/// statistics columns.
async fn load_existing(
    mut table: DeltaTable,
    name: &'static str,
    columns: &StructType,
    stats: Option<&str>,
) -> Result<DeltaTable> {
    table.load().await.map_err(StoreError::delta(name))?;
    let table = crate::migrate::migrate(table, name, columns).await?;
    match stats {
        Some(columns) => set_stats_columns(table, name, columns.to_owned()).await,
        None => Ok(table),
    }
}

/// Makes `columns` the table's statistics columns when they are not yet
/// (a table created before keyshift set them): one metadata commit. Files
/// written from then on, compacted ones included, follow it.
async fn set_stats_columns(
    table: DeltaTable,
    name: &'static str,
    columns: String,
) -> Result<DeltaTable> {
    const KEY: &str = "delta.dataSkippingStatsColumns";
    let current = table
        .snapshot()
        .map_err(StoreError::delta(name))?
        .metadata()
        .configuration()
        .get(KEY)
        .cloned();
    if current.as_deref() == Some(columns.as_str()) {
        return Ok(table);
    }
    tracing::info!(
        table = name,
        columns,
        "setting the columns the Delta log keeps statistics of"
    );
    match table
        .clone()
        .set_tbl_properties()
        .with_properties(HashMap::from([(KEY.to_owned(), columns)]))
        .await
    {
        Ok(updated) => Ok(updated),
        // Another process setting it at the same moment, say: the next
        // start tries again, and the table works either way.
        Err(e) => {
            tracing::warn!(table = name, error = %e, "could not set the statistics columns");
            Ok(table)
        }
    }
}

async fn open_one(
    root: &str,
    name: &'static str,
    options: &HashMap<String, String>,
) -> Result<DeltaTable> {
    let mut table = unloaded(root, name, options)?;
    if !table
        .verify_deltatable_existence()
        .await
        .map_err(StoreError::delta(name))?
    {
        return Err(StoreError::Location {
            uri: root.to_owned(),
            reason: format!("no {name} table there (has keyshift run with this data dir?)"),
        });
    }
    table.load().await.map_err(StoreError::delta(name))?;
    Ok(table)
}

/// Opens the table `name` under `root`; [`StoreError::Location`] when there
/// is none.
pub(crate) async fn open_existing(
    root: &str,
    name: &'static str,
    options: &HashMap<String, String>,
) -> Result<DeltaTable> {
    register_storage_handlers();
    open_one(root, name, options).await
}

impl Tables {
    /// Opens both tables under `root`, creating any that do not exist yet.
    ///
    /// On object storage it first checks that the store makes commits
    /// atomic ([`crate::commit_safety::check`]): every caller writes.
    pub async fn open_or_create(root: &str, options: &HashMap<String, String>) -> Result<Self> {
        register_storage_handlers();
        crate::commit_safety::check(root, options).await?;
        let events = open_or_create_one(
            root,
            AUTH_EVENTS,
            auth_events_schema(),
            Some(EVENT_DATE),
            Some(AUTH_EVENTS_STATS),
            options,
        )
        .await?;
        let rejected = open_or_create_one(
            root,
            REJECTED_EVENTS,
            rejected_events_schema(),
            Some(RECEIVED_DATE),
            Some(REJECTED_EVENTS_STATS),
            options,
        )
        .await?;
        let decisions = open_or_create_one(
            root,
            ROLLOUT_DECISIONS,
            rollout_decisions_schema(),
            None,
            None,
            options,
        )
        .await?;
        Ok(Self {
            events,
            rejected,
            decisions: Some(decisions),
        })
    }

    /// Opens both tables under `root`; an error if they do not exist.
    pub async fn open(root: &str, options: &HashMap<String, String>) -> Result<Self> {
        register_storage_handlers();
        let events = open_one(root, AUTH_EVENTS, options).await?;
        let rejected = open_one(root, REJECTED_EVENTS, options).await?;
        let decisions = match open_one(root, ROLLOUT_DECISIONS, options).await {
            Ok(t) => Some(t),
            Err(StoreError::Location { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            events,
            rejected,
            decisions,
        })
    }
}
