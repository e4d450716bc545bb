//! Random schedules drawn from a seed: which operations each task of each locker issues,
//! over a small key space, with cancellation points; and which faults the run injects.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The key space of a run: lock keys (single, multi-key and fenced locks: the first three
/// for most operations, all eight for spread bursts), one semaphore and one read/write
/// lock. A key is one kind, as the library demands.
pub const LOCK_KEYS: [&str; 8] = ["L0", "L1", "L2", "L3", "L4", "L5", "L6", "L7"];
pub const SEM_KEY: &str = "S";
pub const RW_KEY: &str = "W";

/// What an operation holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One lock key or several (`run_all`/`acquire_all`); `fenced` for single keys.
    Lock {
        keys: Vec<&'static str>,
        fenced: bool,
    },
    Permit,
    Read,
    Write,
}

/// How it takes the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `run` (renewed, stopped on loss).
    Run,
    /// `try_run`.
    TryRun,
    /// `acquire`, then `then`.
    Acquire(Then),
    /// `try_acquire`, then `then`.
    TryAcquire(Then),
    /// `acquire`, hand off, restore on the same locker, hold, release.
    Handoff,
    /// `#[locked]` on the process's global locker (worker processes only).
    Attribute { try_mode: bool },
    /// `Election::lead` (one lock key, fenced where the store fences), with the call's
    /// timeout as the campaign's.
    Lead,
}

/// What a guard's holder does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Release,
    ExtendThenRelease,
    Drop,
    /// `auto_renew`, hold past the ttl, release.
    AutoRenew,
}

#[derive(Debug, Clone)]
pub enum Op {
    Hold {
        target: Target,
        entry: Entry,
        body_ms: u64,
        ttl_ms: u64,
        timeout_ms: u64,
        /// A `tokio::time::timeout` around the whole call, in microseconds.
        cancel_us: Option<u64>,
    },
    /// Many calls at once, each cancelled somewhere in its first milliseconds, on one
    /// key (cancellation x contention: calls queued, acquiring and releasing when dropped).
    Burst(Vec<Op>),
    IsLocked(&'static str),
    ForceRelease(&'static str),
    /// `fencing` asked of a semaphore: must be `Config`, before anything is sent.
    Misuse,
    Idle(u64),
}

/// Faults a run may inject, as the store allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGSTOP the server (one master, on Redlock and a Cluster), then SIGCONT.
    ServerPause,
    /// SIGKILL the server and start it again (Redlock: after the longest ttl).
    ServerRestart,
    /// One in-process locker's network goes silent, then heals (late bytes arrive).
    Cut,
    /// Redlock: one locker's path to a majority of masters goes silent.
    CutMajority,
    /// One locker's connections are reset.
    Reset,
    /// One in-process locker's answers are held (its requests still reach the store),
    /// then delivered late.
    LateReplies,
    /// SIGSTOP a worker process, then SIGCONT.
    WorkerPause,
    /// SIGKILL a worker process.
    WorkerKill,
}

#[derive(Debug, Clone)]
pub struct PlannedFault {
    pub kind: FaultKind,
    pub at_ms: u64,
    pub for_ms: u64,
    /// Which locker or worker or master.
    pub which: usize,
}

/// One run's plan.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    pub permits: u32,
    /// Per in-process locker, per task: its operations.
    pub lockers: Vec<Vec<Vec<Op>>>,
    /// Worker processes: per process, per task.
    pub workers: Vec<Vec<Vec<Op>>>,
    /// Which of the drawn workers run (all, unless a shrink dropped some): a worker
    /// draws its own operations again from the seed, by its index.
    pub running: Vec<usize>,
    pub faults: Vec<PlannedFault>,
}

impl Schedule {
    pub fn operations(&self) -> usize {
        let workers = self.running.iter().map(|&i| &self.workers[i]);
        self.lockers
            .iter()
            .chain(workers)
            .flatten()
            .flatten()
            .map(|op| match op {
                Op::Burst(calls) => calls.len(),
                _ => 1,
            })
            .sum()
    }
}

/// What the store offers the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Abilities {
    pub fencing: bool,
    pub processes: bool,
    pub faults: &'static [FaultKind],
    /// The most calls of one burst: below the store's connection pool (PostgreSQL keeps
    /// 16 per locker; more would measure the pool's queue, not the locks).
    pub burst: usize,
}

pub fn ops(rng: &mut StdRng, n: usize, worker: bool, ab: Abilities) -> Vec<Op> {
    (0..n).map(|_| op(rng, worker, ab)).collect()
}

fn op(rng: &mut StdRng, worker: bool, ab: Abilities) -> Op {
    let roll = rng.random_range(0..100);
    match roll {
        0..=2 => return Op::IsLocked(pick_key(rng)),
        3 => return Op::ForceRelease(pick_key(rng)),
        4 => return Op::Misuse,
        5..=6 => return Op::Idle(rng.random_range(5..60)),
        // Bursts hold for a minute, so that a lock leaked by a cancelled call outlives the
        // run and is seen; a killed worker's would too, so workers have none.
        7..=10 if !worker => return burst(rng, ab),
        7..=10 => return Op::Idle(rng.random_range(5..60)),
        _ => {}
    }
    let target = match rng.random_range(0..10) {
        0..=3 => Target::Lock {
            keys: vec![LOCK_KEYS[rng.random_range(0..3)]],
            fenced: ab.fencing && rng.random_bool(0.4),
        },
        4 => {
            let a = rng.random_range(0..3);
            let b = (a + rng.random_range(1..3)) % 3;
            Target::Lock {
                keys: vec![LOCK_KEYS[a], LOCK_KEYS[b]],
                fenced: false,
            }
        }
        5..=6 => Target::Permit,
        7..=8 => Target::Read,
        _ => Target::Write,
    };
    let multi = matches!(&target, Target::Lock { keys, .. } if keys.len() > 1);
    let mut then = || match rng.random_range(0..10) {
        0..=4 => Then::Release,
        5..=6 => Then::ExtendThenRelease,
        7..=8 => Then::Drop,
        _ => Then::AutoRenew,
    };
    let then = then();
    let entry = match rng.random_range(0..13) {
        0..=3 => Entry::Run,
        4..=5 if !multi => Entry::TryRun,
        6..=7 => Entry::Acquire(then),
        8 if !multi => Entry::TryAcquire(then),
        9 if !multi && matches!(target, Target::Lock { .. }) => Entry::Handoff,
        10..=11 if worker && !multi && !matches!(target, Target::Permit) => Entry::Attribute {
            try_mode: matches!(target, Target::Lock { .. }) && rng.random_bool(0.3),
        },
        12 if !multi && matches!(target, Target::Lock { .. }) => Entry::Lead,
        _ => Entry::Run,
    };
    // The attribute's arguments are fixed at compile time (ttl 2 s, timeout 1 s) and
    // fence nothing.
    let (target, ttl_ms, timeout_ms) = match (entry, target) {
        (Entry::Attribute { .. }, Target::Lock { keys, .. }) => (
            Target::Lock {
                keys,
                fenced: false,
            },
            2000,
            1000,
        ),
        (Entry::Attribute { .. }, t) => (t, 2000, 1000),
        (_, t) => (
            t,
            [800, 1500, 3000][rng.random_range(0..3)],
            [100, 600, 2000][rng.random_range(0..3)],
        ),
    };
    // Mostly short bodies; some outlast the ttl, which only renewal may allow.
    let renewed = matches!(
        entry,
        Entry::Run
            | Entry::TryRun
            | Entry::Attribute { .. }
            | Entry::Lead
            | Entry::Acquire(Then::AutoRenew)
    ) || matches!(entry, Entry::TryAcquire(Then::AutoRenew));
    let body_ms = match rng.random_range(0..10) {
        0 if renewed => ttl_ms + ttl_ms / 2,
        0..=2 => 0,
        _ => rng.random_range(1..60),
    };
    // Cancellation points in microseconds: half of them within the first 2 ms, where an
    // empty body's acquisition, release and the next call's queueing all happen.
    let cancel_us = rng.random_bool(0.3).then(|| {
        if rng.random_bool(0.5) {
            rng.random_range(0..2_000)
        } else {
            rng.random_range(0..(body_ms + 40) * 1000)
        }
    });
    Op::Hold {
        target,
        entry,
        body_ms,
        ttl_ms,
        timeout_ms,
        cancel_us,
    }
}

fn burst(rng: &mut StdRng, ab: Abilities) -> Op {
    if rng.random_bool(0.5) {
        return spread(rng, ab);
    }
    let target = match rng.random_range(0..4) {
        0 => Target::Permit,
        1 => Target::Read,
        2 => Target::Write,
        _ => Target::Lock {
            keys: vec![LOCK_KEYS[rng.random_range(0..3)]],
            fenced: ab.fencing && rng.random_bool(0.3),
        },
    };
    let n = rng.random_range(ab.burst / 4..ab.burst);
    // On the read/write key, readers and writers mixed; some calls are not cancelled.
    let rw = matches!(target, Target::Read | Target::Write);
    let calls = (0..n)
        .map(|_| {
            let target = match rw {
                true if rng.random_bool(0.3) => Target::Write,
                true => Target::Read,
                false => target.clone(),
            };
            let entry = match rng.random_range(0..4) {
                0 => Entry::TryRun,
                1 => Entry::Acquire(Then::Drop),
                _ => Entry::Run,
            };
            burst_call(rng, target, entry, 20, 0.6)
        })
        .collect();
    Op::Burst(calls)
}

/// A burst of non-waiting tries over every lock key, fenced or not: many calls of one
/// locker out at once on different keys, which is what the stores' group commit (Redis,
/// SQLite, PostgreSQL) sends together; some are cancelled while their batch is queued or
/// out.
fn spread(rng: &mut StdRng, ab: Abilities) -> Op {
    let n = rng.random_range(ab.burst / 2..ab.burst);
    let calls = (0..n)
        .map(|_| {
            let target = Target::Lock {
                keys: vec![LOCK_KEYS[rng.random_range(0..LOCK_KEYS.len())]],
                fenced: ab.fencing && rng.random_bool(0.4),
            };
            let entry = match rng.random_range(0..3) {
                0 => Entry::TryRun,
                _ => Entry::TryAcquire(Then::Release),
            };
            burst_call(rng, target, entry, 10, 0.5)
        })
        .collect();
    Op::Burst(calls)
}

/// One call of a burst: held for a minute (a leaked lock outlives the run and is seen),
/// a body of up to `body_max_ms` or none, cancelled within 2-3 ms with probability
/// `cancel_p`.
fn burst_call(
    rng: &mut StdRng,
    target: Target,
    entry: Entry,
    body_max_ms: u64,
    cancel_p: f64,
) -> Op {
    Op::Hold {
        target,
        entry,
        body_ms: if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(1..body_max_ms)
        },
        ttl_ms: 60_000,
        timeout_ms: 2000,
        cancel_us: rng
            .random_bool(cancel_p)
            .then(|| rng.random_range(0..3_000)),
    }
}

fn pick_key(rng: &mut StdRng) -> &'static str {
    match rng.random_range(0..5) {
        0..=2 => LOCK_KEYS[rng.random_range(0..3)],
        3 => SEM_KEY,
        _ => RW_KEY,
    }
}

/// Draws a whole schedule from `seed`.
pub fn draw(seed: u64, ab: Abilities, lockers: usize) -> Schedule {
    let mut rng = StdRng::seed_from_u64(seed);
    let permits = rng.random_range(1..=3);
    let tasks = |rng: &mut StdRng, worker: bool| -> Vec<Vec<Op>> {
        let n = rng.random_range(1..=4);
        (0..n)
            .map(|_| {
                let len = rng.random_range(4..=14);
                ops(rng, len, worker, ab)
            })
            .collect()
    };
    let lockers: Vec<_> = (0..lockers).map(|_| tasks(&mut rng, false)).collect();
    let workers: Vec<_> = if ab.processes {
        (0..rng.random_range(1..=2))
            .map(|_| tasks(&mut rng, true))
            .collect()
    } else {
        Vec::new()
    };
    let mut faults = Vec::new();
    if !ab.faults.is_empty() {
        for _ in 0..rng.random_range(0..=2) {
            let kind = ab.faults[rng.random_range(0..ab.faults.len())];
            if matches!(kind, FaultKind::WorkerPause | FaultKind::WorkerKill) && workers.is_empty()
            {
                continue;
            }
            faults.push(PlannedFault {
                kind,
                at_ms: rng.random_range(50..1500),
                for_ms: rng.random_range(300..2500),
                which: rng.random_range(0..8),
            });
        }
    }
    let running = (0..workers.len()).collect();
    Schedule {
        seed,
        permits,
        lockers,
        workers,
        running,
        faults,
    }
}

/// Smaller variants of `s`, biggest cuts first: without a worker, without a fault,
/// without a task, a task with half or one fewer of its operations.
pub fn shrinks(s: &Schedule) -> Vec<Schedule> {
    let mut out = Vec::new();
    for i in 0..s.running.len() {
        let mut c = s.clone();
        c.running.remove(i);
        out.push(c);
    }
    for i in 0..s.faults.len() {
        let mut c = s.clone();
        c.faults.remove(i);
        out.push(c);
    }
    for l in 0..s.lockers.len() {
        for t in 0..s.lockers[l].len() {
            let ops = &s.lockers[l][t];
            let mut c = s.clone();
            c.lockers[l].remove(t);
            out.push(c);
            if ops.len() >= 2 {
                let half = ops.len() / 2;
                for keep in [ops[..half].to_vec(), ops[half..].to_vec()] {
                    let mut c = s.clone();
                    c.lockers[l][t] = keep;
                    out.push(c);
                }
            }
            for i in 0..ops.len() {
                let mut c = s.clone();
                c.lockers[l][t].remove(i);
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of taking a hold is drawn, leadership among them, on a store that fences
    /// and one that does not.
    #[test]
    fn schedules_draw_every_entry_point() {
        for fencing in [true, false] {
            let ab = Abilities {
                fencing,
                processes: true,
                faults: &[],
                burst: 16,
            };
            let mut seen = std::collections::HashSet::new();
            for seed in 0..200 {
                let schedule = draw(seed, ab, 2);
                for op in schedule
                    .lockers
                    .iter()
                    .chain(&schedule.workers)
                    .flatten()
                    .flatten()
                {
                    if let Op::Hold { entry, .. } = op {
                        seen.insert(std::mem::discriminant(entry));
                    }
                }
            }
            for entry in [
                Entry::Run,
                Entry::TryRun,
                Entry::Acquire(Then::Release),
                Entry::TryAcquire(Then::Release),
                Entry::Handoff,
                Entry::Attribute { try_mode: false },
                Entry::Lead,
            ] {
                assert!(
                    seen.contains(&std::mem::discriminant(&entry)),
                    "{entry:?} is never drawn (fencing {fencing})"
                );
            }
        }
    }
}
