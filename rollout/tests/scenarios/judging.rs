//! What the controller concludes from the traffic it sees: advances,
//! rollbacks, and every kind of hold.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_goes_through_every_step_and_completes() {
    let w = World::new().await;
    let c = w
        .controller(standard("healthy"), t0())
        .await
        .expect("start");
    let ds = run_hours(&w, &c, "healthy", t0(), 8, 1000, &|_, _| 0.02).await;
    let steps: Vec<u32> = ds
        .iter()
        .filter(|d| d.action == Action::Advance)
        .map(|d| d.to_percent)
        .collect();
    assert_eq!(steps, vec![2500, 5000, 10_000], "{:#?}", actions(&ds));
    assert_eq!(ds.last().map(|d| d.action), Some(Action::Complete));
    assert!(ds.iter().all(|d| d.action != Action::Rollback));
    let snap = c.snapshot("healthy").expect("snapshot");
    assert_eq!(snap.state.phase, Phase::Completed);
    assert_eq!(snap.percent, 100.0);
    // Every decision is in the table, in order, starting with `start`.
    let log = c.decisions("healthy").await.expect("log");
    assert_eq!(log.first().map(|d| d.action), Some(Action::Start));
    assert_eq!(
        log.iter().map(|d| d.seq).collect::<Vec<_>>(),
        (1..=log.len() as i64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_spike_on_one_browser_rolls_back_within_two_evaluations() {
    let w = World::new().await;
    let id = "spike";
    let c = w.controller(standard(id), t0()).await.expect("start");
    // Healthy until the 25 % step, then Safari's passkey sign-ins fail 40 %
    // of the time (Chrome stays at 2 %; overall stays under 10 %).
    let mut t = t0();
    let mut at_25 = None;
    let mut evaluations_at_25 = 0;
    let mut rollback = None;
    for _ in 0..16 {
        let from = t;
        let to = t + Duration::minutes(30);
        let spike = at_25.is_some();
        w.traffic(
            &c,
            id,
            from,
            to,
            3000,
            |b| if spike && b == "Safari" { 0.40 } else { 0.02 },
            false,
        )
        .await;
        w.set_watermark(to);
        let d = c.evaluate(id, to).await.expect("evaluate");
        if at_25.is_some() {
            evaluations_at_25 += 1;
        }
        if let Some(d) = d {
            if d.action == Action::Advance && d.to_percent == 2500 {
                at_25 = Some(d.seq);
            }
            if d.action == Action::Rollback {
                rollback = Some(d);
                break;
            }
        }
        t = to;
    }
    let d = rollback.expect("rolled back");
    assert!(
        evaluations_at_25 <= 2,
        "took {evaluations_at_25} evaluations"
    );
    assert_eq!((d.from_percent, d.to_percent), (2500, 1000));
    assert_eq!(d.phase, Phase::Paused);
    let trigger = &d.evidence["trigger"];
    assert_eq!(trigger["metric"], "passkey_error_rate");
    assert_eq!(trigger["segment"], "browser=Safari");
    assert_eq!(trigger["limit"], 0.10);
    let interval = trigger["interval"].as_array().expect("interval");
    assert!(interval[0].as_f64().expect("lo") > 0.10, "{trigger}");
    assert!(trigger["treatment"]["n"].as_u64().expect("n") >= 100);
    let reason = d.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("browser=Safari") && reason.contains("passkey_error_rate"),
        "{reason}"
    );
    // The whole population did not breach: only the breakdown caught it.
    let all = d.evidence["guardrails"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["segment"] == "all")
        .cloned()
        .expect("all");
    assert_ne!(all["verdict"], "breach", "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_evaluation_is_recorded_as_starved_never_as_a_pass() {
    let w = World::new().await;
    let id = "starved";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let at = t0() + Duration::hours(1);
    w.traffic(&c, id, t0(), at, 1000, healthy, false).await;
    w.set_watermark(at);
    // Something else holds the control lane's one slot.
    let release = Arc::new(tokio::sync::Notify::new());
    let occupant = tokio::spawn({
        let (engine, release) = (w.engine.clone(), release.clone());
        async move {
            engine
                .run(Lane::Control, move |_ctx| async move {
                    release.notified().await;
                    Ok(())
                })
                .await
        }
    });
    while w.engine.executor().handle().metrics().num_alive_tasks() == 0 {
        tokio::task::yield_now().await;
    }
    let d = recorded(&c, id, at).await;
    assert_eq!(
        (d.action, d.reason.as_deref()),
        (Action::Hold, Some("starved"))
    );
    assert_eq!(d.to_percent, 1000);
    assert!(
        d.evidence["error"]
            .as_str()
            .unwrap_or("")
            .contains("no control query slot"),
        "{}",
        d.evidence
    );
    // Starved again: the same hold is not recorded twice.
    assert!(
        c.evaluate(id, at + Duration::minutes(5))
            .await
            .expect("evaluate")
            .is_none()
    );
    release.notify_one();
    occupant.await.expect("join").expect("occupant");
    // Once the store answers, the evaluation judges the data again.
    let later = at + Duration::hours(1);
    w.traffic(&c, id, at, later, 1000, healthy, false).await;
    w.set_watermark(later);
    let d = recorded(&c, id, later).await;
    assert_ne!(d.reason.as_deref(), Some("starved"), "{}", d.evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_and_stale_data_hold_without_moving() {
    let w = World::new().await;
    let id = "quiet";
    let c = w.controller(standard(id), t0()).await.expect("start");
    // Fresh watermark, no events.
    let at = t0() + Duration::hours(2);
    w.set_watermark(at);
    let d = recorded(&c, id, at).await;
    assert_eq!(
        (d.action, d.reason.as_deref()),
        (Action::Hold, Some("no_traffic"))
    );
    assert_eq!(d.to_percent, 1000);
    // Traffic arrives but ingest stalls: the watermark stays behind.
    w.traffic(&c, id, at, at + Duration::hours(1), 1000, healthy, false)
        .await;
    let later = at + Duration::hours(3);
    let d = recorded(&c, id, later).await;
    assert_eq!(
        (d.action, d.reason.as_deref()),
        (Action::Hold, Some("stale_data"))
    );
    assert_eq!(d.to_percent, 1000);
    assert_eq!(d.evidence["watermark"], json!(at));
    // Repeating the same hold is not recorded again.
    assert!(
        c.evaluate(id, later + Duration::minutes(30))
            .await
            .expect("evaluate")
            .is_none()
    );
    assert_eq!(
        c.snapshot(id)
            .and_then(|s| s.last_evaluation)
            .and_then(|d| d.reason)
            .as_deref(),
        Some("stale_data")
    );
    // Never advanced nor rolled back.
    let log = c.decisions(id).await.expect("log");
    assert!(
        log.iter()
            .all(|d| matches!(d.action, Action::Start | Action::Hold))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_noisy_evaluation_does_not_roll_back() {
    let w = World::new().await;
    let id = "noisy";
    let c = w.controller(standard(id), t0()).await.expect("start");
    // One bad half hour (30 % errors everywhere), then a lot of healthy
    // traffic in the same step.
    let t1 = t0() + Duration::minutes(30);
    w.traffic(&c, id, t0(), t1, 2000, |_| 0.30, false).await;
    w.set_watermark(t1);
    let d = recorded(&c, id, t1).await;
    assert_eq!(
        d.reason.as_deref(),
        Some("breach_unconfirmed"),
        "{}",
        d.evidence
    );
    assert_eq!(d.breaches.values().max(), Some(&1));
    let t2 = t1 + Duration::minutes(30);
    w.traffic(&c, id, t1, t2, 20_000, |_| 0.01, false).await;
    w.set_watermark(t2);
    let d = recorded(&c, id, t2).await;
    assert_ne!(d.action, Action::Rollback, "{}", d.evidence);
    assert!(
        d.breaches.is_empty(),
        "the counter starts over: {:?}",
        d.breaches
    );
    let log = c.decisions(id).await.expect("log");
    assert!(log.iter().all(|d| d.action != Action::Rollback));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_ratio_mismatch_holds_srm() {
    let w = World::new().await;
    let id = "srm";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let t1 = t0() + Duration::hours(1);
    w.traffic(&c, id, t0(), t1, 2000, healthy, true).await;
    w.set_watermark(t1);
    let d = recorded(&c, id, t1).await;
    assert_eq!((d.action, d.reason.as_deref()), (Action::Hold, Some("srm")));
    let srm = &d.evidence["srm"];
    assert_eq!(srm["expected_share"], 0.1);
    assert!(
        srm["observed_share"].as_f64().expect("share") > 0.25,
        "{srm}"
    );
    assert!(srm["p_value"].as_f64().expect("p") < 0.001);
}
