//! How the simulated users behave: every rate of the model, with its
//! default. Defaults come from the public reference values of the domain
//! brief (section 4, "KPIs"); each field says which value it uses, or that
//! there is none and why the number was chosen.

use serde::Deserialize;

/// Rates of the model. Probabilities are in `[0, 1]`; a scenario file
/// overrides any of them under `[behaviour]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// Share of users who sign in on a given day. No public reference; a
    /// consumer service's daily/monthly active ratio is typically 0.2–0.5.
    pub daily_active: f64,
    /// Share of a session's users who sign in twice that day.
    pub second_sign_in: f64,
    /// Users already holding a passkey when the simulation starts. Brief:
    /// "adoption often stalls at 5–15 %" (coverage) → 0.08.
    pub initial_holders: f64,
    /// Holders who sign in with their passkey when it is the default
    /// (treatment). Brief, passkey usage: "70–90 % among passkey holders"
    /// → the top of the range, 0.9.
    pub usage_treatment: f64,
    /// Holders who sign in with their passkey when the password is still the
    /// default (control): the bottom of the same range, 0.7.
    pub usage_control: f64,
    /// After a password sign-in, how often a user without a passkey is
    /// offered one: the treatment is asked at every sign-in, the control
    /// by an existing, rarer nudge.
    pub offer_treatment: f64,
    /// The control's chance of an offer, from the existing nudge.
    pub offer_control: f64,
    /// Chance to start enrolling at the first, second, … offer (the last
    /// value repeats). Brief, enrollment rate: "≥ 20 % target" → 0.25 at the
    /// first offer, less at each later one.
    pub enroll_propensity: Vec<f64>,
    /// Started enrolments that succeed (no reference; 0.9 keeps enrollment
    /// failures visible but small).
    pub enroll_success: f64,
    /// Passkey ceremonies that fail with an error, per platform unless the
    /// platform sets its own. Brief, error rate: "< 5 %" and passkey sign-in
    /// success "92–95 % typical" → 0.04 errors.
    pub passkey_error: f64,
    /// Passkey ceremonies abandoned without an event (counted as failures).
    /// With the errors and fallbacks this gives 0.93 success, inside the
    /// brief's 92–95 %.
    pub passkey_abandon: f64,
    /// Passkey ceremonies that fall back to another method on purpose
    /// (credential unavailable, user's choice).
    pub passkey_fallback: f64,
    /// Users who fall back to another method after a passkey error.
    pub fallback_after_error: f64,
    /// Where fallbacks go: `(method, weight)`.
    pub fallback_to: Vec<(String, f64)>,
    /// DOMException names of passkey errors: `(name, weight)`.
    pub errors: Vec<(String, f64)>,
    /// Desktop passkey sign-ins done with a phone (hybrid).
    pub hybrid_share: f64,
    /// Hybrid ceremonies that complete. Brief, cross-device completion:
    /// "60–86 % on desktop web" → 0.75.
    pub hybrid_success: f64,
    /// Password sign-ins that succeed. Brief, overall sign-in success:
    /// Google 14 % and Microsoft 32 % for passwords measure first-try
    /// success of their flows; users here retry within one ceremony, so
    /// the simulation uses 0.8.
    pub password_success: f64,
    /// Median seconds from start to success. Brief, time to sign in:
    /// "Google: 14.9 s passkey vs 30.4 s password".
    pub passkey_median_s: f64,
    /// The same for password sign-ins: 30.4 s.
    pub password_median_s: f64,
    /// Recoveries per user and year among users without a passkey. Brief,
    /// recovery rate: "resets: 2–4 per user per year" → 3.
    pub recoveries_per_user_year: f64,
    /// Passkey holders need recovery less often: this factor of the above.
    pub holder_recovery_factor: f64,
    /// Recovery channels: `(channel, weight)`.
    pub recovery_channels: Vec<(String, f64)>,
    /// Started recoveries that complete.
    pub recovery_completion: f64,
    /// Devices lost or replaced per user and year: device-bound passkeys
    /// go with them, and a holder left without one recovers.
    pub device_loss_per_user_year: f64,
    /// Support contacts per 1,000 sign-ins (no public reference), and the
    /// chance of a contact after a sign-in that failed.
    pub support_per_thousand: f64,
    /// Chance of a support contact after a sign-in that failed.
    pub support_after_failure: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        let pairs = |v: &[(&str, f64)]| {
            v.iter()
                .map(|(k, w)| ((*k).to_owned(), *w))
                .collect::<Vec<_>>()
        };
        Self {
            daily_active: 0.3,
            second_sign_in: 0.25,
            initial_holders: 0.08,
            usage_treatment: 0.9,
            usage_control: 0.7,
            offer_treatment: 1.0,
            offer_control: 0.1,
            enroll_propensity: vec![0.25, 0.15, 0.1, 0.05],
            enroll_success: 0.9,
            passkey_error: 0.04,
            passkey_abandon: 0.02,
            passkey_fallback: 0.01,
            fallback_after_error: 0.8,
            fallback_to: pairs(&[
                ("password", 0.7),
                ("password_otp", 0.2),
                ("magic_link", 0.1),
            ]),
            errors: pairs(&[
                ("NotAllowedError", 0.7),
                ("AbortError", 0.15),
                ("InvalidStateError", 0.05),
                ("SecurityError", 0.04),
                ("UnknownError", 0.06),
            ]),
            hybrid_share: 0.2,
            hybrid_success: 0.75,
            password_success: 0.8,
            passkey_median_s: 14.9,
            password_median_s: 30.4,
            recoveries_per_user_year: 3.0,
            holder_recovery_factor: 0.3,
            recovery_channels: pairs(&[("email", 0.6), ("sms", 0.3), ("helpdesk", 0.1)]),
            recovery_completion: 0.85,
            device_loss_per_user_year: 0.5,
            support_per_thousand: 2.0,
            support_after_failure: 0.02,
        }
    }
}

impl Behaviour {
    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        let probabilities = [
            ("daily_active", self.daily_active),
            ("second_sign_in", self.second_sign_in),
            ("initial_holders", self.initial_holders),
            ("usage_treatment", self.usage_treatment),
            ("usage_control", self.usage_control),
            ("offer_treatment", self.offer_treatment),
            ("offer_control", self.offer_control),
            ("enroll_success", self.enroll_success),
            ("passkey_error", self.passkey_error),
            ("passkey_abandon", self.passkey_abandon),
            ("passkey_fallback", self.passkey_fallback),
            ("fallback_after_error", self.fallback_after_error),
            ("hybrid_share", self.hybrid_share),
            ("hybrid_success", self.hybrid_success),
            ("password_success", self.password_success),
            ("holder_recovery_factor", self.holder_recovery_factor),
            ("recovery_completion", self.recovery_completion),
            ("support_after_failure", self.support_after_failure),
        ];
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                errors.push(format!("behaviour.{name} = {p} is not a probability"));
            }
        }
        if self.passkey_error + self.passkey_abandon + self.passkey_fallback > 1.0 {
            errors.push("behaviour: passkey_error + passkey_abandon + passkey_fallback > 1".into());
        }
        if self.enroll_propensity.is_empty()
            || self
                .enroll_propensity
                .iter()
                .any(|p| !(0.0..=1.0).contains(p))
        {
            errors.push("behaviour.enroll_propensity: one or more probabilities".into());
        }
        for (name, v) in [
            ("passkey_median_s", self.passkey_median_s),
            ("password_median_s", self.password_median_s),
            ("recoveries_per_user_year", self.recoveries_per_user_year),
            ("device_loss_per_user_year", self.device_loss_per_user_year),
            ("support_per_thousand", self.support_per_thousand),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                errors.push(format!("behaviour.{name} = {v} must be ≥ 0"));
            }
        }
        for (name, w) in [
            ("fallback_to", &self.fallback_to),
            ("errors", &self.errors),
            ("recovery_channels", &self.recovery_channels),
        ] {
            if w.is_empty() || w.iter().any(|(_, x)| !(x.is_finite() && *x >= 0.0)) {
                errors.push(format!(
                    "behaviour.{name}: one or more [name, weight ≥ 0] pairs"
                ));
            }
        }
    }
}
