//! What a run records: holds (a body's entry and exit), calls (what was asked, when, and
//! how it ended) and faults, as one line each, stamped on the host's monotonic clock so
//! that the lines of every process of a run share one timeline.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Nanoseconds on `CLOCK_MONOTONIC`: the same clock in every process of the host.
pub fn now() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

/// What a hold admits beside it on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Lock,
    Permit,
    Read,
    Write,
    /// A call that holds nothing (`is_locked`, `force_release`, misuse).
    None,
}

impl Class {
    pub fn tag(self) -> &'static str {
        match self {
            Class::Lock => "lock",
            Class::Permit => "permit",
            Class::Read => "read",
            Class::Write => "write",
            Class::None => "none",
        }
    }
    fn parse(tag: &str) -> Self {
        match tag {
            "lock" => Class::Lock,
            "permit" => Class::Permit,
            "read" => Class::Read,
            "write" => Class::Write,
            _ => Class::None,
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Try mode found the hold taken (`None`, or `Busy`).
    Busy,
    Timeout,
    Backend,
    Lost,
    Config,
    /// Dropped by the harness before it returned (a timeout around the call).
    Cancelled,
    /// Anything else: always a finding.
    Other(String),
}

impl Outcome {
    pub fn of(e: &locked::LockError) -> Self {
        if e.is_busy() {
            Outcome::Busy
        } else if e.is_timeout() {
            Outcome::Timeout
        } else if e.is_backend() {
            Outcome::Backend
        } else if e.is_lost() {
            Outcome::Lost
        } else if matches!(e, locked::LockError::Config { .. }) {
            Outcome::Config
        } else {
            Outcome::Other(e.to_string().replace(['\t', '\n'], " "))
        }
    }
    fn tag(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Busy => "busy".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Backend => "backend".into(),
            Outcome::Lost => "lost".into(),
            Outcome::Config => "config".into(),
            Outcome::Cancelled => "cancelled".into(),
            Outcome::Other(m) => format!("other:{m}"),
        }
    }
    fn parse(tag: &str) -> Self {
        match tag {
            "ok" => Outcome::Ok,
            "busy" => Outcome::Busy,
            "timeout" => Outcome::Timeout,
            "backend" => Outcome::Backend,
            "lost" => Outcome::Lost,
            "config" => Outcome::Config,
            "cancelled" => Outcome::Cancelled,
            other => Outcome::Other(other.trim_start_matches("other:").to_owned()),
        }
    }
}

/// A body that ran under a hold: from its first line to its end (or its drop).
#[derive(Debug, Clone)]
pub struct Hold {
    pub id: u64,
    pub proc: u32,
    pub class: Class,
    pub keys: Vec<String>,
    pub fence: Option<u64>,
    /// When the acquisition was asked for: the store's lease began no earlier.
    pub asked: u64,
    /// Renewed while it runs (`run`, the attribute, `auto_renew`); else valid for its
    /// ttl from `asked` (or from its last extension).
    pub renewed: bool,
    pub ttl_ms: u64,
    /// Restored from a hand-off (same lease as the hold that handed it off).
    pub restored: bool,
    pub enter: u64,
    pub exit: Option<u64>,
    /// The last successful extension's send time.
    pub extended: Option<u64>,
}

/// One call of the schedule.
#[derive(Debug, Clone)]
pub struct Call {
    pub id: u64,
    pub proc: u32,
    pub class: Class,
    pub keys: Vec<String>,
    /// `wait`, `try`, or `other`.
    pub mode: String,
    pub start: u64,
    pub end: u64,
    pub outcome: Outcome,
    pub timeout_ms: u64,
    pub ttl_ms: u64,
    pub what: String,
}

/// A fault window: `[start, end]`; `lossy` faults may forget leases (a restart without
/// persistence, a failover).
#[derive(Debug, Clone)]
pub struct Fault {
    pub what: String,
    /// `store`, `proc:N` (a worker process) or `locker:N` (one locker's network).
    pub scope: String,
    pub start: u64,
    pub end: u64,
    pub lossy: bool,
}

/// Everything one run recorded, every process together.
#[derive(Debug, Default)]
pub struct History {
    pub holds: Vec<Hold>,
    pub calls: Vec<Call>,
    pub faults: Vec<Fault>,
    /// Calls that began and never ended: their process was killed mid-call, perhaps
    /// after its lease or a waiting writer's intent landed.
    pub unended: Vec<Call>,
}

enum Sink {
    Memory(Vec<String>),
    File(std::fs::File),
}

/// Where a process writes its lines; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    pub proc: u32,
    sink: Arc<Mutex<Sink>>,
    next: Arc<AtomicU64>,
}

impl Recorder {
    pub fn in_memory(proc: u32) -> Self {
        Self {
            proc,
            sink: Arc::new(Mutex::new(Sink::Memory(Vec::new()))),
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    pub fn to_file(proc: u32, path: &std::path::Path) -> Self {
        let file = std::fs::File::create(path).expect("history file");
        Self {
            proc,
            sink: Arc::new(Mutex::new(Sink::File(file))),
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A run-unique id (the process in the high bits).
    pub fn id(&self) -> u64 {
        (u64::from(self.proc) << 40) | self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn line(&self, line: String) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *sink {
            Sink::Memory(lines) => lines.push(line),
            // One write per line, unbuffered: a killed worker loses nothing it did.
            Sink::File(f) => {
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
    }

    /// The lines so far (in-memory recorders).
    pub fn lines(&self) -> Vec<String> {
        match &*self.sink.lock().unwrap_or_else(|p| p.into_inner()) {
            Sink::Memory(lines) => lines.clone(),
            Sink::File(_) => Vec::new(),
        }
    }

    /// A body starts; the returned value records its end when dropped (a body dropped
    /// by loss or cancellation ends there too).
    #[allow(clippy::too_many_arguments)]
    pub fn enter(
        &self,
        id: u64,
        class: Class,
        keys: &[String],
        fence: Option<u64>,
        asked: u64,
        renewed: bool,
        ttl_ms: u64,
        restored: bool,
    ) -> Inside {
        let fence = fence.map(|f| f.to_string()).unwrap_or_default();
        self.line(format!(
            "E\t{id}\t{}\t{}\t{}\t{fence}\t{asked}\t{}\t{ttl_ms}\t{}\t{}",
            self.proc,
            class.tag(),
            keys.join(","),
            u8::from(renewed),
            u8::from(restored),
            now()
        ));
        Inside {
            rec: self.clone(),
            id,
        }
    }

    /// A guard's extension succeeded; it was sent at `sent`.
    pub fn extended(&self, id: u64, sent: u64) {
        self.line(format!("V\t{id}\t{sent}"));
    }

    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        id: u64,
        class: Class,
        keys: &[String],
        mode: &str,
        start: u64,
        outcome: &Outcome,
        timeout_ms: u64,
        ttl_ms: u64,
        what: &str,
    ) {
        self.line(format!(
            "C\t{id}\t{}\t{}\t{}\t{mode}\t{start}\t{}\t{}\t{timeout_ms}\t{ttl_ms}\t{what}",
            self.proc,
            class.tag(),
            keys.join(","),
            now(),
            outcome.tag()
        ));
    }

    /// A hold call begins (so that a call its process dies in is still seen).
    pub fn began(&self, id: u64, class: Class, keys: &[String], start: u64, ttl_ms: u64) {
        self.line(format!(
            "B\t{id}\t{}\t{}\t{}\t{start}\t{ttl_ms}",
            self.proc,
            class.tag(),
            keys.join(",")
        ));
    }

    pub fn fault(&self, what: &str, scope: &str, start: u64, end: u64, lossy: bool) {
        self.line(format!(
            "F\t{what}\t{scope}\t{start}\t{end}\t{}",
            u8::from(lossy)
        ));
    }
}

/// Watches this process's scheduling: a thread that sleeps 20 ms at a time and records
/// every overshoot past 150 ms as a `host-stall` of this process. A stalled process is a
/// paused one (its holders cannot stop in time, only fencing protects from that), and a
/// busy 2-core host does stall now and then. Stops when dropped.
pub fn watch_stalls(rec: &Recorder) -> StallWatch {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (rec, flag) = (rec.clone(), stop.clone());
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let t0 = now();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let t1 = now();
            if t1 - t0 > 170_000_000 {
                rec.fault("host-stall", &format!("proc:{}", rec.proc), t0, t1, false);
            }
        }
    });
    StallWatch(stop)
}

pub struct StallWatch(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A body in progress; its drop is the body's end.
pub struct Inside {
    rec: Recorder,
    id: u64,
}

impl Drop for Inside {
    fn drop(&mut self) {
        self.rec.line(format!("X\t{}\t{}", self.id, now()));
    }
}

fn keys(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

impl History {
    /// Reads lines of every process into one history.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut h = History::default();
        let mut exits = std::collections::HashMap::new();
        let mut extends: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for line in lines {
            let f: Vec<&str> = line.split('\t').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match f.first().copied() {
                Some("E") if f.len() >= 11 => h.holds.push(Hold {
                    id: n(1),
                    proc: n(2) as u32,
                    class: Class::parse(f[3]),
                    keys: keys(f[4]),
                    fence: f[5].parse().ok(),
                    asked: n(6),
                    renewed: f[7] == "1",
                    ttl_ms: n(8),
                    restored: f[9] == "1",
                    enter: n(10),
                    exit: None,
                    extended: None,
                }),
                Some("X") if f.len() >= 3 => {
                    exits.insert(n(1), n(2));
                }
                Some("V") if f.len() >= 3 => {
                    let e = extends.entry(n(1)).or_default();
                    *e = (*e).max(n(2));
                }
                Some("C") if f.len() >= 12 => h.calls.push(Call {
                    id: n(1),
                    proc: n(2) as u32,
                    class: Class::parse(f[3]),
                    keys: keys(f[4]),
                    mode: f[5].to_owned(),
                    start: n(6),
                    end: n(7),
                    outcome: Outcome::parse(f[8]),
                    timeout_ms: n(9),
                    ttl_ms: n(10),
                    what: f[11..].join(" "),
                }),
                Some("B") if f.len() >= 7 => h.unended.push(Call {
                    id: n(1),
                    proc: n(2) as u32,
                    class: Class::parse(f[3]),
                    keys: keys(f[4]),
                    mode: "wait".to_owned(),
                    start: n(5),
                    end: n(5),
                    outcome: Outcome::Cancelled,
                    timeout_ms: 0,
                    ttl_ms: n(6),
                    what: "a call its process died in".to_owned(),
                }),
                Some("F") if f.len() >= 6 => h.faults.push(Fault {
                    what: f[1].to_owned(),
                    scope: f[2].to_owned(),
                    start: n(3),
                    end: n(4),
                    lossy: f[5] == "1",
                }),
                _ => {}
            }
        }
        let ended: std::collections::HashSet<u64> = h.calls.iter().map(|c| c.id).collect();
        h.unended.retain(|c| !ended.contains(&c.id));
        for hold in &mut h.holds {
            hold.exit = exits.get(&hold.id).copied();
            hold.extended = extends.get(&hold.id).copied();
        }
        h
    }
}
