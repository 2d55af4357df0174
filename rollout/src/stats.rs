//! The statistics behind the guardrails.
//!
//! - Absolute guardrails: the Wilson score interval of the treatment's rate
//!   at one-sided level 1 − α. A breach needs the whole interval beyond the
//!   threshold; a pass needs it entirely on the good side; anything else is
//!   inconclusive. Re-checking the same growing window every interval makes
//!   this a repeated test, which is why breaches must also repeat
//!   (`consecutive_breaches`) before anything happens.
//! - Relative guardrails (treatment against control) are checked
//!   continuously, so they use an always-valid confidence sequence for the
//!   difference of the two rates: the normal-mixture boundary of the mixture
//!   sequential probability ratio test (Robbins; Johari, Pekelis & Walsh,
//!   "Always valid inference", 2017), the test GrowthBook and Optimizely use
//!   for sequential experiments. With `V` the variance of the estimated
//!   difference and mixing variance `τ²`, the interval
//!   `Δ ± sqrt(V (V + τ²) / τ² · (ln((V + τ²) / V) + 2 ln(1/α)))` covers the
//!   true difference at every evaluation simultaneously with probability
//!   1 − α, so peeking every few minutes does not inflate false alarms. `τ`
//!   is set to the guardrail's margin, the effect size it is tuned to find.
//! - Sample-ratio mismatch: a χ² goodness-of-fit test (1 degree of freedom)
//!   of the users seen per variant against the configured split.

/// Wilson score interval for `x` successes in `n` trials at normal quantile
/// `z`. `None` when `n` is 0.
pub fn wilson(x: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = (x as f64 / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Always-valid interval for `p_t − p_c` (see the module docs). `None` when
/// either side has no trials.
pub fn difference_sequence(
    x_t: u64,
    n_t: u64,
    x_c: u64,
    n_c: u64,
    tau: f64,
    alpha: f64,
) -> Option<(f64, f64)> {
    if n_t == 0 || n_c == 0 {
        return None;
    }
    let p_t = (x_t as f64 / n_t as f64).clamp(0.0, 1.0);
    let p_c = (x_c as f64 / n_c as f64).clamp(0.0, 1.0);
    // A rate of exactly 0 or 1 has no sampling variance; the floor keeps
    // the interval from collapsing on tiny samples.
    let var = |p: f64, n: u64| (p * (1.0 - p)).max(0.25 / n as f64) / n as f64;
    let v = var(p_t, n_t) + var(p_c, n_c);
    let tau2 = tau.max(1e-4).powi(2);
    let radius =
        (v * (v + tau2) / tau2 * (((v + tau2) / v).ln() + 2.0 * (1.0 / alpha).ln())).sqrt();
    let d = p_t - p_c;
    Some((d - radius, d + radius))
}

/// χ² (1 df) p-value of seeing `treatment` of `treatment + control` users
/// when the expected share is `expected` (0 < expected < 1).
pub fn srm_p_value(treatment: u64, control: u64, expected: f64) -> f64 {
    let n = (treatment + control) as f64;
    if n == 0.0 || expected <= 0.0 || expected >= 1.0 {
        return 1.0;
    }
    let et = n * expected;
    let ec = n - et;
    let chi2 = (treatment as f64 - et).powi(2) / et + (control as f64 - ec).powi(2) / ec;
    // P(χ²₁ > x) = erfc(sqrt(x / 2)).
    erfc((chi2 / 2.0).sqrt())
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit,
/// fractional error below 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn quantiles_and_tails_match_tables() {
        assert!(close(normal_quantile(0.975), 1.959_964, 1e-5));
        assert!(close(normal_quantile(0.95), 1.644_854, 1e-5));
        assert!(close(normal_quantile(0.001), -3.090_232, 1e-5));
        assert!(close(erfc(0.0), 1.0, 1e-7));
        // χ²₁ = 3.841 ↔ p = 0.05; 10.828 ↔ 0.001.
        assert!(close(erfc((3.841_459_f64 / 2.0).sqrt()), 0.05, 1e-5));
        assert!(close(erfc((10.827_566_f64 / 2.0).sqrt()), 0.001, 1e-6));
    }

    #[test]
    fn wilson_matches_a_worked_example() {
        // 10 of 100 at 95 % two-sided: [0.0552, 0.1744].
        let (lo, hi) = wilson(10, 100, 1.959_964).expect("n > 0");
        assert!(
            close(lo, 0.0552, 5e-4) && close(hi, 0.1744, 5e-4),
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 50, 1.96).expect("n > 0");
        assert!(lo == 0.0 && hi > 0.0);
        assert!(wilson(0, 0, 1.96).is_none());
    }

    #[test]
    fn the_sequence_is_wider_than_a_fixed_interval_and_shrinks_with_n() {
        let (lo, hi) = difference_sequence(100, 1000, 100, 1000, 0.02, 0.05).expect("n > 0");
        let fixed = 1.96 * (2.0 * 0.09 / 1000.0_f64).sqrt();
        assert!(hi - lo > 2.0 * fixed);
        assert!(lo < 0.0 && hi > 0.0);
        let (lo2, hi2) =
            difference_sequence(10_000, 100_000, 10_000, 100_000, 0.02, 0.05).expect("n > 0");
        assert!(hi2 - lo2 < (hi - lo) / 4.0);
    }

    /// Under no difference, peeking after every batch must stay within α
    /// (the property a fixed-horizon test loses). Deterministic LCG draws.
    #[test]
    fn continuous_monitoring_keeps_false_alarms_under_alpha() {
        let mut seed: u64 = 42;
        let mut uniform = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (runs, looks, per_look, p) = (400, 40, 250, 0.05);
        let mut alarms = 0;
        for _ in 0..runs {
            let (mut xt, mut xc, mut n) = (0u64, 0u64, 0u64);
            for _ in 0..looks {
                for _ in 0..per_look {
                    xt += u64::from(uniform() < p);
                    xc += u64::from(uniform() < p);
                }
                n += per_look;
                let (lo, hi) = difference_sequence(xt, n, xc, n, 0.01, 0.05).expect("n > 0");
                if lo > 0.0 || hi < 0.0 {
                    alarms += 1;
                    break;
                }
            }
        }
        assert!(
            f64::from(alarms) / f64::from(runs) <= 0.05,
            "{alarms} of {runs} runs alarmed"
        );
    }

    #[test]
    fn srm_flags_a_skewed_split_only() {
        assert!(srm_p_value(500, 9500, 0.05) > 0.5);
        assert!(srm_p_value(700, 9300, 0.05) < 1e-6);
        assert_eq!(srm_p_value(0, 0, 0.05), 1.0);
    }
}
