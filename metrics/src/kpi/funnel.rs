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
    pub name: &'static str,
    pub counts: &'static str,
    /// Main path, in order; each a column of `steps_sql`.
    pub steps: &'static [&'static str],
    /// Ways out (columns of `steps_sql` after the main path), each counted
    /// among those who entered the funnel and did not reach its last step.
    pub outs: &'static [&'static str],
    pub steps_sql: &'static str,
    /// Prefix of the keys of `exits_sql` rows (`failed: NotAllowedError`).
    pub exits_label: &'static str,
    pub exits_sql: &'static str,
}

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
                           count(*) AS offered,
                           count(*) FILTER (WHERE started OR succeeded) AS started,
                           count(*) FILTER (WHERE succeeded) AS succeeded,
                           count(*) FILTER (WHERE skipped AND NOT succeeded) AS skipped,
                           count(*) FILTER (WHERE failed AND NOT succeeded) AS failed
                    FROM (SELECT b, g, user_key,
                                 bool_or(event_type = 'enrollment.offered') AS offered,
                                 bool_or(event_type = 'enrollment.started') AS started,
                                 bool_or(event_type = 'enrollment.succeeded') AS succeeded,
                                 bool_or(event_type = 'enrollment.skipped') AS skipped,
                                 bool_or(event_type = 'enrollment.failed') AS failed
                          FROM e WHERE event_type LIKE 'enrollment.%' AND user_key IS NOT NULL
                          GROUP BY {SETS(user_key)})
                    WHERE offered
                    GROUP BY b, g",
        exits_label: "failed",
        // Users offered who did not enroll, by the (largest) name of their
        // enrollment failures.
        exits_sql: "SELECT b, g, error AS k, count(*) AS num
                    FROM (SELECT b, g, user_key,
                                 bool_or(event_type = 'enrollment.offered') AS offered,
                                 bool_or(event_type = 'enrollment.succeeded') AS succeeded,
                                 max(error_name) FILTER (WHERE event_type = 'enrollment.failed')
                                     AS error
                          FROM e WHERE event_type LIKE 'enrollment.%' AND user_key IS NOT NULL
                          GROUP BY {SETS(user_key)})
                    WHERE offered AND NOT succeeded AND error IS NOT NULL
                    GROUP BY b, g, error",
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
                           count(*) AS started,
                           count(*) FILTER (WHERE succeeded) AS succeeded,
                           count(*) FILTER (WHERE NOT succeeded AND fallback_reason IS NOT NULL)
                               AS fell_back,
                           count(*) FILTER (WHERE NOT succeeded AND fallback_reason IS NULL
                                                AND error_name IS NOT NULL) AS failed,
                           count(*) FILTER (WHERE NOT succeeded AND fallback_reason IS NULL
                                                AND error_name IS NULL) AS abandoned
                    FROM a WHERE method = 'passkey'
                    GROUP BY {SETS()}",
        exits_label: "failed",
        exits_sql: "SELECT b, g, error_name AS k, count(*) AS num
                    FROM a WHERE method = 'passkey' AND NOT succeeded AND error_name IS NOT NULL
                    GROUP BY {SETS(error_name)}",
    },
];
