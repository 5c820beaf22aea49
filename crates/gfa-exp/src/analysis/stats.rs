//! The statistics of the report (formulas in docs/method.md §8): Wilson score intervals for an
//! accuracy, and for two methods evaluated on the same points the paired difference of their
//! accuracies with Newcombe's interval and the exact McNemar test.

/// The 0.975 quantile of the standard normal (two-sided 95 %).
pub const Z95: f64 = 1.959_963_984_540_054;

/// A point estimate and its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// `a [lo, hi]` in percent with `digits` decimals.
    pub fn pct(&self, digits: usize) -> String {
        let [e, l, h] = [self.estimate, self.low, self.high].map(|x| percent(x, digits));
        format!("{e} [{l}, {h}]")
    }

    /// Like [`Interval::pct`] with a sign on each number (for differences).
    pub fn pct_signed(&self, digits: usize) -> String {
        format!(
            "{:+.digits$} [{:+.digits$}, {:+.digits$}]",
            100.0 * self.estimate,
            100.0 * self.low,
            100.0 * self.high
        )
    }
}

/// Wilson's score interval for `k` successes in `n` trials (`None` for `n = 0`).
pub fn wilson(k: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (all, none) = (k == n, k == 0);
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At p = 0 or 1 the limit on that side is exactly 0 or 1 (the formula gives it up to rounding).
    let low = if none { 0.0 } else { (center - half).max(0.0) };
    let high = if all { 1.0 } else { (center + half).min(1.0) };
    Some(Interval { estimate: p, low, high })
}

/// The 2×2 table of two methods' outcomes on the same points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paired {
    /// Robust under both.
    pub both: u64,
    /// Robust under the first only.
    pub first_only: u64,
    /// Robust under the second only.
    pub second_only: u64,
    /// Robust under neither.
    pub neither: u64,
}

impl Paired {
    /// The table of per-point pairs `(first robust, second robust)`.
    pub fn of(pairs: &[(bool, bool)]) -> Self {
        let mut t = Paired::default();
        for &(a, b) in pairs {
            match (a, b) {
                (true, true) => t.both += 1,
                (true, false) => t.first_only += 1,
                (false, true) => t.second_only += 1,
                (false, false) => t.neither += 1,
            }
        }
        t
    }

    pub fn n(&self) -> u64 {
        self.both + self.first_only + self.second_only + self.neither
    }

    /// First accuracy minus second with Newcombe's hybrid score interval for paired
    /// proportions (his method 10): each accuracy's Wilson limits, combined with the
    /// correlation φ of the two outcomes. `None` for no points.
    pub fn difference(&self) -> Option<Interval> {
        let n = self.n();
        let first = wilson(self.both + self.first_only, n)?;
        let second = wilson(self.both + self.second_only, n)?;
        let (a, b, c, d) = (
            self.both as f64,
            self.first_only as f64,
            self.second_only as f64,
            self.neither as f64,
        );
        let margins = (a + b) * (c + d) * (a + c) * (b + d);
        let phi = if margins > 0.0 { (a * d - b * c) / margins.sqrt() } else { 0.0 };
        let (p1, p2) = (first.estimate, second.estimate);
        let (l1, u1, l2, u2) = (first.low, first.high, second.low, second.high);
        let delta = ((p1 - l1).powi(2) - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2).powi(2))
            .max(0.0)
            .sqrt();
        let eps = ((u1 - p1).powi(2) - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2).powi(2))
            .max(0.0)
            .sqrt();
        let diff = p1 - p2;
        Some(Interval {
            estimate: diff,
            low: (diff - delta).max(-1.0),
            high: (diff + eps).min(1.0),
        })
    }

    /// The exact two-sided McNemar p-value: under "both methods equally robust", each of the
    /// `b + c` discordant points is robust under the first only with probability ½, so the
    /// p-value is twice the smaller binomial tail, at most 1.
    pub fn mcnemar_p(&self) -> f64 {
        let (b, c) = (self.first_only, self.second_only);
        let m = b + c;
        if m == 0 {
            return 1.0;
        }
        // Σ_{k ≤ min(b, c)} C(m, k) / 2^m, the terms built in log space (m can be thousands).
        let ln_half_m = -(m as f64) * std::f64::consts::LN_2;
        let mut ln_choose = 0.0; // ln C(m, 0)
        let mut tail = 0.0;
        for k in 0..=b.min(c) {
            if k > 0 {
                ln_choose += ((m - k + 1) as f64).ln() - (k as f64).ln();
            }
            tail += (ln_choose + ln_half_m).exp();
        }
        (2.0 * tail).min(1.0)
    }
}

/// A fraction in percent with `digits` decimals (`0.1234` → `12.3` with one): the one percent
/// format of the tables, the masking checks' details and the intervals.
pub fn percent(x: f64, digits: usize) -> String {
    format!("{:.digits$}", 100.0 * x)
}

/// [`percent`] followed by `%`.
pub fn percent_sign(x: f64, digits: usize) -> String {
    format!("{}%", percent(x, digits))
}

/// [`percent`], or `—` where there is no value.
pub fn percent_or_dash(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |x| percent(x, digits))
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Option<Stat> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
        });
        Some(Stat { mean, std, n })
    }

    /// `mean ± std` scaled by `scale` with `digits` decimals.
    pub fn fmt(&self, scale: f64, digits: usize) -> String {
        match self.std {
            Some(s) => format!("{:.d$} ± {:.d$}", self.mean * scale, s * scale, d = digits),
            None => format!("{:.d$}", self.mean * scale, d = digits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wilson limits by hand for 81 of 263 (p = 0.30798, z² = 3.84146): centre
    /// (0.30798 + 3.84146/526) / (1 + 3.84146/263) = 0.31080, half-width
    /// 1.95996/1.01461 · √(0.30798·0.69202/263 + 3.84146/276676) = 0.05545, so
    /// [0.2553, 0.3662], the values tabulated for this example in the literature on intervals
    /// for one proportion. Four decimals: the hand computation's precision.
    #[test]
    fn wilson_matches_hand_values() {
        let w = wilson(81, 263).unwrap();
        assert!((w.low - 0.2553).abs() < 5e-5, "{w:?}");
        assert!((w.high - 0.3662).abs() < 5e-5, "{w:?}");
        // All successes: the upper limit is 1, the lower n/(n + z²) = 10/13.84146 = 0.72247.
        let w = wilson(10, 10).unwrap();
        assert_eq!(w.high, 1.0);
        assert!((w.low - 10.0 / (10.0 + Z95 * Z95)).abs() < 1e-12);
        assert_eq!(wilson(0, 0), None);
    }

    /// McNemar by hand: b = 9, c = 2, m = 11: (C(11,0) + C(11,1) + C(11,2)) / 2^11 =
    /// 67/2048, doubled = 0.0654296875. b = c: p = 1. b = 0, c = 1: 2 · ½ = 1.
    #[test]
    fn mcnemar_matches_hand_values() {
        let t = Paired { both: 10, first_only: 9, second_only: 2, neither: 5 };
        assert!((t.mcnemar_p() - 134.0 / 2048.0).abs() < 1e-12);
        let t = Paired { both: 1, first_only: 3, second_only: 3, neither: 0 };
        assert_eq!(t.mcnemar_p(), 1.0);
        let t = Paired { first_only: 0, second_only: 1, ..Paired::default() };
        assert_eq!(t.mcnemar_p(), 1.0);
        // b = 0, c = 20: 2 / 2^20.
        let t = Paired { second_only: 20, ..Paired::default() };
        assert!((t.mcnemar_p() - 2.0 / 1_048_576.0).abs() < 1e-18);
        // Large m: no overflow, symmetric in b and c.
        let t = Paired { first_only: 2000, second_only: 1900, ..Paired::default() };
        let u = Paired { first_only: 1900, second_only: 2000, ..Paired::default() };
        assert!(t.mcnemar_p() > 0.0 && t.mcnemar_p() < 0.2);
        assert!((t.mcnemar_p() - u.mcnemar_p()).abs() < 1e-12);
    }

    /// Newcombe's interval by hand for a = 12, b = 9, c = 2, d = 21 (n = 44): p1 = 21/44 =
    /// 0.47727, Wilson [0.33755, 0.62065]; p2 = 14/44 = 0.31818, Wilson [0.19999, 0.46557];
    /// φ = (12·21 − 9·2)/√(21·23·14·30) = 234/450.40 = 0.51954; δ = √(0.13972² −
    /// 2·0.51954·0.13972·0.14739 + 0.14739²) = 0.14088; ε = √(0.14337² −
    /// 2·0.51954·0.14337·0.11819 + 0.11819²) = 0.13007; difference 0.15909, interval [0.01821, 0.28916]. Four decimals:
    /// the hand computation's precision.
    #[test]
    fn newcombe_matches_hand_values() {
        let t = Paired { both: 12, first_only: 9, second_only: 2, neither: 21 };
        let d = t.difference().unwrap();
        assert!((d.estimate - 7.0 / 44.0).abs() < 1e-12);
        assert!((d.low - 0.01821).abs() < 5e-5, "{d:?}");
        assert!((d.high - 0.28916).abs() < 5e-5, "{d:?}");
        // Identical outcomes: difference 0, interval around it, p = 1.
        let same = Paired::of(&[(true, true), (false, false), (true, true)]);
        let d = same.difference().unwrap();
        assert_eq!(d.estimate, 0.0);
        assert!(d.low <= 0.0 && d.high >= 0.0);
        assert_eq!(Paired::default().difference(), None);
    }
}
