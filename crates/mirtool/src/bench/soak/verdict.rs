//! Whether a resource series is flat: a plateau, how far each churn cycle
//! ends from it, and the least-squares slope over the run.
//!
//! Only *steady* samples count (link up, the client population connected):
//! right after a link drop every client is reconnecting and the figures say
//! nothing about leaks. Cycle 0 (before the first link drop) is the warm-up:
//! allocator arenas and the kernel's socket caches grow to their working size
//! there, so it is left out of the plateau and the slope when later cycles exist.

use serde::{Deserialize, Serialize};

/// One sample of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the start of the run.
    pub t: f64,
    /// The value (KiB, descriptors, …).
    pub v: f64,
    /// Link drops seen before this sample: the churn cycle it belongs to.
    pub cycle: u64,
    /// Taken with the link up and the clients connected.
    pub steady: bool,
}

/// How a series behaved, and whether that passes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeriesVerdict {
    /// Median of the steady samples after the warm-up.
    pub plateau: f64,
    /// Least-squares slope of those samples, per hour.
    pub slope_per_hour: f64,
    /// Slope × the span of those samples, as a fraction of the plateau: the
    /// growth the trend accounts for over the run.
    pub trend_fraction: f64,
    /// Last steady value of each cycle, as (cycle, value).
    pub cycle_ends: Vec<(u64, f64)>,
    /// Largest |cycle end − plateau| / plateau.
    pub worst_cycle_fraction: f64,
    /// Steady samples the verdict rests on.
    pub samples: usize,
    /// Both within the tolerance, with enough samples to say.
    pub pass: bool,
    /// Why it failed, empty when it passed.
    pub reason: String,
}

/// Fewest steady samples a verdict may rest on.
pub const MIN_SAMPLES: usize = 3;

/// Least-squares slope of v over t; 0 for fewer than two distinct times.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(t, v) in points {
        num += (t - mean_t) * (v - mean_v);
        den += (t - mean_t) * (t - mean_t);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Median; 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Judge one series: every cycle must end within `tolerance` (a fraction) of the
/// plateau, and the trend over the run must stay within it too.
pub fn judge(series: &[Point], tolerance: f64) -> SeriesVerdict {
    let steady: Vec<&Point> = series.iter().filter(|p| p.steady).collect();
    let after_warmup: Vec<&Point> = steady.iter().copied().filter(|p| p.cycle > 0).collect();
    let used = if after_warmup.len() >= MIN_SAMPLES {
        after_warmup
    } else {
        steady
    };
    let values: Vec<f64> = used.iter().map(|p| p.v).collect();
    let plateau = median(&values);
    let pts: Vec<(f64, f64)> = used.iter().map(|p| (p.t, p.v)).collect();
    let per_sec = slope(&pts);
    let span = match (used.first(), used.last()) {
        (Some(a), Some(b)) => b.t - a.t,
        _ => 0.0,
    };
    let frac = |x: f64| if plateau > 0.0 { x / plateau } else { 0.0 };
    let trend_fraction = frac(per_sec * span);
    let mut cycle_ends: Vec<(u64, f64)> = Vec::new();
    for p in &used {
        match cycle_ends.last_mut() {
            Some(last) if last.0 == p.cycle => last.1 = p.v,
            _ => cycle_ends.push((p.cycle, p.v)),
        }
    }
    let worst_cycle_fraction = cycle_ends
        .iter()
        .map(|&(_, v)| frac((v - plateau).abs()))
        .fold(0.0, f64::max);
    let reason = if used.len() < MIN_SAMPLES {
        format!("only {} steady samples (need {MIN_SAMPLES})", used.len())
    } else if trend_fraction > tolerance {
        format!(
            "grows {:.1} % of the plateau over the run (limit {:.1} %)",
            trend_fraction * 100.0,
            tolerance * 100.0
        )
    } else if worst_cycle_fraction > tolerance {
        format!(
            "a cycle ended {:.1} % off the plateau (limit {:.1} %)",
            worst_cycle_fraction * 100.0,
            tolerance * 100.0
        )
    } else {
        String::new()
    };
    SeriesVerdict {
        plateau,
        slope_per_hour: per_sec * 3600.0,
        trend_fraction,
        cycle_ends,
        worst_cycle_fraction,
        samples: used.len(),
        pass: reason.is_empty(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `values` sampled every 10 s, a new cycle every `per_cycle` samples, all steady.
    fn series(values: &[f64], per_cycle: usize) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                t: i as f64 * 10.0,
                v,
                cycle: (i / per_cycle) as u64,
                steady: true,
            })
            .collect()
    }

    #[test]
    fn slope_of_a_line_and_of_nothing() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 + 2.0 * f64::from(i)))
            .collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 7.0)]), 0.0, "no time span");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn a_flat_noisy_series_passes() {
        let v: Vec<f64> = (0..60)
            .map(|i| 10_000.0 + if i % 2 == 0 { 150.0 } else { -150.0 })
            .collect();
        let verdict = judge(&series(&v, 6), 0.05);
        assert!(verdict.pass, "{verdict:?}");
        assert_eq!(verdict.plateau, 10_000.0);
        assert!(verdict.trend_fraction.abs() < 0.01);
        assert_eq!(verdict.cycle_ends.len(), 9, "cycle 0 is the warm-up");
    }

    #[test]
    fn a_slow_leak_fails_on_the_trend() {
        // +0.2 % per sample: +12 % over 60 samples, each cycle within 5 % of the median.
        let v: Vec<f64> = (0..60)
            .map(|i| 10_000.0 * (1.0 + 0.002 * f64::from(i)))
            .collect();
        let verdict = judge(&series(&v, 6), 0.05);
        assert!(!verdict.pass);
        assert!(verdict.reason.contains("grows"), "{}", verdict.reason);
        assert!(verdict.slope_per_hour > 0.0);
    }

    #[test]
    fn a_cycle_that_does_not_come_back_fails() {
        let mut v = vec![10_000.0; 60];
        // Cycle 4 ends 8 % high; the rest is flat, so the trend stays small.
        v[29] = 10_800.0;
        let verdict = judge(&series(&v, 6), 0.05);
        assert!(!verdict.pass);
        assert!(verdict.reason.contains("cycle"), "{}", verdict.reason);
        assert!((verdict.worst_cycle_fraction - 0.08).abs() < 1e-9);
    }

    #[test]
    fn warm_up_and_unsteady_samples_are_left_out() {
        // Ramp during cycle 0, a spike while reconnecting, then flat.
        let mut pts = series(&[1_000.0, 5_000.0, 9_000.0], 3);
        pts.extend((3..30).map(|i| Point {
            t: f64::from(i) * 10.0,
            v: if i == 10 { 20_000.0 } else { 10_000.0 },
            cycle: 1 + (i as u64 - 3) / 5,
            steady: i != 10,
        }));
        let verdict = judge(&pts, 0.05);
        assert!(verdict.pass, "{verdict:?}");
        assert_eq!(verdict.samples, 26);
    }

    #[test]
    fn too_few_samples_is_no_pass() {
        let verdict = judge(&series(&[1.0, 1.0], 1), 0.05);
        assert!(!verdict.pass);
        assert!(verdict.reason.contains("steady samples"));
    }
}
