//! The model: what a history must satisfy. Holds never exceed what their kind admits at
//! any instant, fences rise with real time, calls end within their bounds, and every
//! error is the one the situation calls for.
//!
//! A hold counts from its body's entry until its exit, cut short where the promise ends
//! earlier: an unrenewed guard's lease lapses after 90% of its ttl (Redlock keeps 1% +
//! 2 ms for drift), a `force_release` of its key takes it away, a fault that forgets
//! leases (a restart without persistence, a failover) or that stops its process (a
//! paused or killed worker: only fencing protects from those) ends it. Network cuts and
//! server pauses end nothing: a holder behind a cut must stop on its own in time.

use std::collections::BTreeMap;

use crate::history::{Call, Class, Fault, History, Hold, Outcome};

const MS: u64 = 1_000_000;
/// How long after a fault ends the store may still be recovering (reconnects, a
/// failover's promotion, a worker's leases lapsing).
const RECOVERY: u64 = 3_000 * MS;
/// The documented slack on a call's bound: the last try's round trip, and a busy host.
const SLACK: u64 = 1_500 * MS;
/// A call's bound when no wait deadline bounds it (the runtime's `CALL_LIMIT`).
const CALL_LIMIT: u64 = 5_000 * MS;

pub struct Model {
    pub permits: u32,
    /// Concurrent attempts on a key may stand in each other's way although no one holds
    /// it: Redlock's attempts can split the masters' votes, and PostgreSQL serialises
    /// them on the key's advisory lock, so a burst queues in the database on a busy host.
    /// Such attempts count as holding the key for the liveness checks, and a call they
    /// kept waiting past its deadline may end `Backend` ("did not answer").
    pub contention: bool,
    /// When the run ended (open holds of killed workers end here at the latest).
    pub end: u64,
}

/// A hold's span as the model counts it: `[enter, end)`.
struct Span<'a> {
    hold: &'a Hold,
    end: u64,
}

fn overlaps(a0: u64, a1: u64, b0: u64, b1: u64) -> bool {
    a0 < b1 && b0 < a1
}

fn shares_key(a: &[String], b: &[String]) -> bool {
    a.iter().any(|k| b.contains(k))
}

impl Model {
    pub fn check(&self, h: &History) -> Vec<String> {
        let mut found = Vec::new();
        let spans: Vec<Span> = h.holds.iter().map(|hold| self.span(hold, h)).collect();
        self.capacity(&spans, h, &mut found);
        fences(&h.holds, &mut found);
        for call in &h.calls {
            self.bounded(call, h, &mut found);
            self.right_error(call, h, &spans, &mut found);
        }
        found
    }

    /// Where the promise of `hold` ends.
    fn span<'a>(&self, hold: &'a Hold, h: &History) -> Span<'a> {
        let dies = |f: &Fault| {
            f.lossy || f.scope == format!("proc:{}", hold.proc) && f.what != "worker-resume"
        };
        let mut end = hold.exit.unwrap_or(self.end);
        if !hold.renewed {
            let base = hold.extended.unwrap_or(hold.asked).max(hold.asked);
            end = end.min(base + hold.ttl_ms * MS * 9 / 10);
        }
        for f in &h.faults {
            if dies(f) && overlaps(f.start, f.end.max(f.start + 1), hold.enter, end) {
                end = end.min(f.start.max(hold.enter));
            }
            if dies(f) && f.start <= hold.enter && hold.enter < f.end {
                end = hold.enter;
            }
        }
        for c in &h.calls {
            if c.what == "force_release"
                && shares_key(&c.keys, &hold.keys)
                && overlaps(c.start, c.end, hold.asked, end)
            {
                end = end.min(c.start.max(hold.enter));
            }
        }
        Span {
            hold,
            end: end.max(hold.enter),
        }
    }

    /// Never more inside than the kind admits.
    fn capacity(&self, spans: &[Span], h: &History, found: &mut Vec<String>) {
        let mut per_key: BTreeMap<&str, Vec<(u64, i8, &Span)>> = BTreeMap::new();
        for s in spans {
            if s.end <= s.hold.enter {
                continue;
            }
            for k in &s.hold.keys {
                let v = per_key.entry(k.as_str()).or_default();
                v.push((s.hold.enter, 1, s));
                v.push((s.end, -1, s));
            }
        }
        for (key, mut events) in per_key {
            // Exits before entries at the same instant.
            events.sort_by_key(|(t, d, _)| (*t, *d));
            let (mut readers, mut writers, mut others) = (0i64, 0i64, 0i64);
            let mut inside: Vec<&Span> = Vec::new();
            for (t, d, s) in events {
                let n = i64::from(d);
                match s.hold.class {
                    Class::Read => readers += n,
                    Class::Write => writers += n,
                    _ => others += n,
                }
                if d > 0 {
                    inside.push(s);
                } else {
                    inside.retain(|o| o.hold.id != s.hold.id);
                }
                let limit = if key.starts_with('S') || key.ends_with(":S") {
                    i64::from(self.permits)
                } else {
                    1
                };
                let bad = others > limit || writers > 1 || (writers > 0 && readers > 0);
                if bad && d > 0 {
                    let who: Vec<String> = inside
                        .iter()
                        .map(|o| {
                            format!(
                                "{:?} of proc {} (hold {}, {} .. {} ms, renewed {})",
                                o.hold.class,
                                o.hold.proc,
                                o.hold.id,
                                o.hold.enter / MS,
                                o.end / MS,
                                o.hold.renewed
                            )
                        })
                        .collect();
                    let around = Call {
                        id: 0,
                        proc: 0,
                        class: Class::None,
                        keys: vec![key.to_owned()],
                        mode: String::new(),
                        start: t.saturating_sub(2_000 * MS),
                        end: t,
                        outcome: Outcome::Ok,
                        timeout_ms: 0,
                        ttl_ms: 0,
                        what: String::new(),
                    };
                    found.push(format!(
                        "exclusion: `{key}` had {} inside at {} ms: {}\n{}",
                        inside.len(),
                        t / MS,
                        who.join("; "),
                        context(&around, h)
                    ));
                    return;
                }
            }
        }
    }

    /// Every call ends within its bound.
    fn bounded(&self, call: &Call, h: &History, found: &mut Vec<String>) {
        if call.outcome == Outcome::Cancelled {
            return;
        }
        let faulty = h.faults.iter().any(|f| near(f, call.start, call.end));
        let acquired_at = h
            .holds
            .iter()
            .find(|hold| hold.id == call.id && call.id != 0)
            .map(|hold| hold.enter);
        let took = acquired_at.unwrap_or(call.end).saturating_sub(call.start);
        let bound = match call.mode.as_str() {
            "wait" => call.timeout_ms * MS + SLACK + if faulty { CALL_LIMIT } else { 0 },
            _ => CALL_LIMIT + SLACK,
        };
        // A worker paused or killed mid-call is not the library's delay.
        let paused = h
            .faults
            .iter()
            .any(|f| f.scope == format!("proc:{}", call.proc) && near(f, call.start, call.end));
        if took > bound && !paused {
            found.push(format!(
                "bound: `{}` ({}) took {} ms to acquire or fail, bound {} ms",
                call.what,
                call.keys.join(","),
                took / MS,
                bound / MS
            ));
        }
    }

    fn right_error(&self, call: &Call, h: &History, spans: &[Span], found: &mut Vec<String>) {
        let faulty = h.faults.iter().any(|f| near(f, call.start, call.end));
        let forced = h.calls.iter().any(|c| {
            c.what == "force_release"
                && shares_key(&c.keys, &call.keys)
                && overlaps(c.start, c.end + 10 * MS, call.start, call.end)
        });
        let say = |what: &str| {
            format!(
                "error: `{}` on {} ({} .. {} ms) {what}",
                call.what,
                call.keys.join(","),
                call.start / MS,
                call.end / MS
            )
        };
        match &call.outcome {
            Outcome::Other(m) => found.push(say(&format!("ended with an unexpected error: {m}"))),
            Outcome::Config if call.mode != "misuse" => {
                found.push(say("ended with Config without misuse"))
            }
            o if call.mode == "misuse" && *o != Outcome::Config => {
                found.push(say(&format!("was misuse and ended with {o:?}, not Config")))
            }
            Outcome::Backend if !faulty => {
                let queued = self.contention
                    && call.what.contains("did not answer")
                    && self.blocked(call, h, spans) >= 0.5;
                if !queued {
                    found.push(say("ended with Backend with no fault"))
                }
            }
            Outcome::Lost if !faulty && !forced => {
                found.push(say("ended with Lost with no fault and no force_release"))
            }
            Outcome::Timeout if !faulty => {
                let held = self.blocked(call, h, spans);
                if std::env::var_os("LOCKED_MODEL_VERBOSE").is_some() {
                    println!("timeout {:?} {} held {held:.2}", call.class, call.what);
                }
                if held < 0.5 {
                    found.push(say(&format!(
                        "timed out while the key was held for {:.0}% of its wait\n{}",
                        held * 100.0,
                        context(call, h)
                    )));
                }
            }
            Outcome::Busy if !faulty && self.blocked(call, h, spans) == 0.0 => {
                found.push(say("was refused as busy while no one held or took the key"))
            }
            _ => {}
        }
    }

    /// The share of `call`'s window in which something it cannot share with held (or
    /// may have held) one of its keys.
    fn blocked(&self, call: &Call, h: &History, spans: &[Span]) -> f64 {
        let (w0, w1) = (call.start, call.end.max(call.start + 1));
        let mut intervals: Vec<(u64, u64, Class)> = Vec::new();
        let conflicts = |other: Class| match (call.class, other) {
            (Class::Read, Class::Read) => false,
            (Class::Permit, Class::Permit) => true,
            _ => true,
        };
        for s in spans {
            let hold = s.hold;
            if hold.id == call.id || !shares_key(&hold.keys, &call.keys) || !conflicts(hold.class) {
                continue;
            }
            // The lease lives from its grant until its release landed (a little after the
            // body's end), or until its ttl when its process died.
            let killed = h
                .faults
                .iter()
                .any(|f| f.scope == format!("proc:{}", hold.proc));
            let end = match hold.exit {
                Some(x) if !killed => x + 300 * MS,
                _ => hold.exit.unwrap_or(self.end).max(hold.enter) + hold.ttl_ms * MS,
            };
            intervals.push((hold.enter.saturating_sub(50 * MS), end, hold.class));
        }
        for c in &h.calls {
            if c.id == call.id || !shares_key(&c.keys, &call.keys) || !conflicts(c.class) {
                continue;
            }
            let maybe_held = c.outcome == Outcome::Cancelled;
            let writer_waits =
                call.class == Class::Read && c.class == Class::Write && c.mode == "wait";
            let contends = self.contention && c.class != Class::None;
            if maybe_held || writer_waits || contends {
                // A hand-off cancelled between the handing and the restoring leaves the
                // lease to lapse with its ttl, as a crashed holder's would: by design.
                let lingers = if maybe_held && c.what.starts_with("Handoff") {
                    c.ttl_ms * MS
                } else {
                    300 * MS
                };
                intervals.push((c.start, c.end + lingers, c.class));
            }
        }
        // A call whose process was killed mid-call may have left its lease, or a waiting
        // writer's intent, to lapse with its ttl from the kill.
        for c in &h.unended {
            if !shares_key(&c.keys, &call.keys) || !conflicts(c.class) {
                continue;
            }
            let killed_at = h
                .faults
                .iter()
                .filter(|f| f.scope == format!("proc:{}", c.proc) && f.start >= c.start)
                .map(|f| f.start)
                .min();
            if let Some(at) = killed_at {
                intervals.push((c.start, at + c.ttl_ms.max(150) * MS + 300 * MS, c.class));
            }
        }
        // Sweep: blocked while the count of conflicting intervals reaches the limit.
        let need = if call.class == Class::Permit {
            self.permits as i64
        } else {
            1
        };
        let mut events: Vec<(u64, i64)> = Vec::new();
        for (a, b, _) in intervals {
            let (a, b) = (a.max(w0), b.min(w1));
            if a < b {
                events.push((a, 1));
                events.push((b, -1));
            }
        }
        events.sort();
        let (mut n, mut last, mut covered) = (0i64, w0, 0u64);
        for (t, d) in events {
            if n >= need {
                covered += t - last;
            }
            n += d;
            last = t;
        }
        if n >= need {
            covered += w1 - last;
        }
        // Permits: a count of maybe-held intervals under-counts holders that took several
        // tries; any conflicting interval counts half.
        covered as f64 / (w1 - w0) as f64
    }
}

/// Whether fault `f` (with its recovery) touches `[a, b]`.
fn near(f: &Fault, a: u64, b: u64) -> bool {
    overlaps(f.start, f.end + RECOVERY, a, b)
}

/// Fences rise with real time: a hold asked for after another had entered got a greater
/// fence, and no two holds share one.
fn fences(holds: &[Hold], found: &mut Vec<String>) {
    let fenced: Vec<&Hold> = holds
        .iter()
        .filter(|h| h.fence.is_some() && !h.restored)
        .collect();
    for a in &fenced {
        for b in &fenced {
            if a.id == b.id || a.keys != b.keys {
                continue;
            }
            let (fa, fb) = (a.fence.unwrap_or(0), b.fence.unwrap_or(0));
            if fa == fb {
                found.push(format!(
                    "fence: holds {} and {} of `{}` share fence {fa}",
                    a.id,
                    b.id,
                    a.keys.join(",")
                ));
                return;
            }
            if fa < fb && a.asked > b.enter {
                found.push(format!(
                    "fence: hold {} of `{}` asked at {} ms, after hold {} entered at {} ms with \
                     fence {fb}, yet got the smaller fence {fa}",
                    a.id,
                    a.keys.join(","),
                    a.asked / MS,
                    b.id,
                    b.enter / MS
                ));
                return;
            }
        }
    }
}

/// What happened on `call`'s keys around it: for a finding's report.
fn context(call: &Call, h: &History) -> String {
    let (a, b) = (call.start.saturating_sub(4_000 * MS), call.end + 500 * MS);
    let mut lines = Vec::new();
    for hold in &h.holds {
        let exit = hold.exit.unwrap_or(u64::MAX);
        if shares_key(&hold.keys, &call.keys) && overlaps(hold.asked, exit, a, b) {
            lines.push((
                hold.asked,
                format!(
                    "  hold {} proc {} {:?} {:?} asked {} entered {} exit {:?} ttl {} renewed {} fence {:?}",
                    hold.id,
                    hold.proc,
                    hold.class,
                    hold.keys,
                    hold.asked / MS,
                    hold.enter / MS,
                    hold.exit.map(|x| x / MS),
                    hold.ttl_ms,
                    hold.renewed,
                    hold.fence
                ),
            ));
        }
    }
    for c in &h.calls {
        if shares_key(&c.keys, &call.keys) && overlaps(c.start, c.end, a, b) {
            lines.push((
                c.start,
                format!(
                    "  call {} proc {} {} {} .. {} {:?} ({})",
                    c.id,
                    c.proc,
                    c.mode,
                    c.start / MS,
                    c.end / MS,
                    c.outcome,
                    c.what
                ),
            ));
        }
    }
    for f in &h.faults {
        lines.push((
            f.start,
            format!(
                "  fault {} {} {} .. {}",
                f.what,
                f.scope,
                f.start / MS,
                f.end / MS
            ),
        ));
    }
    lines.sort();
    lines
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}
