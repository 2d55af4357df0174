//! Another Delta reader over keyshift's tables: delta-rs's Python package
//! (`deltalake`, installed into `.tools/venv` by scripts/tools.sh) reads the
//! tables `keyshift import` wrote, on local disk and on the S3 server, and
//! must find the same rows and recompute the same KPI figures as
//! `keyshift kpis` (tests/interop/read_tables.py). Apache Spark reads them
//! in scripts/interop-spark.sh (see docs/scaling.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/kpi-events.ndjson"
);
const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/read_tables.py");
const FROM: &str = "2026-11-02T00:00:00Z";
const TO: &str = "2026-11-04T00:00:00Z";

/// The venv's Python with `deltalake`; `None` when the test is skipped.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("KEYSHIFT_TEST_PYTHON").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/.tools/venv/bin/python"
            ))
        },
        PathBuf::from,
    );
    let usable = Command::new(&python)
        .args(["-c", "import deltalake, pyarrow"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} cannot import deltalake: in CI the interoperability test must run \
             (scripts/tools.sh installs it)",
            python.display()
        );
    }
    eprintln!(
        "\n*** SKIPPED: interoperability test — {} has no `deltalake`; run scripts/tools.sh. ***\n",
        python.display()
    );
    None
}

fn keyshift(data_dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keyshift"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .expect("keyshift");
    assert!(out.status.success(), "keyshift {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf8")
}

/// What keyshift says about the range: the same figures the reader
/// recomputes, taken from `keyshift kpis --json`.
fn from_keyshift(data_dir: &Path, env: &[(&'static str, String)]) -> Value {
    let report: Value = serde_json::from_str(&keyshift(
        data_dir,
        env,
        &[
            "kpis",
            "--json",
            "--rp-id",
            "golden.example",
            "--from",
            FROM,
            "--to",
            TO,
            "--kpi",
            "credential_mix,time_to_sign_in_p50,recovery_per_1k_signins",
        ],
    ))
    .expect("kpis json");
    let totals = |name: &str, field: &str| -> Value {
        let kpi = report["kpis"]
            .as_array()
            .and_then(|k| k.iter().find(|k| k["kpi"] == name))
            .unwrap_or_else(|| panic!("{name} missing: {report}"));
        kpi["totals"]
            .as_array()
            .expect("totals")
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("all").to_owned(),
                    t[field].clone(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "credential_mix": totals("credential_mix", "numerator"),
        "time_to_sign_in_p50": totals("time_to_sign_in_p50", "value"),
        "recovery_started": totals("recovery_per_1k_signins", "numerator"),
    })
}

fn from_python(python: &Path, root: &str, env: &[(&'static str, String)]) -> Value {
    let out = Command::new(python)
        .args([READER, root, FROM, TO])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .expect("python");
    assert!(out.status.success(), "read_tables.py failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("reader json")
}

/// Imports the golden events into `root` and compares both readers.
fn compare(python: &Path, root: &str, env: &[(&'static str, String)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    keyshift(dir.path(), env, &["import", "--no-progress", GOLDEN]);
    let ours = from_keyshift(dir.path(), env);
    let theirs = from_python(python, root, env);
    assert_eq!(
        (
            &theirs["auth_events"],
            &theirs["distinct_event_ids"],
            &theirs["rejected_events"]
        ),
        (&json!(277), &json!(277), &json!(0)),
        "{theirs}"
    );
    for figure in ["credential_mix", "recovery_started"] {
        assert_eq!(theirs[figure], ours[figure], "{figure}");
    }
    // The overall median is not among keyshift's per-method totals.
    let mut p50 = theirs["time_to_sign_in_p50"].clone();
    p50.as_object_mut().expect("p50").remove("all");
    assert_eq!(p50, ours["time_to_sign_in_p50"], "time_to_sign_in_p50");
}

#[test]
fn deltalake_python_reads_the_tables_on_local_disk_like_keyshift() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tables").display().to_string();
    let env = vec![("KEYSHIFT__STORE__URI", root.clone())];
    compare(&python, &root, &env);
}

#[test]
fn deltalake_python_reads_the_tables_on_s3_like_keyshift() {
    let Some(s3) = crate::s3::s3_root("interop") else {
        return;
    };
    let Some(python) = python() else {
        return;
    };
    compare(&python, &s3.uri, &s3.env());
}
