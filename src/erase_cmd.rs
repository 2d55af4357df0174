//! `keyshift erase`: removes every stored row of one user of one relying
//! party (a data subject's erasure request), and logs the erasure without
//! the user's identifier.

use std::io::BufRead as _;
use std::time::Duration;

use anyhow::{Context, bail};
use keyshift_ingest::pseudonym::Pseudonymizer;
use keyshift_store::maintenance::erase::{ErasureReport, ErasureTarget, erase};
use keyshift_store::maintenance::lock::lock_dir;

use crate::config::Config;

/// Whom to erase.
#[derive(Debug, Clone, clap::Args)]
pub struct EraseArgs {
    /// The relying party.
    #[arg(long)]
    pub rp_id: String,
    /// The user's id as the relying party sends it; `-` reads it from the
    /// first line of stdin (keeps it out of the shell history).
    #[arg(long)]
    pub user_id: String,
    /// How long to wait for a running maintenance pass.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration, default_value = "10m")]
    pub lock_wait: Duration,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The keys that name `user_id` of `rp_id` in the tables, from the secret
/// the events were keyed with.
pub fn target(pseudo: &Pseudonymizer, rp_id: &str, user_id: &str) -> ErasureTarget {
    let user_key = pseudo.key("user", rp_id, user_id);
    // A refused input's copy is keyed under its own rp_id, or under none.
    let markers = [rp_id, ""]
        .iter()
        .map(|rp| format!("hmac:{}", pseudo.key("user", rp, user_id)))
        .collect();
    ErasureTarget {
        rp_id: rp_id.to_owned(),
        user_key,
        reject_markers: markers,
    }
}

/// Erases the user from the store of `config`; the report as text or JSON.
pub async fn run_erase(config: &Config, args: &EraseArgs) -> anyhow::Result<String> {
    let user_id = if args.user_id == "-" {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim().to_owned()
    } else {
        args.user_id.clone()
    };
    if user_id.is_empty() || args.rp_id.is_empty() {
        bail!("--rp-id and --user-id must not be empty");
    }
    let pseudo = Pseudonymizer::load(&config.secret_path())?;
    let root = config.store_root();
    let m = &config.maintenance;
    let report = erase(
        &root,
        &config.store.storage_options,
        lock_dir(&root).as_deref(),
        &target(&pseudo, &args.rp_id, &user_id),
        m.vacuum_grace + m.vacuum_full_every,
        args.lock_wait,
    )
    .await
    .with_context(|| format!("erasing from the tables under {root}"))?;
    Ok(if args.json {
        serde_json::to_string_pretty(&report)?
    } else {
        summary(&report)
    })
}

fn summary(r: &ErasureReport) -> String {
    format!(
        "erasure {id}: {events} rows of auth_events and {rejected} of rejected_events deleted \
         at {at}.\nQueries no longer see them (a running server: per table from its next \
         commit to it, its next maintenance pass or a restart). The files that held them are deleted from storage by the vacuum \
         by {gone}.",
        id = r.erasure_id,
        events = r.rows_auth_events,
        rejected = r.rows_rejected_events,
        at = r.erased_at.to_rfc3339(),
        gone = r.files_gone_by.to_rfc3339(),
    )
}
