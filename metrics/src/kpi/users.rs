//! The users table `u` (see [`super::stages`]): one row per kind of user
//! seen in an interval, by what their events of the interval say and by
//! the passkeys they hold at its end; its series a week at a time (by
//! day, from day rollups where there are some: `user_days.rs`), its totals
//! in one more pass over the whole range.

use super::engine::{NO_BREAKDOWN, NO_INTERVAL, Part, Sets, quote, statement};
use super::request::{Interval, KpiRequest};
use super::stages::{Held, Stage, chunks, within};
use super::user_days;

/// The events that mark a user in an interval: their type, the column of
/// `u` that says so, and its bit in `flags` and `kind`.
///
/// Bits rather than a column each: one accumulator instead of six, and
/// the users counted by kind grouped by one integer instead of nine
/// columns.
const EVENT_BITS: [(&str, &str, u8); 6] = [
    ("enrollment.offered", "offered", 1),
    ("enrollment.started", "started", 2),
    ("enrollment.succeeded", "enrolled", 4),
    ("enrollment.skipped", "skipped", 8),
    ("enrollment.failed", "enroll_failed", 16),
    ("auth.succeeded", "active", 32),
];

/// The bits of `kind` from the history at the interval's end.
const HOLDS: u8 = 64;
const AT_RISK: u8 = 128;

/// What a user's history `h` (joined to their row) says: passkeys `held`
/// (enrolments minus revocations), whether one was `synced`, whether a
/// `recovery` method was seen.
pub(super) const HELD: &str = "coalesce(sum(CASE h.event_type WHEN 'enrollment.succeeded' THEN 1
                                    WHEN 'credential.revoked' THEN -1
                                    ELSE 0 END), 0) AS held,
     coalesce(bool_or(h.event_type = 'enrollment.succeeded'
                      AND h.credential_backup_eligible), false) AS synced,
     coalesce(bool_or(h.event_type IN ('recovery.completed',
                                       'auth.succeeded')), false) AS recovery";

/// The [`HOLDS`] and [`AT_RISK`] bits of [`HELD`]'s columns.
pub(super) fn hold_bits() -> String {
    format!(
        "(CASE WHEN held > 0 THEN {HOLDS} ELSE 0 END)
         | (CASE WHEN held = 1 AND NOT synced AND NOT recovery THEN {AT_RISK} ELSE 0 END)"
    )
}

/// What a user's events of an interval say about them: `flags` (the bits
/// of [`EVENT_BITS`]) and the largest `error_name` of a failed enrolment.
pub(super) fn user_flags() -> String {
    let whens: String = EVENT_BITS
        .iter()
        .map(|(event, _, bit)| format!(" WHEN '{event}' THEN {bit}"))
        .collect();
    format!(
        "bit_or(CASE event_type{whens} ELSE 0 END) AS flags,
         max(error_name) FILTER (WHERE event_type = 'enrollment.failed') AS enroll_error"
    )
}

/// [`user_flags`] of several rows of one user put together.
const USER_FLAGS_AGAIN: &str = "bit_or(flags) AS flags, max(enroll_error) AS enroll_error";

/// `u`: one row per kind of user seen in an interval (any event with a
/// user), counted in `n`:
/// - by the enrollment events and sign-ins of the interval: `offered`,
///   `started`, `enrolled`, `skipped`, `enroll_failed` (with
///   `enroll_error`, the largest name), `active` (a successful sign-in);
/// - by what they hold at the interval's end, all history: `holds` (at
///   least one active passkey: enrolments minus revocations), `at_risk`
///   (exactly one, every passkey created device-bound, and no recovery
///   method seen: no completed recovery, no recovery-code sign-in).
///
/// One grouping of the events by user (`seen`) and one join with their
/// history serve every user KPI. `seen` is named once on purpose:
/// DataFusion computes a common table once per reference, and computing it
/// twice cost more than grouping the users without a history again after
/// the join. The join is written `h RIGHT JOIN seen` so that its hash table
/// holds the history, the smaller side (KPI sessions keep joins as written).
pub(super) fn users_sql(rows: UserRows, dim: &str) -> String {
    let user_flags = user_flags();
    // `b` and `g` are grouped by only where they vary. DataFusion takes a
    // constant grouping column for a sort order and groups in its partially
    // sorted mode, which doubled a week's statement without a breakdown
    // (`g` is 'all': 2.1 s against 1.0 s) and made the totals (`b` is NULL)
    // 1.4 to 1.8 times as long, over ten million events.
    let (b, g) = match rows {
        UserRows::Whole => (true, true),
        UserRows::Series { by } => (true, by),
        UserRows::Totals { by } => (false, by),
    };
    let pick = |varies: bool, column: &str, constant: &str| {
        if varies {
            column.to_owned()
        } else {
            constant.to_owned()
        }
    };
    let keys = |table: &str| {
        [(b, "b"), (g, "g")]
            .iter()
            .filter(|(varies, _)| *varies)
            .map(|(_, column)| format!("{table}{column}, "))
            .collect::<String>()
    };
    let (b_of, g_of) = (
        |t: &str| pick(b, &format!("{t}b"), NO_INTERVAL),
        |t: &str| pick(g, &format!("{t}g"), NO_BREAKDOWN),
    );
    let seen = match rows {
        UserRows::Whole => format!(
            "seen AS (SELECT b, g, user_key, {user_flags}
                      FROM e WHERE user_key IS NOT NULL GROUP BY {{SETS(user_key)}})"
        ),
        // Grouping the events per breakdown value and over all of them
        // (`{SETS(user_key)}`) would group every event twice: they are
        // grouped by user once, and those far fewer rows grouped again.
        UserRows::Totals { by: true } => format!(
            "seen1 AS (SELECT g, user_key, {user_flags}
                       FROM e WHERE user_key IS NOT NULL GROUP BY g, user_key),
             seen AS (SELECT {NO_INTERVAL} AS b, g, user_key, {USER_FLAGS_AGAIN}
                      FROM seen1 GROUP BY {{SETS(user_key)}})"
        ),
        UserRows::Series { .. } | UserRows::Totals { .. } => format!(
            "seen AS (SELECT {} AS b, {} AS g, user_key, {user_flags}
                      FROM e WHERE user_key IS NOT NULL GROUP BY {}user_key)",
            b_of(""),
            g_of(""),
            keys("")
        ),
    };
    // Parts keep `kind` whole, with the relying party and breakdown their
    // rows are of, as day rollups do (`user_days.rs`): the stage's merge
    // makes the columns of `u` from them.
    let select = match rows {
        UserRows::Whole => format!("{}, enroll_error", kind_columns("kind")),
        UserRows::Series { .. } | UserRows::Totals { .. } => {
            format!(
                "CAST(NULL AS VARCHAR) AS rp_id, {} AS dim, kind, enroll_error",
                quote(dim)
            )
        }
    };
    let hold_bits = hold_bits();
    format!(
        "WITH {seen},
         s AS (SELECT {} AS b, {} AS g, {USER_FLAGS_AGAIN}, {HELD}
               FROM h RIGHT JOIN seen ON seen.user_key = h.user_key
                                           AND h.occurred_at < {{END(seen.b)}}
               GROUP BY {}seen.user_key),
         k AS (SELECT b, g, enroll_error, flags | {hold_bits} AS kind
               FROM s)
         SELECT {} AS b, {} AS g, {select}, count(*) AS n
         FROM k
         GROUP BY {}kind, enroll_error",
        b_of("seen."),
        g_of("seen."),
        keys("seen."),
        b_of(""),
        g_of(""),
        keys(""),
    )
}

/// Which rows of `u` a statement makes.
#[derive(Debug, Clone, Copy)]
pub(super) enum UserRows {
    /// The series and the totals in one statement (for other engines).
    Whole,
    /// The series (of a chunk of the range), with or without a breakdown.
    Series { by: bool },
    /// The totals over the whole range, with or without a breakdown.
    Totals { by: bool },
}

/// The columns of `u` made from the integer column `kind`.
pub(super) fn kind_columns(kind: &str) -> String {
    EVENT_BITS
        .iter()
        .map(|(_, name, bit)| (*name, *bit))
        .chain([("holds", HOLDS), ("at_risk", AT_RISK)])
        .map(|(name, bit)| format!("({kind} & {bit}) <> 0 AS {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `u`: the series, from day rollups where the request is by day and the
/// cache has them (`have`), else a week of events at a time; then the
/// totals over the whole range. The merge keeps the rows of the request's
/// relying party and breakdown and makes the columns of `u`.
pub(super) fn users(req: &KpiRequest, have: Held<'_>) -> Stage {
    let by = req.by.is_some();
    let dim = user_days::dim(req.by);
    let series = users_sql(UserRows::Series { by }, dim);
    let mut parts = match req.interval {
        Interval::Day => user_days::series(req, &series, have),
        Interval::Hour | Interval::Week => chunks(req)
            .into_iter()
            .map(|(from, to)| Part::new(&within(req, from, to), &series, Sets::Series))
            .collect(),
    };
    parts.push(Part::new(
        req,
        &users_sql(UserRows::Totals { by }, dim),
        Sets::Totals,
    ));
    Stage {
        name: "u",
        parts,
        merge: Some(user_days::merge(req)),
        whole: statement(req, &users_sql(UserRows::Whole, dim)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_user_has_a_bit_of_its_own() {
        let bits: Vec<u8> = EVENT_BITS
            .iter()
            .map(|(_, _, bit)| *bit)
            .chain([HOLDS, AT_RISK])
            .collect();
        assert!(bits.iter().all(|b| b.count_ones() == 1), "{bits:?}");
        assert_eq!(bits.iter().fold(0u8, |all, b| all | b), u8::MAX);
    }
}
