//! Synthetic auth events for benchmarks, tests and demos: a deterministic
//! function of an index, so runs are reproducible.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

const BROWSERS: [(&str, &str, &str); 4] = [
    ("Chrome", "131.0", "Windows"),
    ("Safari", "18.1", "iOS"),
    ("Firefox", "133.0", "Linux"),
    ("Edge", "131.0", "Windows"),
];

/// One event as an NDJSON line (no trailing newline). `i` picks the id,
/// user, browser and type; `prefix` keeps ids of separate runs apart.
pub fn event_line(out: &mut String, prefix: &str, i: u64, rp_id: &str, at: DateTime<Utc>) {
    let (browser, version, os) = BROWSERS[(i % 4) as usize];
    let user = i % 50_000;
    let ts = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let _ = write!(
        out,
        r#"{{"schema_version":1,"event_id":"{prefix}-{i}","occurred_at":"{ts}","rp_id":"{rp_id}","user_id":"user-{user}","device_id":"dev-{user}","session_id":"ses-{i}","attempt_id":"att-{a}","client":{{"os":"{os}","browser":"{browser}","browser_version":"{version}","form_factor":"desktop","app_type":"web"}},"rollout":{{"rollout_id":"passkey-default","variant":"{variant}","percent":25}},"#,
        a = i / 2,
        variant = if user.is_multiple_of(4) {
            "treatment"
        } else {
            "control"
        },
    );
    let data = match i % 10 {
        0 => {
            r#""event_type":"auth.started","data":{"method":"passkey","mediation":"conditional"}}"#
        }
        1..=6 => {
            r#""event_type":"auth.succeeded","data":{"method":"passkey","cross_device":false,"duration_ms":4200,"credential":{"aaguid":"00000000-0000-0000-0000-000000000000","authenticator_attachment":"platform","transports":["internal","hybrid"],"backup_eligible":true,"backup_state":true,"user_verified":true,"attestation_format":"none"}}}"#
        }
        7 => {
            r#""event_type":"auth.failed","data":{"method":"passkey","error":{"name":"NotAllowedError"}}}"#
        }
        8 => {
            r#""event_type":"auth.fallback","data":{"from_method":"passkey","to_method":"password","reason":"no_credential"}}"#
        }
        _ => {
            r#""event_type":"enrollment.offered","data":{"entry_point":"post_password_signin","nudge_index":1}}"#
        }
    };
    out.push_str(data);
}

/// Event `i` as the store receives it from ingest: validated, its user,
/// device and session replaced by stand-in keys (`i % 50,000` names the
/// user, as in [`event_line`]). For fixtures that write tables directly.
pub fn event_record(
    prefix: &str,
    i: u64,
    rp_id: &str,
    at: DateTime<Utc>,
) -> Result<keyshift_store::EventRecord, keyshift_schemas::SchemaError> {
    let mut line = String::new();
    event_line(&mut line, prefix, i, rp_id, at);
    let now = Utc::now();
    let event = keyshift_schemas::decode_event(
        line.as_bytes(),
        now,
        &keyshift_schemas::DecodeOptions::default(),
    )?;
    let user = i % 50_000;
    Ok(keyshift_store::EventRecord {
        event,
        user_key: Some(format!("{user:032x}")),
        device_key: Some(format!("{user:032x}")),
        session_key: Some(format!("{i:032x}")),
        received_at: now,
        source: keyshift_store::Source::Http,
    })
}

/// `n` events starting at index `start`, as an NDJSON body.
pub fn ndjson_batch(prefix: &str, start: u64, n: u64, rp_id: &str, at: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(n as usize * 720);
    for i in start..start + n {
        event_line(&mut out, prefix, i, rp_id, at);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyshift_schemas::{DecodeOptions, decode_event};

    #[test]
    fn synthetic_events_are_valid() {
        let now = Utc::now();
        let body = ndjson_batch("t", 0, 20, "bench.example", now);
        for line in body.lines() {
            if let Err(e) = decode_event(line.as_bytes(), now, &DecodeOptions::default()) {
                panic!("{e}: {line}");
            }
        }
    }
}
