//! Schema-v1 event lines: the envelope every simulated event shares (ids,
//! client, the rollout variant the user was served) around its `data`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::scenario::Platform;

/// The rollout a user was served, as it goes into the event.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The rollout's id.
    pub rollout_id: &'a str,
    /// Whether the user is in the treatment arm (else in control).
    pub treatment: bool,
    /// The share of users exposed, in percent (0–100).
    pub percent: f64,
}

/// Who an event is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The user's number: the event's `user_id` is `u{user}`.
    pub user: u32,
    /// The user's current device: `device_id` is `u{user}-d{device}`.
    pub device: u32,
    /// The user's OS/browser slice, which fills the event's `client`.
    pub platform: &'a Platform,
    /// The rollout served; `None` leaves the event without a `rollout`.
    pub served: Option<Served<'a>>,
}

/// Writes events as NDJSON lines, numbering their ids.
#[derive(Debug)]
pub struct Emitter {
    rp_id: String,
    id_prefix: String,
    next: u64,
}

impl Emitter {
    /// Events for `rp_id`, with event and attempt ids starting with `id_prefix`.
    pub fn new(rp_id: &str, id_prefix: &str) -> Self {
        Self {
            rp_id: rp_id.to_owned(),
            id_prefix: id_prefix.to_owned(),
            next: 0,
        }
    }

    /// A fresh ceremony id.
    pub fn attempt(&mut self) -> String {
        self.next += 1;
        format!("{}a{}", self.id_prefix, self.next)
    }

    /// Appends one event line to `out`: `event_type` about `who` at `at`,
    /// in the ceremony `attempt` if given, with `data` as its `data`.
    pub fn emit(
        &mut self,
        out: &mut Vec<String>,
        who: Subject<'_>,
        at: DateTime<Utc>,
        event_type: &str,
        attempt: Option<&str>,
        data: Value,
    ) {
        self.next += 1;
        let p = who.platform;
        let mut client = Map::new();
        client.insert("os".into(), json!(p.os));
        if let Some(v) = &p.os_version {
            client.insert("os_version".into(), json!(v));
        }
        client.insert("browser".into(), json!(p.browser));
        if let Some(v) = &p.browser_version {
            client.insert("browser_version".into(), json!(v));
        }
        client.insert("form_factor".into(), json!(p.form_factor));
        client.insert("app_type".into(), json!("web"));
        let mut e = json!({
            "schema_version": 1,
            "event_id": format!("{}{}", self.id_prefix, self.next),
            "event_type": event_type,
            "occurred_at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "rp_id": self.rp_id,
            "user_id": format!("u{}", who.user),
            "device_id": format!("u{}-d{}", who.user, who.device),
            "client": client,
            "data": data,
        });
        if let Some(a) = attempt {
            e["attempt_id"] = json!(a);
        }
        if let Some(s) = who.served {
            e["rollout"] = json!({
                "rollout_id": s.rollout_id,
                "variant": if s.treatment { "treatment" } else { "control" },
                "percent": s.percent,
            });
        }
        out.push(e.to_string());
    }
}
