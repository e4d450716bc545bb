//! Statistics the benches share: percentiles, medians, throughput under many tasks, and
//! alternating rounds.
//!
//! Machines drift by far more than the effects measured, so sides are never compared over
//! long separate runs: each round measures every side once, in order, and a side is judged
//! by the median of its per-round values and, against a baseline, by the median of its
//! per-round ratios ([`Rounds`], [`alternate`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use locked::{LockOptions, Locker};
use serde_json::{Value, json};

/// The `p` percentile (0.0..=1.0, nearest rank) of sorted durations; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The median (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The fewest and the most sections one task got, over the mean per task: how fairly a
/// contended key was shared (1.0 and 1.0 when perfectly).
pub fn shares_over_mean(per_task: &[usize]) -> (f64, f64) {
    let mean = per_task.iter().sum::<usize>() as f64 / per_task.len().max(1) as f64;
    let min = per_task.iter().min().copied().unwrap_or(0);
    let max = per_task.iter().max().copied().unwrap_or(0);
    (min as f64 / mean, max as f64 / mean)
}

/// `tasks` tasks calling `cycle(task, i)` (`i` from 1) back to back until `dur` has
/// passed: the cycles completed per second, over the whole run.
pub async fn throughput<F, Fut>(tasks: usize, dur: Duration, cycle: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let count = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + dur;
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (count, cycle) = (count.clone(), cycle.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                cycle(t, i).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    for h in handles {
        h.await.expect("a throughput task panicked");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64().max(dur.as_secs_f64())
}

/// One value per side per round, the sides measured in turn within each round.
#[derive(Clone, Debug)]
pub struct Rounds<const N: usize> {
    rounds: Vec<[f64; N]>,
}

impl<const N: usize> Default for Rounds<N> {
    fn default() -> Self {
        Self { rounds: Vec::new() }
    }
}

impl<const N: usize> Rounds<N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one round: a value per side (NaN for a side not measured).
    pub fn push(&mut self, round: [f64; N]) {
        self.rounds.push(round);
    }

    /// Each side's median over the rounds.
    pub fn medians(&self) -> [f64; N] {
        std::array::from_fn(|side| median(self.rounds.iter().map(|r| r[side]).collect()))
    }

    /// Each side's median over the rounds of its value over `base`'s in the same round.
    pub fn ratios_to(&self, base: usize) -> [f64; N] {
        std::array::from_fn(|side| median(self.rounds.iter().map(|r| r[side] / r[base]).collect()))
    }
}

/// `rounds` rounds of `measure` on every side: in the order given in even rounds, the
/// other way round in odd ones (A B, B A, ...), so that no side always follows the other
/// (what one block leaves behind, such as a database's purge work or a cold cache, falls
/// on both sides alike).
pub async fn alternate<S: Copy, const N: usize>(
    rounds: usize,
    sides: [S; N],
    mut measure: impl AsyncFnMut(S) -> f64,
) -> Rounds<N> {
    let mut out = Rounds::new();
    for r in 0..rounds {
        let mut round = [f64::NAN; N];
        for i in 0..N {
            let at = if r % 2 == 0 { i } else { N - 1 - i };
            round[at] = measure(sides[at]).await;
        }
        out.push(round);
    }
    out
}

/// W3: 8 tasks of one `Locker` on one key (`w3`), ~1 ms sections, for `dur`: sections/s,
/// waits (p50, p99, max), each task's share over the mean, and overlaps (which must be 0).
pub async fn one_key(lib: &Locker, dur: Duration) -> Value {
    const TASKS: usize = 8;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (lib, inside, overlaps) = (lib.clone(), inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            let opts = LockOptions::default()
                .logging(false)
                .timeout(Duration::from_secs(60));
            while Instant::now() < end {
                let asked = Instant::now();
                let guard = lib.acquire("w3", opts).await.unwrap();
                waits.push(asked.elapsed());
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
            waits
        }));
    }
    let (mut waits, mut per_task) = (Vec::new(), Vec::new());
    for t in tasks {
        let w = t.await.unwrap();
        per_task.push(w.len());
        waits.extend(w);
    }
    let elapsed = start.elapsed();
    waits.sort();
    let (min_share, max_share) = shares_over_mean(&per_task);
    json!({
        "sections": waits.len(),
        "sections_per_s": waits.len() as f64 / elapsed.as_secs_f64(),
        "wait_p50_us": us(percentile(&waits, 0.5)),
        "wait_p99_us": us(percentile(&waits, 0.99)),
        "wait_max_us": us(waits.last().copied().unwrap_or_default()),
        "min_share_over_mean": min_share,
        "max_share_over_mean": max_share,
        "overlaps": overlaps.load(Ordering::SeqCst),
    })
}
