//! The randomized, model-checked harness (issue 16): on every store of the store list,
//! schedules drawn from a seed run several lockers (and, where the store is shared across
//! processes, worker processes: this binary started again) through random operations of
//! every kind and entry point, cancelled at random points, while faults strike: server
//! pauses and restarts, network cuts and resets through a TCP proxy, Redlock minority and
//! majority cuts, a Cluster master failover, worker processes paused and killed. Every
//! body records its span on the host's monotonic clock; `check.rs` verifies the history,
//! and after each run nothing may be left held.
//!
//! - `LOCKED_MODEL_SECONDS=N`: the budget per store (default 30).
//! - `LOCKED_MODEL_SEED=S`: replays exactly schedule `S` (printed by every run).

mod attribute;
mod check;
mod exec;
mod history;
mod schedule;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use locked::Locker;
use locked_test_support::{Proxy, Store, eventually, on_stores};
use schedule::{Abilities, FaultKind, LOCK_KEYS, RW_KEY, SEM_KEY, Schedule};

use crate::check::Model;
use crate::exec::Task;
use crate::history::{History, Recorder, now};

on_stores!(randomized_schedules_hold_the_model);

/// In-process lockers per run.
const LOCKERS: usize = 2;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn abilities(s: &Store) -> Abilities {
    use FaultKind::*;
    let reach = s.reach();
    let mut faults = Vec::new();
    faults.extend(reach.server_pause.then_some(ServerPause));
    faults.extend(reach.server_restart.then_some(ServerRestart));
    faults.extend(reach.cut.then_some(Cut));
    faults.extend(reach.majority_cut.then_some(CutMajority));
    if reach.cut {
        faults.extend([Reset, LateReplies]);
    }
    if reach.processes {
        faults.extend([WorkerPause, WorkerKill]);
    }
    Abilities {
        fencing: s.fences(),
        processes: reach.processes,
        faults: Box::leak(faults.into_boxed_slice()),
        // The stores that serialise their writers get smaller bursts.
        burst: if reach.serialises { 12 } else { 32 },
    }
}

/// What a worker process needs to open the same store.
fn store_env(s: &Store) -> Vec<(&'static str, String)> {
    let prefix = s.locker.prefix().to_owned();
    let (kind, urls, schema) = s.locator();
    vec![
        ("LOCKED_MODEL_STORE", kind),
        ("LOCKED_MODEL_URLS", urls),
        ("LOCKED_MODEL_SCHEMA", schema),
        ("LOCKED_MODEL_PREFIX", prefix),
    ]
}

/// One in-process locker, behind proxies of its own where the store allows a cut.
struct Client {
    locker: Locker,
    proxies: Vec<Proxy>,
}

fn client(s: &Store) -> Client {
    let (locker, proxies) = s.proxied();
    Client { locker, proxies }
}

/// The worker's side: a no-op unless started by a run as a worker.
#[test]
fn model_worker() {
    let Some(seed) = env("LOCKED_MODEL_WORKER") else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let index: usize = env("LOCKED_MODEL_INDEX").unwrap().parse().unwrap();
    let ab = Abilities {
        fencing: env("LOCKED_MODEL_FENCING").as_deref() == Some("1"),
        processes: true,
        faults: &[],
        burst: env("LOCKED_MODEL_BURST").unwrap().parse().unwrap(),
    };
    let schedule = schedule::draw(seed, ab, LOCKERS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let locker = Store::reopen(
            &env("LOCKED_MODEL_STORE").unwrap(),
            &env("LOCKED_MODEL_URLS").unwrap_or_default(),
            &env("LOCKED_MODEL_SCHEMA").unwrap_or_default(),
            &env("LOCKED_MODEL_PREFIX").unwrap_or_default(),
        );
        locked::init(locker.clone()).unwrap();
        warm_up(&locker).await;
        let rec = Recorder::to_file(
            index as u32 + 1,
            std::path::Path::new(&env("LOCKED_MODEL_OUT").unwrap()),
        );
        let _stalls = history::watch_stalls(&rec);
        let task = Task {
            locker,
            space: space(seed),
            permits: schedule.permits,
            rec,
        };
        let tasks: Vec<_> = schedule.workers[index]
            .iter()
            .cloned()
            .map(|ops| {
                let task = task.clone();
                tokio::spawn(async move { task.run_all(&ops).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Releases of dropped guards and cancelled calls run in the background: a process
        // that exits at once leaves them to their ttl (as any process would).
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
}

/// Waits until `locker` answers (connections made, scripts loaded).
async fn warm_up(locker: &Locker) {
    let ok = eventually(Duration::from_secs(20), async || {
        match locker.try_acquire("warm-up", locker.options()).await {
            Ok(Some(g)) => g.release().await.is_ok(),
            Ok(None) => true,
            Err(_) => false,
        }
    })
    .await;
    assert!(ok, "the store did not answer within 20 s");
}

/// The run's keys share one hash tag: one slot on a Cluster, and no other run's keys.
fn space(seed: u64) -> String {
    format!("{{r{seed}}}:")
}

/// What one run did.
#[derive(Default)]
struct Tally {
    schedules: u64,
    operations: u64,
    faults: u64,
}

/// One store at a time: the stores' runs would otherwise share the host's 2 cores and
/// measure each other's load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn randomized_schedules_hold_the_model(mut s: Store) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let budget = Duration::from_secs(
        env("LOCKED_MODEL_SECONDS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    );
    let replay: Option<u64> = env("LOCKED_MODEL_SEED").and_then(|v| v.parse().ok());
    let base = replay.unwrap_or_else(|| now() % 1_000_000_000);
    let store = s.locker.store_name();
    let started = tokio::time::Instant::now();
    let mut tally = Tally::default();
    for i in 0.. {
        if (replay.is_some() && i > 0) || (replay.is_none() && started.elapsed() > budget) {
            break;
        }
        let seed = base + i;
        let schedule = schedule::draw(seed, abilities(&s), LOCKERS);
        let t0 = tokio::time::Instant::now();
        let findings = run(&mut s, &schedule).await;
        let schedule = &schedule;
        tally.schedules += 1;
        tally.operations += schedule.operations() as u64;
        tally.faults += schedule.faults.len() as u64;
        println!(
            "model: seed {seed} on {store}: {} operations, {} faults {:?}, {} ms: {}",
            schedule.operations(),
            schedule.faults.len(),
            schedule.faults.iter().map(|f| f.kind).collect::<Vec<_>>(),
            t0.elapsed().as_millis(),
            if findings.is_empty() { "ok" } else { "FAILED" }
        );
        if !findings.is_empty() {
            let shrunk = match env("LOCKED_MODEL_SHRINK") {
                Some(_) => format!(
                    "\nshrunk schedule: {:#?}",
                    shrink(&mut s, schedule.clone()).await
                ),
                None => String::new(),
            };
            panic!(
                "the model found {} problem(s) with seed {seed} on {store}; replay with \
                 LOCKED_MODEL_SEED={seed} (and LOCKED_MODEL_SHRINK=1 to shrink it):\n{}{shrunk}",
                findings.len(),
                findings.join("\n")
            );
        }
    }
    println!(
        "model total on {store}: {} schedules, {} operations, {} faults, 0 findings",
        tally.schedules, tally.operations, tally.faults
    );
}

/// The smallest variant of a failing schedule that still fails (timing-dependent
/// failures are tried twice per variant), within 60 runs.
async fn shrink(s: &mut Store, failing: Schedule) -> Schedule {
    let mut best = failing;
    let mut runs = 0;
    'smaller: while runs < 60 {
        for candidate in schedule::shrinks(&best) {
            for _ in 0..2 {
                runs += 1;
                if !run(s, &candidate).await.is_empty() {
                    println!("model: shrunk to {} operations", candidate.operations());
                    best = candidate;
                    continue 'smaller;
                }
                if runs >= 60 {
                    break 'smaller;
                }
            }
        }
        break;
    }
    best
}

/// Runs one schedule; its findings.
async fn run(s: &mut Store, schedule: &Schedule) -> Vec<String> {
    let seed = schedule.seed;
    let rec = Recorder::in_memory(0);
    let _stalls = history::watch_stalls(&rec);
    let clients: Vec<Client> = (0..schedule.lockers.len()).map(|_| client(s)).collect();
    // Connected before the schedule starts: a first connection's set-up is not a fault.
    for c in &clients {
        warm_up(&c.locker).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut workers: Vec<Child> = Vec::new();
    for &index in &schedule.running {
        let out = dir.path().join(format!("w{index}.history"));
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["model_worker", "--exact", "--nocapture", "--test-threads=1"])
            .envs(store_env(s))
            .env("LOCKED_MODEL_WORKER", seed.to_string())
            .env("LOCKED_MODEL_INDEX", index.to_string())
            .env("LOCKED_MODEL_FENCING", if s.fences() { "1" } else { "0" })
            .env("LOCKED_MODEL_BURST", abilities(s).burst.to_string())
            .env("LOCKED_MODEL_OUT", &out)
            .env_remove("LOCKED_MODEL_SEED")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        workers.push(child);
    }
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        for ops in &schedule.lockers[i] {
            let task = Task {
                locker: client.locker.clone(),
                space: space(seed),
                permits: schedule.permits,
                rec: rec.clone(),
            };
            let ops = ops.clone();
            tasks.push(tokio::spawn(async move { task.run_all(&ops).await }));
        }
    }
    let mut findings = Vec::new();
    let faults = inject(s, schedule, &clients, &pids, &rec);
    let calls = async {
        for t in tasks {
            if let Err(e) = t.await {
                findings.push(format!("a task panicked: {e}"));
            }
        }
    };
    let limit = Duration::from_secs(90);
    if tokio::time::timeout(limit, async { tokio::join!(faults, calls) })
        .await
        .is_err()
    {
        findings.push(format!(
            "liveness: some call did not return within {limit:?}"
        ));
    }
    // Workers: every one ends by itself (or was killed).
    for (index, mut child) in workers.into_iter().enumerate() {
        let _ = Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .status();
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    return Some((status, err));
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        match waited {
            None => findings.push(format!("liveness: worker {index} did not finish in 90 s")),
            Some((status, err)) if !status.success() && status.code().is_some() => {
                findings.push(format!("worker {index} failed ({status}):\n{err}"))
            }
            _ => {}
        }
    }
    let end = now();
    let mut lines = rec.lines();
    for &index in &schedule.running {
        let text = std::fs::read_to_string(dir.path().join(format!("w{index}.history")))
            .unwrap_or_default();
        lines.extend(text.lines().map(str::to_owned));
    }
    let history = History::parse(lines.iter().map(String::as_str));
    let model = Model {
        permits: schedule.permits,
        contention: s.reach().contends,
        end,
    };
    findings.extend(model.check(&history));
    // A store or network fault may leave a lease behind legitimately (a release that
    // could not reach the store lapses with its ttl): only fault-free runs must end clean.
    let store_faults = history.faults.iter().any(|f| !f.scope.starts_with("proc:"));
    let leftovers = quiescent(s, schedule).await;
    if store_faults {
        for key in LOCK_KEYS.into_iter().chain([SEM_KEY, RW_KEY]) {
            let _ = s
                .locker
                .force_release(&format!("{}{key}", space(seed)))
                .await;
        }
    } else {
        findings.extend(leftovers);
    }
    drop(clients);
    findings
}

/// Injects the schedule's faults one after another, each undone before the next.
async fn inject(
    s: &mut Store,
    schedule: &Schedule,
    clients: &[Client],
    pids: &[u32],
    rec: &Recorder,
) {
    let mut last = 0;
    for f in &schedule.faults {
        tokio::time::sleep(Duration::from_millis(f.at_ms.saturating_sub(last))).await;
        last = f.at_ms;
        let hold = Duration::from_millis(f.for_ms);
        let start = now();
        let signal = |sig: &str, pid: u32| {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
        };
        let (what, scope, lossy) = match f.kind {
            FaultKind::WorkerPause | FaultKind::WorkerKill if pids.is_empty() => continue,
            FaultKind::WorkerPause | FaultKind::WorkerKill => {
                let j = f.which % pids.len();
                let pid = pids[j];
                let scope = format!("proc:{}", schedule.running[j] + 1);
                if f.kind == FaultKind::WorkerKill {
                    signal("KILL", pid);
                    ("worker-kill", scope, false)
                } else {
                    signal("STOP", pid);
                    tokio::time::sleep(hold).await;
                    signal("CONT", pid);
                    ("worker-pause", scope, false)
                }
            }
            FaultKind::Cut | FaultKind::CutMajority | FaultKind::Reset | FaultKind::LateReplies => {
                let c = &clients[f.which % clients.len()];
                let scope = format!("locker:{}", f.which % clients.len());
                let n = match (f.kind, c.proxies.len()) {
                    (FaultKind::CutMajority, n) => n / 2 + 1,
                    (_, 3) => 1,
                    (_, n) => n,
                };
                let chosen: Vec<&Proxy> = c.proxies.iter().cycle().skip(f.which).take(n).collect();
                if f.kind == FaultKind::Reset {
                    chosen.iter().for_each(|p| p.reset());
                    ("reset", scope, false)
                } else if f.kind == FaultKind::LateReplies {
                    chosen.iter().for_each(|p| p.hold_replies());
                    tokio::time::sleep(hold).await;
                    chosen.iter().for_each(|p| p.heal());
                    ("late-replies", scope, false)
                } else {
                    chosen.iter().for_each(|p| p.cut());
                    tokio::time::sleep(hold).await;
                    chosen.iter().for_each(|p| p.heal());
                    ("cut", scope, false)
                }
            }
            FaultKind::ServerPause => {
                let full = s.locker.full_key(&seed_key(schedule)).unwrap();
                let lossy = s.pause_server(f.which, hold, &full).await;
                ("server-pause", "store".to_owned(), lossy)
            }
            FaultKind::ServerRestart => {
                let lossy = s.restart_server(f.which, hold).await;
                ("server-restart", "store".to_owned(), lossy)
            }
        };
        rec.fault(what, &scope, start, now(), lossy);
    }
}

fn seed_key(schedule: &Schedule) -> String {
    format!("{}{}", space(schedule.seed), LOCK_KEYS[0])
}

/// After every call returned: every key is free again, and the store keeps nothing of
/// any finished call.
async fn quiescent(s: &Store, schedule: &Schedule) -> Vec<String> {
    let mut found = Vec::new();
    let space = space(schedule.seed);
    let locker = &s.locker;
    // Leases of killed workers lapse within their ttl (3 s at most); background releases
    // land within a call's bound.
    let limit = Duration::from_secs(12);
    for key in LOCK_KEYS {
        let key = format!("{space}{key}");
        let free = eventually(limit, async || {
            match locker.try_acquire(&key, locker.options()).await {
                Ok(Some(g)) => g.release().await.is_ok(),
                _ => false,
            }
        })
        .await;
        if !free {
            found.push(format!(
                "quiescence: `{key}` is still held after every call ended"
            ));
        }
    }
    let sem = locker.semaphore(&format!("{space}{SEM_KEY}"), schedule.permits);
    if !eventually(limit, async || {
        sem.available().await.ok() == Some(schedule.permits)
    })
    .await
    {
        found.push(format!(
            "quiescence: semaphore `{space}{SEM_KEY}` has {:?} of {} permits free after every call ended",
            sem.available().await,
            schedule.permits
        ));
    }
    let rw = locker.rw(&format!("{space}{RW_KEY}"));
    let free = eventually(limit, async || {
        match rw.try_acquire_write(locker.options()).await {
            Ok(Some(g)) => g.release().await.is_ok(),
            _ => false,
        }
    })
    .await;
    if !free {
        found.push(format!(
            "quiescence: `{space}{RW_KEY}` is still held after every call ended"
        ));
    }
    // What the store holds of the run, apart from the fence counters (kept by design).
    let left = s.leftovers(schedule.seed).await;
    if !left.is_empty() {
        found.push(format!("quiescence: the store still holds {left:?}"));
    }
    found
}
