//! Leadership: three instances of a service campaign to run one scheduler; one leads at a
//! time, and another takes over when the leader stops, steps down or loses its lease. On
//! the embedded memory store, so the instances are tasks of one process; give each process
//! its own `Locker` on Redis, PostgreSQL or SQLite and they can be processes or machines
//! (a crashed process's lease lapses within its ttl: see `benches/failover.rs`).
//!
//! `cargo run --example scheduler`
//!
//! Shows: `Election::lead_forever` for a singleton job, a stopped leader replaced at once,
//! `Election::resign` for a graceful shutdown, a lost term (an operator took the key) and
//! the campaign that follows, terms numbered by fencing tokens, and `observe`.

use std::ops::ControlFlow;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use locked::{Election, LockError, Locker};

static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

fn at() -> u128 {
    STARTED.elapsed().as_millis()
}

/// One instance: campaigns for `scheduler` for as long as it lives and, while it leads,
/// runs the due jobs every 100 ms.
fn instance(election: Election) -> tokio::task::JoinHandle<Result<(), LockError>> {
    tokio::spawn(async move {
        election
            .lead_forever(|term| async move {
                let name = term.identity().to_owned();
                println!(
                    "{:>5} ms  {name} leads, term {:?}",
                    at(),
                    term.fencing_token()
                );
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    println!("{:>5} ms  {name} runs the due jobs", at());
                }
                #[allow(unreachable_code)]
                ControlFlow::Break(())
            })
            .await
    })
}

/// Waits until someone other than `now` leads, and says who.
async fn next_leader(
    observer: &mut locked::Observer,
    now: Option<&str>,
) -> Result<String, LockError> {
    loop {
        if let Some(leader) = observer.changed().await? {
            let name = leader.identity.unwrap_or_default();
            if Some(name.as_str()) != now {
                println!("{:>5} ms  observed: {name} leads", at());
                return Ok(name);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    LazyLock::force(&STARTED);
    let locker = Locker::memory();
    let opts = locker.options().ttl(Duration::from_millis(600));
    let election = |name: &str| locker.election("scheduler").identity(name).options(opts);
    let (a, b, c) = (
        election("instance-a"),
        election("instance-b"),
        election("instance-c"),
    );
    let mut observer = locker
        .election("scheduler")
        .observe()
        .every(Duration::from_millis(10));

    // Three instances, started together: one leads, two stand by.
    let tasks = [
        instance(a.clone()),
        instance(b.clone()),
        instance(c.clone()),
    ];
    let mut leader = next_leader(&mut observer, None).await?;
    tokio::time::sleep(Duration::from_millis(250)).await;

    // The leader's task stops (dropped, e.g. cancelled): its key is released in the
    // background, and a standby leads at once.
    let which = |name: &str| {
        ["instance-a", "instance-b", "instance-c"]
            .iter()
            .position(|n| *n == name)
    };
    let first = which(&leader).unwrap_or(0);
    tasks[first].abort();
    println!("{:>5} ms  {leader}'s task stops", at());
    leader = next_leader(&mut observer, Some(&leader)).await?;
    tokio::time::sleep(Duration::from_millis(250)).await;

    // A graceful shutdown: the leader resigns, and the last standby leads in milliseconds.
    let resigning = [&a, &b, &c][which(&leader).unwrap_or(1)];
    let resigned = Instant::now();
    resigning.resign().await;
    println!("{:>5} ms  {leader} resigned", at());
    leader = next_leader(&mut observer, Some(&leader)).await?;
    println!(
        "{:>5} ms  ... {} ms after the resign",
        at(),
        resigned.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_millis(250)).await;

    // An operator takes the key away: the leader finds its term lost at its next renewal
    // (within a third of the ttl), stops, and campaigns again; the new term's number is
    // greater, so storage that checks it refuses the old term's late writes.
    locker.force_release("scheduler").await?;
    println!("{:>5} ms  an operator force-released the key", at());
    loop {
        if let Some(now) = observer.changed().await? {
            println!(
                "{:>5} ms  observed: {:?} leads, term {:?}",
                at(),
                now.identity,
                now.term
            );
            if now.identity.as_deref() == Some(leader.as_str()) && now.term.is_some() {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}
