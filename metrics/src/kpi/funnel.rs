//! The two funnels of `GET /v1/funnel`: enrollment (distinct users) and
//! passkey sign-in (ceremonies), as step counts with the conversion from
//! one step to the next, and the ways out of the funnel beside them.
//!
//! The queries use the common tables and placeholders described in
//! [`super::catalog`]. `steps` returns `b, g` and one column per step, in
//! funnel order; each step is a subset of the one before. `exits` returns
//! `b, g, k, num`: how many left the funnel by each failure name.

/// One funnel.
#[derive(Debug)]
pub struct Funnel {
    /// Stable id, as reported (`enrollment`, `passkey_signin`).
    pub name: &'static str,
    /// What one counted thing is, in words (distinct users or ceremonies).
    pub counts: &'static str,
    /// Main path, in order; each a column of `steps_sql`.
    pub steps: &'static [&'static str],
    /// Ways out (columns of `steps_sql` after the main path), each counted
    /// among those who entered the funnel and did not reach its last step.
    pub outs: &'static [&'static str],
    /// Query returning `b, g` and one count column per step, then per way out.
    pub steps_sql: &'static str,
    /// Prefix of the keys of `exits_sql` rows (`failed: NotAllowedError`).
    pub exits_label: &'static str,
    /// Query returning `b, g, k, num`: how many left the funnel with each failure name `k`.
    pub exits_sql: &'static str,
}

/// Every funnel, in the order `GET /v1/funnel` reports them.
pub static FUNNELS: &[Funnel] = &[
    Funnel {
        name: "enrollment",
        counts: "distinct users offered a passkey in the interval",
        steps: &["offered", "started", "succeeded"],
        outs: &["skipped", "failed"],
        // started: offered and began (or finished) creating a passkey;
        // skipped / failed: offered, did not create one, and skipped / saw
        // an `enrollment.failed` (a user who did both counts in both).
        steps_sql: "SELECT b, g,
                           sum(n) AS offered,
                           sum(n) FILTER (WHERE started OR enrolled) AS started,
                           sum(n) FILTER (WHERE enrolled) AS succeeded,
                           sum(n) FILTER (WHERE skipped AND NOT enrolled) AS skipped,
                           sum(n) FILTER (WHERE enroll_failed AND NOT enrolled) AS failed
                    FROM u WHERE offered
                    GROUP BY b, g",
        exits_label: "failed",
        // Users offered who did not enroll, by the (largest) name of their
        // enrollment failures.
        exits_sql: "SELECT b, g, enroll_error AS k, sum(n) AS num
                    FROM u WHERE offered AND NOT enrolled AND enroll_error IS NOT NULL
                    GROUP BY b, g, enroll_error",
    },
    Funnel {
        name: "passkey_signin",
        counts: "passkey sign-in ceremonies",
        steps: &["started", "succeeded"],
        outs: &["fell_back", "failed", "abandoned"],
        // A ceremony that did not succeed fell back if it has an
        // `auth.fallback`, else failed if it has an `auth.failed`, else was
        // abandoned: the three add up to started − succeeded.
        steps_sql: "SELECT b, g,
                           sum(n) AS started,
                           sum(n) FILTER (WHERE succeeded) AS succeeded,
                           sum(n) FILTER (WHERE NOT succeeded AND fallback_reason IS NOT NULL)
                               AS fell_back,
                           sum(n) FILTER (WHERE NOT succeeded AND fallback_reason IS NULL
                                              AND error_name IS NOT NULL) AS failed,
                           sum(n) FILTER (WHERE NOT succeeded AND fallback_reason IS NULL
                                              AND error_name IS NULL) AS abandoned
                    FROM a WHERE method = 'passkey'
                    GROUP BY b, g",
        exits_label: "failed",
        exits_sql: "SELECT b, g, error_name AS k, sum(n) AS num
                    FROM a WHERE method = 'passkey' AND NOT succeeded AND error_name IS NOT NULL
                    GROUP BY b, g, error_name",
    },
];
