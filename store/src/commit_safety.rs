//! Whether an object store can take Delta commits from several writers.
//!
//! A Delta commit is "create `_delta_log/<version>.json` unless it exists".
//! On a local disk delta-rs does that with an atomic link; on S3 and
//! S3-compatible stores it sends a conditional PUT (`If-None-Match: *`) and
//! counts on the store to refuse the second writer of a version with 412.
//! A store that ignores the header lets the second writer overwrite the
//! first one's commit: rows vanish from the table without an error. Before
//! a process writes to an object store, [`check`] asks the store that
//! question with a probe object, and a store that answers wrong is refused.
//!
//! The one way around the check is delta-rs's own statement that there is a
//! single writer, `aws_s3_allow_unsafe_rename = "true"` in
//! `store.storage_options`: then keyshift warns and writes without it.

use std::collections::HashMap;

use deltalake::DeltaTableBuilder;
use deltalake::ObjectStoreError;
use deltalake::logstore::object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutPayload, path::Path,
};

use crate::tables::{register_storage_handlers, table_url};
use crate::{Result, StoreError};

/// Where the probe objects go, beside the tables (Delta readers never look
/// at a directory that is not a table's).
const PROBE_DIR: &str = "_keyshift";

/// The storage option by which the operator states there is only one writer.
const SINGLE_WRITER_OPTION: &str = "aws_s3_allow_unsafe_rename";

/// What the probe found, from the two conditional PUTs of one fresh key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The second create was refused: commits are atomic.
    Atomic,
    /// The second create overwrote the first: two writers would lose commits.
    Overwrites,
}

/// Judges the answers to "create" then "create again" of one key. `Err`
/// is a store that failed in another way (unreachable, no permission):
/// that error is the caller's to report as it is.
pub(crate) fn judge(
    first: std::result::Result<(), ObjectStoreError>,
    second: std::result::Result<(), ObjectStoreError>,
) -> std::result::Result<Verdict, ObjectStoreError> {
    first?;
    match second {
        Ok(()) => Ok(Verdict::Overwrites),
        Err(ObjectStoreError::AlreadyExists { .. } | ObjectStoreError::Precondition { .. }) => {
            Ok(Verdict::Atomic)
        }
        Err(e) => Err(e),
    }
}

/// Puts one probe object twice with "create only" and judges the answers;
/// the probe is deleted again either way.
pub(crate) async fn probe(
    store: &dyn ObjectStore,
    name: &str,
) -> std::result::Result<Verdict, ObjectStoreError> {
    let path = Path::from(name);
    let create = || async {
        store
            .put_opts(
                &path,
                PutPayload::from_static(b"keyshift commit probe"),
                PutMode::Create.into(),
            )
            .await
            .map(|_| ())
    };
    let first = create().await;
    let second = if first.is_ok() {
        create().await
    } else {
        Ok(())
    };
    let verdict = judge(first, second);
    if let Err(e) = store.delete(&path).await
        && !matches!(e, ObjectStoreError::NotFound { .. })
    {
        tracing::warn!(path = %path, error = %e, "could not delete the commit probe");
    }
    verdict
}

/// Refuses an object store at `root` that would let two writers overwrite
/// each other's commits; a local directory or `file://` root passes without
/// a probe.
pub async fn check(root: &str, options: &HashMap<String, String>) -> Result<()> {
    if !root.contains("://") || root.starts_with("file://") {
        return Ok(());
    }
    if single_writer_declared(options) {
        tracing::warn!(
            root,
            "{SINGLE_WRITER_OPTION} is set: commits are not checked for atomicity; \
             run exactly one writer on these tables"
        );
        return Ok(());
    }
    register_storage_handlers();
    let refused = |reason: String| StoreError::UnsafeObjectStore {
        uri: root.to_owned(),
        reason,
    };
    let url = table_url(root, PROBE_DIR)?;
    let store = DeltaTableBuilder::from_url(url)
        .and_then(|b| b.with_storage_options(options.clone()).build_storage())
        .map_err(|e| refused(format!("cannot reach the store: {e}")))?
        .object_store(None);
    let name = format!(
        "commit-probe-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    match probe(store.as_ref(), &name).await {
        Ok(Verdict::Atomic) => Ok(()),
        Ok(Verdict::Overwrites) => Err(refused(format!(
            "the store ignored a conditional PUT (If-None-Match: *) and overwrote an \
             existing object, so two writers could overwrite each other's Delta commits \
             and lose rows; use a store that supports conditional writes (AWS S3, \
             MinIO, Cloudflare R2, S3Proxy 4+), or set storage option \
             {SINGLE_WRITER_OPTION} = \"true\" if exactly one process will ever write"
        ))),
        Err(e) => Err(refused(format!(
            "probing conditional writes under {PROBE_DIR}/ failed: {e}"
        ))),
    }
}

/// delta-rs reads the option from the storage options, else from the
/// environment (upper case); so does this.
fn single_writer_declared(options: &HashMap<String, String>) -> bool {
    let is_true = |v: &str| v.eq_ignore_ascii_case("true");
    match options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(SINGLE_WRITER_OPTION))
    {
        Some((_, v)) => is_true(v),
        None => std::env::var(SINGLE_WRITER_OPTION.to_ascii_uppercase()).is_ok_and(|v| is_true(&v)),
    }
}

#[cfg(test)]
mod tests {
    use deltalake::logstore::object_store::memory::InMemory;

    use super::*;

    fn exists() -> ObjectStoreError {
        ObjectStoreError::AlreadyExists {
            path: "p".into(),
            source: "exists".into(),
        }
    }

    #[test]
    fn a_refused_second_create_means_atomic_commits() {
        assert_eq!(
            judge(Ok(()), Err(exists())).expect("verdict"),
            Verdict::Atomic
        );
        let precondition = ObjectStoreError::Precondition {
            path: "p".into(),
            source: "412".into(),
        };
        assert_eq!(
            judge(Ok(()), Err(precondition)).expect("verdict"),
            Verdict::Atomic
        );
    }

    #[test]
    fn an_accepted_second_create_means_lost_commits() {
        assert_eq!(judge(Ok(()), Ok(())).expect("verdict"), Verdict::Overwrites);
    }

    #[test]
    fn other_failures_are_reported_as_they_are() {
        let denied = || ObjectStoreError::PermissionDenied {
            path: "p".into(),
            source: "403".into(),
        };
        assert!(matches!(
            judge(Err(denied()), Ok(())),
            Err(ObjectStoreError::PermissionDenied { .. })
        ));
        assert!(matches!(
            judge(Ok(()), Err(denied())),
            Err(ObjectStoreError::PermissionDenied { .. })
        ));
    }

    #[tokio::test]
    async fn a_store_that_honours_create_passes_and_keeps_no_probe() {
        let store = InMemory::new();
        assert_eq!(probe(&store, "p").await.expect("probe"), Verdict::Atomic);
        assert!(matches!(
            store.head(&Path::from("p")).await,
            Err(ObjectStoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn local_roots_need_no_probe() {
        check("/nonexistent/keyshift", &HashMap::new())
            .await
            .expect("no probe for local roots");
        check("file:///nonexistent/keyshift", &HashMap::new())
            .await
            .expect("no probe for local roots");
    }

    #[test]
    fn the_single_writer_statement_is_read_in_any_case() {
        let opts = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert!(single_writer_declared(&opts(
            "AWS_S3_ALLOW_UNSAFE_RENAME",
            "TRUE"
        )));
        assert!(single_writer_declared(&opts(
            "aws_s3_allow_unsafe_rename",
            "true"
        )));
        assert!(!single_writer_declared(&opts(
            "aws_s3_allow_unsafe_rename",
            "false"
        )));
        assert!(!single_writer_declared(&HashMap::new()));
    }
}
