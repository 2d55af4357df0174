//! The decision log: restarts, fencing, replay, manual operations and
//! configuration changes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_and_a_second_one_is_fenced() {
    let w = World::new().await;
    let id = "restart";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let ds = run_hours(&w, &c, id, t0(), 3, 1000, &|_, _| 0.02).await;
    assert!(ds.iter().any(|d| d.action == Action::Advance));
    let before = c.snapshot(id).expect("snapshot");
    let history = c.decisions(id).await.expect("log");
    drop(c);

    // "Killed": the writer stops, the process starts again on the same dir.
    let watermark = *w.watermark.lock().expect("lock");
    let w = w.restart().await;
    *w.watermark.lock().expect("lock") = watermark;
    let now = t0() + Duration::hours(3);
    let c = w.controller(standard(id), now).await.expect("restart");
    let after = c.snapshot(id).expect("snapshot");
    assert_eq!(
        after.state, before.state,
        "same step, same window, same counters"
    );
    assert_eq!(c.decisions(id).await.expect("log"), history, "same history");

    // A second controller (another process, say) on the same tables: it
    // folded the same log, then the first one decides; the second one's
    // next decision is refused and it stops.
    let other = World::open_shared(&w).await;
    let second = other
        .controller(standard(id), now)
        .await
        .expect("second starts");
    c.operate(id, Operation::Pause, "maintenance window", "admin", now)
        .await
        .expect("first decides");
    let err = second
        .operate(id, Operation::Pause, "me too", "admin", now)
        .await
        .expect_err("fenced");
    assert!(matches!(err, RolloutError::Fenced { .. }), "{err}");
    // The log holds the first controller's decision only.
    let log = c.decisions(id).await.expect("log");
    assert_eq!(
        log.last().and_then(|d| d.reason.clone()).as_deref(),
        Some("maintenance window")
    );
    assert_eq!(log.len(), history.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_same_events_and_clock_gives_the_same_decisions() {
    // Two independent worlds fed the same traffic at the same instants.
    let mut logs = Vec::new();
    for _ in 0..2 {
        let w = World::new().await;
        let c = w.controller(standard("replay"), t0()).await.expect("start");
        run_hours(&w, &c, "replay", t0(), 3, 800, &|_, b| {
            if b == "Safari" { 0.05 } else { 0.02 }
        })
        .await;
        logs.push(c.decisions("replay").await.expect("log"));
    }
    let strip = |ds: &[Decision]| -> Vec<(i64, Action, Option<String>, u32, String)> {
        ds.iter()
            .map(|d| {
                (
                    d.seq,
                    d.action,
                    d.reason.clone(),
                    d.to_percent,
                    d.evidence.to_string(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&logs[0]), strip(&logs[1]));
    assert!(logs[0].len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_operations_need_a_reason_and_a_valid_transition() {
    let w = World::new().await;
    let id = "manual";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let now = t0() + Duration::minutes(5);
    assert!(matches!(
        c.operate(id, Operation::Pause, " ", "admin", now).await,
        Err(RolloutError::Invalid { .. })
    ));
    let d = c
        .operate(id, Operation::Promote, "confident", "admin", now)
        .await
        .expect("promote");
    assert_eq!((d.action, d.to_percent), (Action::Promote, 2500));
    let d = c
        .operate(id, Operation::Rollback, "support tickets", "admin", now)
        .await
        .expect("rollback");
    assert_eq!(
        (d.action, d.to_percent, d.phase),
        (Action::Rollback, 1000, Phase::Paused)
    );
    assert!(matches!(
        c.operate(id, Operation::Pause, "again", "admin", now).await,
        Err(RolloutError::Invalid { .. })
    ));
    let d = c
        .operate(id, Operation::Abort, "incident 42", "admin", now)
        .await
        .expect("abort");
    assert_eq!((d.to_percent, d.phase), (0, Phase::Aborted));
    assert!(
        !c.assign(id, "user-1").expect("assign").enabled,
        "nobody is exposed at 0%"
    );
    let d = c
        .operate(id, Operation::Resume, "fixed", "admin", now)
        .await
        .expect("resume");
    assert_eq!(d.phase, Phase::Running);
    // Resumed at 0 %: the next evaluation re-enters the first step.
    w.set_watermark(now);
    let d = recorded(&c, id, now).await;
    assert_eq!((d.action, d.to_percent), (Action::Advance, 1000));
    let by_actor: BTreeMap<String, usize> =
        c.decisions(id)
            .await
            .expect("log")
            .iter()
            .fold(BTreeMap::new(), |mut m, d| {
                *m.entry(d.actor.clone()).or_default() += 1;
                m
            });
    assert_eq!(by_actor.get("admin"), Some(&4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configuration_is_recorded_not_applied_silently() {
    let w = World::new().await;
    let id = "changing";
    let c = w.controller(standard(id), t0()).await.expect("start");
    drop(c);
    let mut changed = standard(id);
    changed.rollouts[0].steps[0].min_exposed_users = 10;
    changed.rollouts[0].group_id = Some("another-salt".to_owned());
    let c = w
        .controller(changed.clone(), t0() + Duration::hours(1))
        .await
        .expect("restart");
    let log = c.decisions(id).await.expect("log");
    let last = log.last().expect("decision");
    assert_eq!(last.action, Action::ConfigChanged);
    assert_eq!(last.config_hash, changed.rollouts[0].hash());
    // The salt does not change under running users.
    assert_eq!(last.group_id, id);
    assert!(
        last.evidence["notes"].to_string().contains("group_id"),
        "{}",
        last.evidence
    );
}

impl World {
    /// A second writer on the same tables (another process, as far as the
    /// table is concerned).
    async fn open_shared(w: &World) -> World {
        let root = w.dir.path().join("tables");
        let unused = tempfile::tempdir().expect("tempdir");
        Self::open_at(&root, unused, w.watermark.clone()).await
    }
}
