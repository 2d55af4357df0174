//! The KPI catalogue: every passkey KPI keyshift reports, defined once.
//!
//! Each entry is a named query over `auth_events` with its numerator,
//! denominator, unit and key written out in words; `docs/kpis.md` is
//! generated from this list (`keyshift kpis --catalog`) and a test fails when
//! the two differ. Read it top to bottom: the SQL is the definition.
//!
//! # How the queries are written
//! The engine ([`super::engine`]) puts three common tables in front of every
//! query:
//!
//! - `e` — the events of the range `[from, to)` (and of the RP, if one is
//!   asked), with `b` the start of the event's interval (UTC: `hour`, `day`,
//!   or ISO `week` starting Monday) and `g` the breakdown value (`'unknown'`
//!   when the event lacks it, `'all'` without a breakdown).
//! - `a` — the **sign-in ceremonies**, counted by kind: a ceremony is the
//!   `auth.*` events of the range that share `rp_id` and `attempt_id` (a
//!   retry inside one `attempt_id` is one ceremony; an event without one is
//!   a ceremony of its own), read up to an hour after its first event,
//!   also past `to`. Its interval is that of its first event, its
//!   breakdown value the smallest its events carry (they come from one
//!   client, as a rule; `unknown` when none carries one); its `method` is
//!   the method of its `auth.started` (else
//!   of any of its events, else the method it fell back from);
//!   `success_method` that of its `auth.succeeded`; `succeeded` if it has
//!   one; `error_name` the (largest) name of its failures; `fallback_reason`
//!   and `fallback_path` (`from→to`) if it fell back; `cross_device` if any
//!   event says so. `n` ceremonies share each combination. A ceremony that
//!   started and never succeeded — abandoned, failed, or fell back — is a
//!   failure. `a` already holds the totals rows (see `{SETS}` below).
//! - `h` — the RP's credential history up to `to`, of every age (enrolments,
//!   revocations, completed recoveries and recovery-code sign-ins).
//! - `u` — the **users seen** in each interval and breakdown value (any
//!   event with a user; and the totals), counted by kind: `offered`,
//!   `started`, `enrolled`, `skipped`, `enroll_failed` (with `enroll_error`,
//!   the largest name) for the `enrollment.*` events of the interval,
//!   `active` for a successful sign-in in it; and by what they hold at the
//!   interval's end, from `h`: `holds` (at least one active passkey:
//!   enrolments minus revocations, all history; v1 events carry no
//!   credential id, so a revocation retires one passkey of that user),
//!   `at_risk` (exactly one active passkey, every passkey created
//!   device-bound, no recovery method seen); `n` users share each
//!   combination.
//! - `q` — per method, the median (`p50`) and 95th percentile (`p95`) of
//!   `duration_ms` of the successful sign-ins (`auth.succeeded`) that carry
//!   it, by linear interpolation (the values of `percentile_cont`, both
//!   from one aggregate: `quantiles.rs`), and their number `n`.
//!
//! - `c` — **events counted** by `event_type`, `recovery_channel` and
//!   `kind` (`synced` or `device_bound` by the BE flag, for
//!   `enrollment.succeeded`; else NULL), for the KPIs that count events:
//!   recovery starts, support contacts, passkeys created. `n` events share
//!   each combination; like `a`, it already holds the totals rows.
//!
//! `a`, `u`, `q` and `c` are computed once per report (one pass over the
//! range each, `u` also over the history; the SQL is in
//! [`super::stages`], `u`'s in `users.rs`) and then read by every KPI that
//! needs them.
//!
//! `{SETS(x)}` stands for the grouping that yields the series and the
//! totals in one pass: `GROUPING SETS ((b, g, x), (g, x), (x))` — a row
//! with `b` NULL is a total over the range, with `g` NULL a total over all
//! breakdown values. `{END(t)}` is the end of the interval starting at `t`
//! (the range's end for totals, never past `to`). Every query returns
//! `b, g, k, num, den`: interval, breakdown value, key (NULL for unkeyed
//! KPIs) and the numerator and denominator, counted in the KPI's unit.

/// What a KPI's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// `num / den`, between 0 and 1; `null` when `den` is 0.
    Ratio,
    /// `1000 × num / den`; `null` when `den` is 0.
    PerThousand,
    /// `num` is the quantile itself (milliseconds); `den` the sample count.
    Milliseconds,
}

/// One KPI: its name, its meaning in words, and its query.
#[derive(Debug)]
pub struct Kpi {
    /// Stable snake_case id, as requested with `kpi=` and reported (`passkey_usage`).
    pub name: &'static str,
    /// Human-readable name for tables and the status page.
    pub title: &'static str,
    /// What the reported value is: a ratio, per thousand, or milliseconds.
    pub unit: Unit,
    /// What one counted thing is: distinct users, ceremonies, events…
    pub counts: &'static str,
    /// What is counted above the line, in words (for `docs/kpis.md` and reports).
    pub numerator: &'static str,
    /// What is counted below the line, in words.
    pub denominator: &'static str,
    /// What the `key` of a point is, for KPIs reported per key.
    pub key: Option<&'static str>,
    /// A public reference value, from the domain brief, when there is one.
    pub reference: Option<&'static str>,
    /// The definition: a query over the engine's common tables returning
    /// `b, g, k, num, den` (see the module docs for the placeholders).
    pub sql: &'static str,
}

/// Every KPI, in the order reports list them.
pub static CATALOG: &[Kpi] = &[
    Kpi {
        name: "enrollment_rate",
        title: "Enrollment rate",
        unit: Unit::Ratio,
        counts: "distinct users",
        numerator: "users offered a passkey in the interval who created one in it",
        denominator: "users offered a passkey in the interval (`enrollment.offered`)",
        key: None,
        reference: Some("≥ 20 % target, ≥ 75 % strong"),
        sql: "SELECT b, g, NULL AS k, sum(n) FILTER (WHERE enrolled) AS num, sum(n) AS den
              FROM u WHERE offered GROUP BY b, g",
    },
    Kpi {
        name: "coverage",
        title: "Passkey coverage",
        unit: Unit::Ratio,
        counts: "distinct users",
        numerator: "active users holding at least one active passkey at the end of the \
                    interval (passkeys created minus passkeys revoked, all history: v1 events \
                    carry no credential id, so a revocation retires one passkey of that user)",
        denominator: "active users: users with at least one successful sign-in in the interval",
        key: None,
        reference: Some("adoption often stalls at 5–15 %"),
        sql: "SELECT b, g, NULL AS k, sum(n) FILTER (WHERE holds) AS num, sum(n) AS den
              FROM u WHERE active GROUP BY b, g",
    },
    Kpi {
        name: "passkey_usage",
        title: "Passkey share of sign-ins",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "ceremonies that succeeded with a passkey",
        denominator: "ceremonies that succeeded, any method",
        key: None,
        reference: Some("70–90 % among passkey holders"),
        sql: "SELECT b, g, NULL AS k, sum(n) FILTER (WHERE success_method = 'passkey') AS num,
                     sum(n) AS den
              FROM a WHERE succeeded GROUP BY b, g",
    },
    Kpi {
        name: "passkey_signin_success",
        title: "Passkey sign-in success",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "passkey ceremonies that succeeded",
        denominator: "passkey ceremonies (abandoned, failed and fallen-back ones count as failures)",
        key: None,
        reference: Some("92–95 % typical, 98–99 % best, below 85–90 % investigate"),
        sql: "SELECT b, g, NULL AS k, sum(n) FILTER (WHERE succeeded) AS num, sum(n) AS den
              FROM a WHERE method = 'passkey' GROUP BY b, g",
    },
    Kpi {
        name: "signin_success",
        title: "Sign-in success per method",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "ceremonies of the method that succeeded",
        denominator: "ceremonies of the method",
        key: Some("method"),
        reference: Some("Google: 64 % passkey vs 14 % password; Microsoft: 98 % vs 32 %"),
        sql: "SELECT b, g, method AS k, sum(n) FILTER (WHERE succeeded) AS num, sum(n) AS den
              FROM a WHERE method IS NOT NULL GROUP BY b, g, method",
    },
    Kpi {
        name: "passkey_errors",
        title: "Passkey errors by name",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "passkey ceremonies with an `auth.failed` of this name (a ceremony counts \
                    once, under the largest name if it failed with several)",
        denominator: "passkey ceremonies",
        key: Some("error name (DOMException or server-side reason)"),
        reference: Some("< 5 %"),
        sql: "WITH d AS (SELECT b, g, sum(n) AS den FROM a WHERE method = 'passkey'
                         GROUP BY b, g),
                   m AS (SELECT b, g, error_name, sum(n) AS num FROM a
                         WHERE method = 'passkey' AND error_name IS NOT NULL
                         GROUP BY b, g, error_name)
              SELECT m.b, m.g, m.error_name AS k, m.num, d.den
              FROM m JOIN d ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)",
    },
    Kpi {
        name: "fallback_rate",
        title: "Passkey fallback rate by reason",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "passkey ceremonies that ended in an `auth.fallback` with this reason",
        denominator: "passkey ceremonies",
        key: Some("fallback reason"),
        reference: None,
        sql: "WITH d AS (SELECT b, g, sum(n) AS den FROM a WHERE method = 'passkey'
                         GROUP BY b, g),
                   m AS (SELECT b, g, fallback_reason, sum(n) AS num FROM a
                         WHERE method = 'passkey' AND fallback_reason IS NOT NULL
                         GROUP BY b, g, fallback_reason)
              SELECT m.b, m.g, m.fallback_reason AS k, m.num, d.den
              FROM m JOIN d ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)",
    },
    Kpi {
        name: "fallback_paths",
        title: "Fallbacks from → to",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "ceremonies that fell back along this path (`from→to`)",
        denominator: "ceremonies of the method fallen back from",
        key: Some("from→to"),
        reference: None,
        sql: "WITH d AS (SELECT b, g, method, sum(n) AS den FROM a WHERE method IS NOT NULL
                         GROUP BY b, g, method),
                   m AS (SELECT b, g, method, fallback_path, sum(n) AS num FROM a
                         WHERE fallback_path IS NOT NULL
                         GROUP BY b, g, method, fallback_path)
              SELECT m.b, m.g, m.fallback_path AS k, m.num, d.den
              FROM m LEFT JOIN d ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)
                                AND m.method = d.method",
    },
    Kpi {
        name: "recovery_per_1k_users",
        title: "Recovery starts per 1,000 active users",
        unit: Unit::PerThousand,
        counts: "recovery starts per distinct active user",
        numerator: "`recovery.started` events through this channel",
        denominator: "active users: users with at least one successful sign-in in the interval",
        key: Some("recovery channel"),
        reference: Some("resets: 2–4 per user per year"),
        sql: "WITH d AS (SELECT b, g, sum(n) AS den FROM u WHERE active GROUP BY b, g),
                   m AS (SELECT b, g, recovery_channel, sum(n) AS num FROM c
                         WHERE event_type = 'recovery.started'
                         GROUP BY b, g, recovery_channel)
              SELECT m.b, m.g, m.recovery_channel AS k, m.num, coalesce(d.den, 0) AS den
              FROM m LEFT JOIN d ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)",
    },
    Kpi {
        name: "recovery_per_1k_signins",
        title: "Recovery starts per 1,000 sign-ins",
        unit: Unit::PerThousand,
        counts: "recovery starts per successful sign-in ceremony",
        numerator: "`recovery.started` events through this channel",
        denominator: "successful sign-in ceremonies, any method",
        key: Some("recovery channel"),
        reference: None,
        sql: "WITH d AS (SELECT b, g, sum(n) AS den FROM a WHERE succeeded GROUP BY b, g),
                   m AS (SELECT b, g, recovery_channel, sum(n) AS num FROM c
                         WHERE event_type = 'recovery.started'
                         GROUP BY b, g, recovery_channel)
              SELECT m.b, m.g, m.recovery_channel AS k, m.num, coalesce(d.den, 0) AS den
              FROM m LEFT JOIN d ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)",
    },
    Kpi {
        name: "recovery_completion",
        title: "Recovery completion",
        unit: Unit::Ratio,
        counts: "recovery flows: the `recovery.*` events sharing an `attempt_id` (without one: \
                 a user's events through one channel in the range)",
        numerator: "flows that started and completed",
        denominator: "flows that started",
        key: Some("recovery channel"),
        reference: None,
        sql: "SELECT b, g, channel AS k, count(*) FILTER (WHERE completed) AS num, count(*) AS den
              FROM (SELECT min(b) AS b, min(g) AS g, max(recovery_channel) AS channel,
                           bool_or(event_type = 'recovery.started') AS started,
                           bool_or(event_type = 'recovery.completed') AS completed
                    FROM e WHERE event_type LIKE 'recovery.%'
                    GROUP BY rp_id, coalesce(attempt_id, concat(user_key, '/', recovery_channel)))
              WHERE started
              GROUP BY {SETS(channel)}",
    },
    Kpi {
        name: "cross_device_completion",
        title: "Cross-device (hybrid) completion",
        unit: Unit::Ratio,
        counts: "sign-in ceremonies",
        numerator: "cross-device ceremonies that succeeded",
        denominator: "ceremonies with `cross_device = true` on any of their events",
        key: None,
        reference: Some("60–86 % on desktop web"),
        sql: "SELECT b, g, NULL AS k, sum(n) FILTER (WHERE succeeded) AS num, sum(n) AS den
              FROM a WHERE cross_device GROUP BY b, g",
    },
    Kpi {
        name: "time_to_sign_in_p50",
        title: "Time to sign in, median",
        unit: Unit::Milliseconds,
        counts: "successful sign-ins (`auth.succeeded`)",
        numerator: "the median of `duration_ms` as the RP measured it, from the start of the \
                    ceremony to its success (linear interpolation, `percentile_cont`)",
        denominator: "successful sign-ins that carry `duration_ms`",
        key: Some("method"),
        reference: Some("Google: 14.9 s passkey vs 30.4 s password (mean)"),
        sql: "SELECT b, g, method AS k, p50 AS num, n AS den FROM q",
    },
    Kpi {
        name: "time_to_sign_in_p95",
        title: "Time to sign in, 95th percentile",
        unit: Unit::Milliseconds,
        counts: "successful sign-ins (`auth.succeeded`)",
        numerator: "the 95th percentile of `duration_ms` (as for the median)",
        denominator: "successful sign-ins that carry `duration_ms`",
        key: Some("method"),
        reference: None,
        sql: "SELECT b, g, method AS k, p95 AS num, n AS den FROM q",
    },
    Kpi {
        name: "credential_mix",
        title: "Synced vs device-bound passkeys",
        unit: Unit::Ratio,
        counts: "passkeys created (`enrollment.succeeded`)",
        numerator: "passkeys of this kind: `synced` (backup eligible, BE = 1) or `device_bound`",
        denominator: "passkeys created",
        key: Some("synced | device_bound"),
        reference: None,
        sql: "WITH d AS (SELECT b, g, sum(n) AS den FROM c
                         WHERE event_type = 'enrollment.succeeded' GROUP BY b, g),
                   m AS (SELECT b, g, kind, sum(n) AS num FROM c
                         WHERE event_type = 'enrollment.succeeded' GROUP BY b, g, kind)
              SELECT m.b, m.g, m.kind AS k, m.num, d.den
              FROM m JOIN d ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)",
    },
    Kpi {
        name: "at_risk_holders",
        title: "At-risk passkey holders",
        unit: Unit::Ratio,
        counts: "distinct users",
        numerator: "holders with exactly one active passkey, every passkey they created \
                    device-bound (BE = 0), and no recovery method seen (no completed recovery, \
                    no recovery-code sign-in), all history to the end of the interval",
        denominator: "passkey holders (≥ 1 active passkey at the end of the interval) with any \
                      event in the interval",
        key: None,
        reference: None,
        sql: "SELECT b, g, NULL AS k, sum(n) FILTER (WHERE at_risk) AS num,
                     sum(n) FILTER (WHERE holds) AS den
              FROM u GROUP BY b, g",
    },
    Kpi {
        name: "support_per_1k_signins",
        title: "Support contacts per 1,000 sign-ins",
        unit: Unit::PerThousand,
        counts: "support contacts per successful sign-in ceremony",
        numerator: "`support.contacted` events",
        denominator: "successful sign-in ceremonies, any method",
        key: None,
        reference: None,
        sql: "WITH d AS (SELECT b, g, sum(n) AS den FROM a WHERE succeeded GROUP BY b, g),
                   m AS (SELECT b, g, sum(n) AS num FROM c WHERE event_type = 'support.contacted'
                         GROUP BY b, g)
              SELECT coalesce(d.b, m.b) AS b, coalesce(d.g, m.g) AS g, NULL AS k,
                     coalesce(m.num, 0) AS num, coalesce(d.den, 0) AS den
              FROM d FULL JOIN m ON (m.b IS NOT DISTINCT FROM d.b) AND (m.g IS NOT DISTINCT FROM d.g)",
    },
];

/// The KPI called `name`.
pub fn find(name: &str) -> Option<&'static Kpi> {
    CATALOG.iter().find(|k| k.name == name)
}

/// Every KPI name, for error messages.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|k| k.name).collect()
}
