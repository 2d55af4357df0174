//! Cohort assignment, compatible with Unleash's gradual rollout by user id.
//!
//! `h = murmur3_x86_32("{group_id}:{user_id}", seed 0)`; Unleash enables a
//! user when `h % 100 + 1 <= percent`. keyshift uses the finer bucket
//! `(h % 100) * 100 + (h / 100) % 100` in `0..10_000` and enables a user when
//! `bucket < percent × 100`, so steps of 0.01 % exist and, at whole
//! percentages, exactly Unleash's users are enabled: `bucket < p × 100` holds
//! iff `h % 100 < p`. Raising the percentage only adds users.

/// Percent with two decimals, as hundredths: 1 % = 100, 100 % = 10_000.
pub type Basis = u32;

/// The whole population, in [`Basis`] units.
pub const FULL: Basis = 10_000;

/// MurmurHash3, x86 32-bit variant.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in blocks.by_ref() {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    let mut k = 0u32;
    if tail.len() >= 3 {
        k ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        k ^= u32::from(tail[1]) << 8;
    }
    if let Some(b) = tail.first() {
        k ^= u32::from(*b);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    // `usize` → `u32` wraps as the reference implementation's `int len` does.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The Unleash hash of a user in a group.
pub fn user_hash(group_id: &str, user_id: &str) -> u32 {
    // One buffer, no formatting machinery: this is the hot path of
    // `GET /v1/assign`.
    let mut buf = [0u8; 256];
    let len = group_id.len() + 1 + user_id.len();
    if len <= buf.len() {
        buf[..group_id.len()].copy_from_slice(group_id.as_bytes());
        buf[group_id.len()] = b':';
        buf[group_id.len() + 1..len].copy_from_slice(user_id.as_bytes());
        murmur3_x86_32(&buf[..len], 0)
    } else {
        murmur3_x86_32(format!("{group_id}:{user_id}").as_bytes(), 0)
    }
}

/// Unleash's `normalizedValue`: 1..=100.
pub fn unleash_normalized(group_id: &str, user_id: &str) -> u32 {
    user_hash(group_id, user_id) % 100 + 1
}

/// The fine bucket, `0..10_000`.
pub fn bucket(group_id: &str, user_id: &str) -> Basis {
    let h = user_hash(group_id, user_id);
    (h % 100) * 100 + (h / 100) % 100
}

/// Whether a user in `bucket` is exposed at `percent`.
pub fn enabled(bucket: Basis, percent: Basis) -> bool {
    bucket < percent
}

/// Parses a percentage with at most two decimals (`"0.01"`, `"5"`, `"12.5"`)
/// into [`Basis`] units.
pub fn parse_percent(text: &str) -> Option<Basis> {
    let text = text.trim();
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    let v = whole.checked_mul(100)?.checked_add(frac)?;
    (v <= FULL).then_some(v)
}

/// `1234` → `"12.34"`.
pub fn format_percent(b: Basis) -> String {
    if b.is_multiple_of(100) {
        format!("{}", b / 100)
    } else {
        format!("{}.{:02}", b / 100, b % 100)
            .trim_end_matches('0')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn murmur3_reference_vectors() {
        // From the reference implementation's test suite (SMHasher) and
        // widely published values.
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81F1_6F39);
        assert_eq!(murmur3_x86_32(b"\0\0\0\0", 0), 0x2362_F9DE);
        assert_eq!(murmur3_x86_32(b"aaaa", 0x9747_b28c), 0x5A97_808A);
        assert_eq!(murmur3_x86_32(b"aaa", 0x9747_b28c), 0x283E_0130);
        assert_eq!(murmur3_x86_32(b"aa", 0x9747_b28c), 0x5D21_1726);
        assert_eq!(murmur3_x86_32(b"a", 0x9747_b28c), 0x7FA0_9EA6);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 0x9747_b28c), 0x2488_4CBA);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2FA8_26CD
        );
    }

    /// Unleash's client specification (`03-gradual-rollout-user-id-strategy`,
    /// groupId `AB12A`) and the normalized values every Unleash SDK tests.
    #[test]
    fn unleash_client_specification_vectors() {
        assert_eq!(unleash_normalized("gr1", "123"), 73);
        assert_eq!(unleash_normalized("groupX", "999"), 25);
        let at = |user: &str, percent: u32| enabled(bucket("AB12A", user), percent * 100);
        assert!(at("123", 100), "Feature.A3: 100 % enables user 123");
        assert!(at("122", 50), "Feature.B3: 50 % enables user 122");
        assert!(!at("155", 50), "Feature.B3: 50 % does not enable user 155");
        assert!(!at("122", 0), "Feature.C3: 0 % enables nobody");
    }

    #[test]
    fn percentages_parse_with_two_decimals() {
        assert_eq!(parse_percent("0.01"), Some(1));
        assert_eq!(parse_percent("5"), Some(500));
        assert_eq!(parse_percent("12.5"), Some(1250));
        assert_eq!(parse_percent("100"), Some(FULL));
        assert_eq!(parse_percent("100.01"), None);
        assert_eq!(parse_percent("0.001"), None);
        assert_eq!(parse_percent("-1"), None);
        assert_eq!(format_percent(1250), "12.5");
        assert_eq!(format_percent(1), "0.01");
        assert_eq!(format_percent(2500), "25");
    }

    #[test]
    fn buckets_are_uniform() {
        // Chi-square over 100 coarse cells of the fine bucket, 200,000 users:
        // 99 degrees of freedom, 0.999 quantile ≈ 148.2.
        let n = 200_000u32;
        let mut cells = [0u32; 100];
        for i in 0..n {
            cells[(bucket("pk-default", &format!("user-{i}")) / 100) as usize] += 1;
        }
        let expected = f64::from(n) / 100.0;
        let chi2: f64 = cells
            .iter()
            .map(|c| (f64::from(*c) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 148.2, "chi-square {chi2:.1} over 99 df");
        // And the finer digit, within one coarse cell's worth of users.
        let mut fine = [0u32; 100];
        for i in 0..n {
            fine[(bucket("pk-default", &format!("user-{i}")) % 100) as usize] += 1;
        }
        let chi2: f64 = fine
            .iter()
            .map(|c| (f64::from(*c) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 148.2, "fine digit chi-square {chi2:.1} over 99 df");
    }

    proptest! {
        /// Growing the percentage only adds users.
        #[test]
        fn raising_the_percentage_only_adds_users(user in ".{0,40}", group in "[a-z0-9-]{1,20}", a in 0u32..=FULL, b in 0u32..=FULL) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let k = bucket(&group, &user);
            prop_assert!(!enabled(k, lo) || enabled(k, hi));
        }

        /// At whole percentages the fine bucket selects exactly Unleash's users.
        #[test]
        fn whole_percentages_match_unleash(user in ".{0,40}", group in "[a-z0-9-]{1,20}", p in 0u32..=100) {
            let unleash = unleash_normalized(&group, &user) <= p;
            prop_assert_eq!(enabled(bucket(&group, &user), p * 100), unleash);
        }

        /// The stack buffer and the formatted string hash alike.
        #[test]
        fn long_ids_hash_like_short_ones(user in ".{200,300}") {
            prop_assert_eq!(
                user_hash("g", &user),
                murmur3_x86_32(format!("g:{user}").as_bytes(), 0)
            );
        }
    }
}
