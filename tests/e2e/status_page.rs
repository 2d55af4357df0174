//! The status page in a real browser: a short `keyshift demo --serve`, then
//! headless Chromium loads `/`; every chart must have drawn data points, the
//! page must have logged nothing to the console (errors, CSP violations,
//! failed loads), and a screenshot is kept at `target/status-page.png`.
//!
//! Chromium comes from `scripts/tools.sh` (Debian `chromium`). Without it
//! the test fails under CI and is skipped, loudly, elsewhere.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SMALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/demo-small.toml"
);

/// Charts the page draws for the demo's data (one timeline per rollout).
const CHARTS: [&str; 7] = [
    "timeline-shop-passkey-default",
    "enrollment-funnel",
    "signin-funnel",
    "passkey-success-by-platform",
    "coverage-by-platform",
    "error-mix",
    "recovery",
];

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KEYSHIFT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            (out.status.success() && !path.trim().is_empty()).then(|| PathBuf::from(path.trim()))
        })
}

/// Longest the demo may take to simulate and start serving (about 2
/// minutes in a debug build on two cores).
const DEMO_LIMIT_SECS: u64 = 420;

/// The demo, killed when the test ends, however it ends.
type Demo = keyshift::child::Child;

/// Starts the demo with `--serve`; returns it and its URL once the summary
/// is printed and the API stays up.
fn serve_demo(data_dir: &Path) -> (Demo, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyshift"));
    command
        .args([
            "demo",
            "--serve",
            "--scenario",
            SMALL,
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut demo = Demo::spawn(command).expect("spawn keyshift demo");
    let stdout = demo.take_stdout().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("[demo] {line}");
            if let Some(rest) = line.strip_prefix("Serving the API until Ctrl-C: ")
                && let Some(url) = rest.split_whitespace().next()
                && let Some(t) = tx.take()
            {
                let _ = t.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(DEMO_LIMIT_SECS))
        .unwrap_or_else(|_| panic!("the demo did not start serving within {DEMO_LIMIT_SECS} s"));
    (demo, url)
}

/// `<figure …data-chart="NAME"…>` → its data-points value.
fn points(dom: &str, chart: &str) -> Option<u64> {
    let at = dom.find(&format!("data-chart=\"{chart}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let p = tag.split("data-points=\"").nth(1)?;
    p[..p.find('"')?].parse().ok()
}

/// Longest a Chromium run may take: the page waits for its data in virtual
/// time, so a page whose requests never end would keep it running forever.
const CHROMIUM_LIMIT_SECS: u64 = 180;

/// Runs Chromium under coreutils `timeout` (SIGKILL 5 s after SIGTERM).
fn browse(chrome: &Path, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    let out = Command::new("timeout")
        .args(["-k", "5", &CHROMIUM_LIMIT_SECS.to_string()])
        .arg(chrome)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=30000",
            "--window-size=1400,2600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    // 124: timed out (SIGTERM); 137: killed after the grace period.
    assert!(
        !matches!(out.status.code(), Some(124 | 137)),
        "chromium did not finish within {CHROMIUM_LIMIT_SECS} s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_status_page_draws_every_chart_with_data_and_no_console_errors() {
    let _heavy = crate::common::HEAVY.blocking_lock();
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing under CI: scripts/tools.sh installs Debian's chromium"
        );
        eprintln!(
            "\n*** SKIPPED: the status page browser test needs chromium (scripts/tools.sh installs it) ***\n"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_demo, url) = serve_demo(&dir.path().join("data"));

    let out = browse(&chrome, &dir.path().join("profile"), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never finished:\n{dom}"
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    for chart in CHARTS {
        let n = points(&dom, chart).unwrap_or_else(|| panic!("{chart} not drawn:\n{dom}"));
        assert!(n > 0, "{chart} drew no data");
    }
    for banner in ["id=\"failure\"", "id=\"stale\"", "id=\"auth\""] {
        let at = dom
            .find(banner)
            .unwrap_or_else(|| panic!("{banner} missing"));
        let tag = &dom[at..at + dom[at..].find('>').expect("tag end")];
        assert!(tag.contains("hidden"), "{banner} is shown: {tag}");
    }

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let arg = format!("--screenshot={}", shot.display());
    let out = browse(&chrome, &dir.path().join("profile2"), &[&arg], &url);
    assert!(out.status.success(), "screenshot failed");
    assert!(
        std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000,
        "no screenshot at {}",
        shot.display()
    );
}
