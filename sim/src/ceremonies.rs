//! What one user does: a sign-in session (passkey or password, with errors,
//! abandonment and fallbacks), an enrollment offer, a recovery, a lost
//! device. Each step emits the events a relying party would send.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde_json::json;

use crate::simulator::{Ctx, Simulator, pick};

/// How a passkey ceremony ended.
enum Passkey {
    Verified,
    /// Failed or abandoned, and the user gave up.
    Abandoned,
    /// Fell back: the user goes on with this method.
    Continue(String),
}

/// How the ceremony's random draw came out.
enum Draw {
    Verified,
    Failed,
    Abandoned,
    FellBack,
}

impl Simulator {
    /// A log-normal duration around `median_s` (σ = 0.5), in milliseconds.
    fn duration_ms(&mut self, median_s: f64) -> i64 {
        // Box–Muller: one standard normal from two uniforms.
        let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = self.rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        #[allow(clippy::cast_possible_truncation)]
        let ms = (median_s * 1000.0 * (0.5 * z).exp()).round() as i64;
        ms.clamp(300, 600_000)
    }

    pub(crate) fn pick_channel(&mut self) -> String {
        pick(&mut self.rng, &self.scenario.behaviour.recovery_channels).to_owned()
    }

    /// Emits a ceremony's `auth.started`; returns its attempt id.
    fn start_ceremony(
        &mut self,
        out: &mut Vec<String>,
        u: usize,
        ctx: &Ctx<'_>,
        at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> String {
        let attempt = self.emitter.attempt();
        self.emit(out, u, ctx, at, "auth.started", Some(&attempt), data);
        attempt
    }

    /// One visit: a capability probe the first time, a sign-in, maybe an
    /// enrollment offer and a support contact.
    pub(crate) fn session(&mut self, u: usize, ctx: &Ctx<'_>, out: &mut Vec<String>) {
        let mut t = ctx.at + self.seconds_into_hour();
        let user = self.users[u].clone();
        let platform = &self.scenario.population.platforms[user.platform];
        // What the probe reports: a misreporting platform claims an
        // authenticator it does not have.
        let reported = user.platform_auth || (user.webauthn && platform.misreports_support);
        if !user.probed {
            self.users[u].probed = true;
            let data = json!({
                "webauthn_available": user.webauthn,
                "platform_authenticator_available": reported,
                "conditional_mediation_available": user.conditional,
            });
            self.emit(out, u, ctx, t, "capability.probed", None, data);
        }
        let b = &self.scenario.behaviour;
        let usage = if ctx.treatment {
            b.usage_treatment
        } else {
            b.usage_control
        };
        let signed_in = if user.holder() && user.webauthn && self.rng.random_bool(usage) {
            match self.passkey(u, ctx, &mut t, out) {
                Passkey::Verified => true,
                Passkey::Abandoned => false,
                Passkey::Continue(method) => self.ceremony(u, ctx, &mut t, &method, out),
            }
        } else if ctx.treatment && !user.holder() && reported && !user.platform_auth {
            // Passkey-first UI on a client that only claims support: the
            // ceremony cannot run and the user falls back.
            let started = json!({"method": "passkey", "mediation": "modal"});
            let attempt = self.start_ceremony(out, u, ctx, t, started);
            t += Duration::seconds(2);
            let data =
                json!({"from_method": "passkey", "to_method": "password", "reason": "unsupported"});
            self.emit(out, u, ctx, t, "auth.fallback", Some(&attempt), data);
            self.password(u, ctx, &mut t, out)
        } else {
            self.password(u, ctx, &mut t, out)
        };
        let b = &self.scenario.behaviour;
        let offer = if ctx.treatment {
            b.offer_treatment
        } else {
            b.offer_control
        };
        if signed_in && !self.users[u].holder() && reported && self.rng.random_bool(offer) {
            self.offer(u, ctx, &mut t, out);
        }
        let b = &self.scenario.behaviour;
        let support = if signed_in {
            b.support_per_thousand / 1000.0
        } else {
            b.support_after_failure
        };
        if self.rng.random_bool(support.min(1.0)) {
            t += Duration::minutes(10);
            self.emit(
                out,
                u,
                ctx,
                t,
                "support.contacted",
                None,
                json!({"topic": "sign_in"}),
            );
        }
    }

    fn passkey(
        &mut self,
        u: usize,
        ctx: &Ctx<'_>,
        t: &mut DateTime<Utc>,
        out: &mut Vec<String>,
    ) -> Passkey {
        let user = self.users[u].clone();
        let platform = &self.scenario.population.platforms[user.platform];
        let b = &self.scenario.behaviour;
        let hybrid = platform.form_factor == "desktop" && self.rng.random_bool(b.hybrid_share);
        let mut error_rate = platform.passkey_error.unwrap_or(b.passkey_error);
        let mut error_name = None;
        if let Some((rate, name)) = &ctx.regression {
            error_rate = error_rate.max(*rate);
            error_name = Some(name.clone());
        }
        let (abandon, fallback) = (b.passkey_abandon, b.passkey_fallback);
        let hybrid_success = b.hybrid_success;
        let mediation = if user.conditional {
            "conditional"
        } else {
            "modal"
        };
        let mut started = json!({"method": "passkey", "mediation": mediation});
        if hybrid {
            started["cross_device"] = json!(true);
        }
        let attempt = self.start_ceremony(out, u, ctx, *t, started);
        let x: f64 = self.rng.random();
        let draw = if hybrid {
            // Hybrid ceremonies fail mostly by abandonment (the phone step).
            if x < hybrid_success {
                Draw::Verified
            } else if x < hybrid_success + (1.0 - hybrid_success) * 0.3 {
                Draw::Failed
            } else {
                Draw::Abandoned
            }
        } else if x < error_rate {
            Draw::Failed
        } else if x < error_rate + abandon {
            Draw::Abandoned
        } else if x < error_rate + abandon + fallback {
            Draw::FellBack
        } else {
            Draw::Verified
        };
        let median = self.scenario.behaviour.passkey_median_s * if hybrid { 2.0 } else { 1.0 };
        let ms = self.duration_ms(median);
        *t += Duration::milliseconds(ms);
        match draw {
            Draw::Verified => {
                let synced = user.synced_keys > 0;
                let data = json!({
                    "method": "passkey",
                    "duration_ms": ms,
                    "cross_device": hybrid,
                    "credential": {
                        "backup_eligible": synced,
                        "backup_state": synced,
                        "authenticator_attachment": if hybrid { "cross-platform" } else { "platform" },
                        "user_verified": true,
                    },
                });
                self.emit(out, u, ctx, *t, "auth.succeeded", Some(&attempt), data);
                Passkey::Verified
            }
            Draw::Failed => {
                let name = match error_name {
                    Some(n) => n,
                    None => pick(&mut self.rng, &self.scenario.behaviour.errors).to_owned(),
                };
                let data =
                    json!({"method": "passkey", "error": {"name": name}, "cross_device": hybrid});
                self.emit(out, u, ctx, *t, "auth.failed", Some(&attempt), data);
                let after = self.scenario.behaviour.fallback_after_error;
                if self.rng.random_bool(after) {
                    Passkey::Continue(self.fallback(u, ctx, t, &attempt, "error", out))
                } else {
                    Passkey::Abandoned
                }
            }
            Draw::FellBack => {
                let reason = if self.rng.random_bool(0.6) {
                    "credential_unavailable"
                } else {
                    "user_choice"
                };
                Passkey::Continue(self.fallback(u, ctx, t, &attempt, reason, out))
            }
            Draw::Abandoned => Passkey::Abandoned,
        }
    }

    /// Records a fallback; returns the method fallen back to.
    fn fallback(
        &mut self,
        u: usize,
        ctx: &Ctx<'_>,
        t: &mut DateTime<Utc>,
        attempt: &str,
        reason: &str,
        out: &mut Vec<String>,
    ) -> String {
        let to = pick(&mut self.rng, &self.scenario.behaviour.fallback_to).to_owned();
        *t += Duration::seconds(2);
        let data = json!({"from_method": "passkey", "to_method": to, "reason": reason});
        self.emit(out, u, ctx, *t, "auth.fallback", Some(attempt), data);
        to
    }

    fn password(
        &mut self,
        u: usize,
        ctx: &Ctx<'_>,
        t: &mut DateTime<Utc>,
        out: &mut Vec<String>,
    ) -> bool {
        self.ceremony(u, ctx, t, "password", out)
    }

    /// A non-passkey sign-in ceremony.
    fn ceremony(
        &mut self,
        u: usize,
        ctx: &Ctx<'_>,
        t: &mut DateTime<Utc>,
        method: &str,
        out: &mut Vec<String>,
    ) -> bool {
        let attempt = self.start_ceremony(out, u, ctx, *t, json!({"method": method}));
        let median = self.scenario.behaviour.password_median_s;
        let ms = self.duration_ms(median);
        *t += Duration::milliseconds(ms);
        let ok = self
            .rng
            .random_bool(self.scenario.behaviour.password_success);
        if ok {
            let data = json!({"method": method, "duration_ms": ms});
            self.emit(out, u, ctx, *t, "auth.succeeded", Some(&attempt), data);
        } else {
            let data = json!({"method": method, "error": {"name": "InvalidCredentials"}});
            self.emit(out, u, ctx, *t, "auth.failed", Some(&attempt), data);
        }
        ok
    }

    /// An enrollment offer after a sign-in.
    fn offer(&mut self, u: usize, ctx: &Ctx<'_>, t: &mut DateTime<Utc>, out: &mut Vec<String>) {
        let nudge = self.users[u].offers;
        self.users[u].offers = nudge.saturating_add(1);
        let b = &self.scenario.behaviour;
        let propensity = b.enroll_propensity[usize::from(nudge).min(b.enroll_propensity.len() - 1)];
        let success = b.enroll_success;
        let ep = json!({"entry_point": "post_password_signin", "nudge_index": nudge});
        *t += Duration::seconds(1);
        self.emit(out, u, ctx, *t, "enrollment.offered", None, ep.clone());
        *t += Duration::seconds(4);
        if !self.rng.random_bool(propensity) {
            self.emit(out, u, ctx, *t, "enrollment.skipped", None, ep);
            return;
        }
        self.emit(out, u, ctx, *t, "enrollment.started", None, ep);
        *t += Duration::seconds(9);
        let user = self.users[u].clone();
        if !user.platform_auth {
            let data = json!({"error": {"name": "NotSupportedError"}});
            self.emit(out, u, ctx, *t, "enrollment.failed", None, data);
            return;
        }
        if !self.rng.random_bool(success) {
            let name = if self.rng.random_bool(0.8) {
                "NotAllowedError"
            } else {
                "InvalidStateError"
            };
            self.emit(
                out,
                u,
                ctx,
                *t,
                "enrollment.failed",
                None,
                json!({"error": {"name": name}}),
            );
            return;
        }
        let synced_share = self.scenario.population.platforms[user.platform].synced;
        let synced = self.rng.random_bool(synced_share);
        let data = json!({"credential": {
            "backup_eligible": synced,
            "backup_state": synced,
            "authenticator_attachment": "platform",
            "user_verified": true,
        }});
        self.emit(out, u, ctx, *t, "enrollment.succeeded", None, data);
        let user = &mut self.users[u];
        if synced {
            user.synced_keys = user.synced_keys.saturating_add(1);
        } else {
            user.bound_keys = user.bound_keys.saturating_add(1);
        }
    }

    /// A recovery through `channel`; it completes with `completion`.
    pub(crate) fn recovery(
        &mut self,
        u: usize,
        ctx: &Ctx<'_>,
        t: DateTime<Utc>,
        channel: &str,
        completion: f64,
        out: &mut Vec<String>,
    ) {
        let attempt = self.emitter.attempt();
        let data = json!({"channel": channel});
        self.emit(
            out,
            u,
            ctx,
            t,
            "recovery.started",
            Some(&attempt),
            data.clone(),
        );
        let t = t + Duration::minutes(6);
        let kind = if self.rng.random_bool(completion) {
            "recovery.completed"
        } else {
            "recovery.failed"
        };
        self.emit(out, u, ctx, t, kind, Some(&attempt), data);
    }

    /// A lost or replaced device: its device-bound passkeys go with it; a
    /// holder left with none recovers the account.
    pub(crate) fn device_lost(&mut self, u: usize, ctx: &Ctx<'_>, out: &mut Vec<String>) {
        let t = ctx.at + self.seconds_into_hour();
        let lost = self.users[u].bound_keys;
        for _ in 0..lost {
            self.emit(
                out,
                u,
                ctx,
                t,
                "credential.revoked",
                None,
                json!({"reason": "device_lost"}),
            );
        }
        let user = &mut self.users[u];
        user.bound_keys = 0;
        user.device += 1;
        if lost > 0 && user.synced_keys == 0 {
            let channel = self.pick_channel();
            let completion = self.scenario.behaviour.recovery_completion;
            self.recovery(u, ctx, t + Duration::minutes(1), &channel, completion, out);
        }
    }
}
