//! A seeded population of one relying party, for the KPI bench: users with
//! a platform and browser, some holding passkeys (synced or device-bound),
//! signing in on some days with passkeys or passwords — with failures,
//! abandonment, fallbacks, cross-device ceremonies, enrollment offers,
//! recoveries, revocations and support contacts. Deterministic for a seed;
//! days are generated in order, as NDJSON lines of schema v1.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (os, browser, form factor, share of users, passkeys synced?)
const PLATFORMS: [(&str, &str, &str, f64, bool); 6] = [
    ("ios", "safari", "mobile", 0.32, true),
    ("android", "chrome", "mobile", 0.38, true),
    ("windows", "edge", "desktop", 0.10, false),
    ("windows", "chrome", "desktop", 0.10, false),
    ("macos", "safari", "desktop", 0.07, true),
    ("linux", "firefox", "desktop", 0.03, false),
];
const ERRORS: [(&str, f64); 4] = [
    ("NotAllowedError", 0.7),
    ("AbortError", 0.2),
    ("InvalidStateError", 0.05),
    ("UnknownError", 0.05),
];

#[derive(Debug, Clone, Copy)]
struct User {
    platform: usize,
    /// Active passkeys.
    passkeys: u8,
}

/// The population and its clock.
#[derive(Debug)]
pub struct Population {
    rng: StdRng,
    rp_id: String,
    users: Vec<User>,
    next_id: u64,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[(T, f64)]) -> T {
    let mut x: f64 = rng.random();
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

impl Population {
    /// `users` users, 12 % of them already holding a passkey.
    pub fn new(seed: u64, rp_id: &str, users: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let shares: Vec<(usize, f64)> = PLATFORMS
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.3))
            .collect();
        let users = (0..users)
            .map(|_| User {
                platform: pick(&mut rng, &shares),
                passkeys: u8::from(rng.random_bool(0.12)),
            })
            .collect();
        Self {
            rng,
            rp_id: rp_id.to_owned(),
            users,
            next_id: 0,
        }
    }

    /// The events of one day starting at `day` (UTC midnight), appended to
    /// `out` as NDJSON lines; returns how many.
    pub fn day(&mut self, day: DateTime<Utc>, out: &mut Vec<String>) -> u64 {
        let before = out.len();
        for u in 0..self.users.len() {
            if !self.rng.random_bool(0.3) {
                continue;
            }
            let start = day + Duration::seconds(self.rng.random_range(0..86_000));
            let ceremonies = pick(&mut self.rng, &[(1u32, 0.6), (2, 0.3), (3, 0.1)]);
            let mut t = start;
            for _ in 0..ceremonies {
                t = self.sign_in(u, t, out);
            }
            if self.rng.random_bool(0.002) {
                t = self.recovery(u, t, out);
            }
            if self.rng.random_bool(0.001) {
                self.emit(
                    u,
                    t,
                    "support.contacted",
                    r#"{"topic":"sign_in"}"#,
                    None,
                    out,
                );
            }
        }
        (out.len() - before) as u64
    }

    fn sign_in(&mut self, u: usize, t: DateTime<Utc>, out: &mut Vec<String>) -> DateTime<Utc> {
        let user = self.users[u];
        let attempt = format!("a{}", self.next_id);
        let desktop = PLATFORMS[user.platform].2 == "desktop";
        if user.passkeys > 0 {
            let hybrid = desktop && self.rng.random_bool(0.05);
            let cd = if hybrid {
                r#","cross_device":true"#
            } else {
                ""
            };
            let started = format!(r#"{{"method":"passkey"{cd}}}"#);
            self.emit(u, t, "auth.started", &started, Some(&attempt), out);
            let ok = if hybrid { 0.75 } else { 0.93 };
            let x: f64 = self.rng.random();
            let ms = self.rng.random_range(1_500..9_000i64) * if hybrid { 4 } else { 1 };
            let end = t + Duration::milliseconds(ms);
            if x < ok {
                let data = format!(r#"{{"method":"passkey","duration_ms":{ms}{cd}}}"#);
                self.emit(u, end, "auth.succeeded", &data, Some(&attempt), out);
                if self.rng.random_bool(0.0005) {
                    self.users[u].passkeys -= 1;
                    self.emit(
                        u,
                        end,
                        "credential.revoked",
                        r#"{"reason":"user"}"#,
                        None,
                        out,
                    );
                }
                return end;
            }
            if x < ok + 0.04 {
                let name = pick(&mut self.rng, &ERRORS);
                let data = format!(r#"{{"method":"passkey","error":{{"name":"{name}"}}{cd}}}"#);
                self.emit(u, end, "auth.failed", &data, Some(&attempt), out);
            } else if x < ok + 0.06 {
                let reason = pick(
                    &mut self.rng,
                    &[
                        ("credential_unavailable", 0.5),
                        ("user_choice", 0.3),
                        ("error", 0.2),
                    ],
                );
                let data = format!(
                    r#"{{"from_method":"passkey","to_method":"password","reason":"{reason}"}}"#
                );
                self.emit(u, end, "auth.fallback", &data, Some(&attempt), out);
            }
            // Failed, fell back or abandoned: the user signs in with a password.
            return self.password(u, end + Duration::seconds(5), out);
        }
        let end = self.password(u, t, out);
        if self.rng.random_bool(0.3) {
            return self.offer(u, end, out);
        }
        end
    }

    fn password(&mut self, u: usize, t: DateTime<Utc>, out: &mut Vec<String>) -> DateTime<Utc> {
        self.next_id += 1;
        let attempt = format!("a{}", self.next_id);
        self.emit(
            u,
            t,
            "auth.started",
            r#"{"method":"password"}"#,
            Some(&attempt),
            out,
        );
        let ms = self.rng.random_range(6_000..30_000i64);
        let end = t + Duration::milliseconds(ms);
        if self.rng.random_bool(0.9) {
            let data = format!(r#"{{"method":"password","duration_ms":{ms}}}"#);
            self.emit(u, end, "auth.succeeded", &data, Some(&attempt), out);
        } else {
            let data = r#"{"method":"password","error":{"name":"InvalidCredentials"}}"#;
            self.emit(u, end, "auth.failed", data, Some(&attempt), out);
        }
        end
    }

    fn offer(&mut self, u: usize, t: DateTime<Utc>, out: &mut Vec<String>) -> DateTime<Utc> {
        let ep = r#"{"entry_point":"post_login"}"#;
        self.emit(u, t, "enrollment.offered", ep, None, out);
        let t = t + Duration::seconds(3);
        if self.rng.random_bool(0.7) {
            self.emit(u, t, "enrollment.skipped", ep, None, out);
            return t;
        }
        self.emit(u, t, "enrollment.started", ep, None, out);
        let t = t + Duration::seconds(8);
        if self.rng.random_bool(0.85) {
            let synced = PLATFORMS[self.users[u].platform].4;
            let data = format!(
                r#"{{"credential":{{"backup_eligible":{synced},"backup_state":{synced}}}}}"#
            );
            self.emit(u, t, "enrollment.succeeded", &data, None, out);
            self.users[u].passkeys += 1;
        } else {
            let data = r#"{"error":{"name":"NotAllowedError"}}"#;
            self.emit(u, t, "enrollment.failed", data, None, out);
        }
        t
    }

    fn recovery(&mut self, u: usize, t: DateTime<Utc>, out: &mut Vec<String>) -> DateTime<Utc> {
        let channel = pick(
            &mut self.rng,
            &[("email", 0.6), ("sms", 0.3), ("helpdesk", 0.1)],
        );
        let attempt = format!("r{}", self.next_id);
        let data = format!(r#"{{"channel":"{channel}"}}"#);
        self.emit(u, t, "recovery.started", &data, Some(&attempt), out);
        let t = t + Duration::minutes(4);
        let outcome = if self.rng.random_bool(0.8) {
            "recovery.completed"
        } else {
            "recovery.failed"
        };
        self.emit(u, t, outcome, &data, Some(&attempt), out);
        t
    }

    fn emit(
        &mut self,
        u: usize,
        at: DateTime<Utc>,
        event_type: &str,
        data: &str,
        attempt: Option<&str>,
        out: &mut Vec<String>,
    ) {
        self.next_id += 1;
        let (os, browser, form_factor, ..) = PLATFORMS[self.users[u].platform];
        let mut line = String::with_capacity(400);
        let _ = write!(
            line,
            r#"{{"schema_version":1,"event_id":"k{id}","event_type":"{event_type}","occurred_at":"{ts}","rp_id":"{rp}","user_id":"u{u}","client":{{"os":"{os}","browser":"{browser}","form_factor":"{form_factor}","app_type":"web"}},"data":{data}"#,
            id = self.next_id,
            ts = at.to_rfc3339_opts(SecondsFormat::Millis, true),
            rp = self.rp_id,
        );
        if let Some(a) = attempt {
            let _ = write!(line, r#","attempt_id":"{a}""#);
        }
        line.push('}');
        out.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyshift_schemas::{DecodeOptions, decode_event};

    #[test]
    fn a_day_is_valid_deterministic_and_mixed() {
        let day = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .expect("day")
            .with_timezone(&Utc);
        let mut a = Vec::new();
        Population::new(7, "bench.example", 10_000).day(day, &mut a);
        let mut b = Vec::new();
        Population::new(7, "bench.example", 10_000).day(day, &mut b);
        assert_eq!(a, b, "same seed, same events");
        let now = day + Duration::days(2);
        let mut types = std::collections::BTreeSet::new();
        for line in &a {
            let e = decode_event(line.as_bytes(), now, &DecodeOptions::default())
                .unwrap_or_else(|e| panic!("{e}: {line}"));
            types.insert(e.event_type.as_str());
        }
        for t in [
            "auth.succeeded",
            "auth.failed",
            "enrollment.succeeded",
            "auth.fallback",
        ] {
            assert!(types.contains(t), "{t} missing: {types:?}");
        }
    }
}
