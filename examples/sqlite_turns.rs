//! Two processes on one SQLite file, taking turns: no server to run.
//!
//! `cargo run --example sqlite_turns --features sqlite`
//!
//! The example starts a second copy of itself; each process takes the lock `report` five
//! times, holds it for a while, and appends its turns to a shared log file. The turns
//! never overlap: each entry ends before the next one starts. The lock file is
//! `locks.db` in a temporary directory (or `LOCK_SQLITE_PATH`).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use locked::{LockOptions, Locker};

const TURNS: u32 = 5;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (name, dir) = match (args.next(), args.next()) {
        (Some(name), Some(dir)) => (name, std::path::PathBuf::from(dir)),
        _ => {
            // The first process: a directory for the files, and a second process.
            let dir = std::env::temp_dir().join(format!("locked-turns-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let other = std::process::Command::new(std::env::current_exe()?)
                .arg("B")
                .arg(&dir)
                .spawn()?;
            let done = turns("A", &dir).await;
            let other = tokio::task::spawn_blocking(move || {
                let mut other = other;
                other.wait()
            })
            .await??;
            done?;
            println!("\nthe shared log, in the order the turns were taken:");
            let log = std::fs::read_to_string(dir.join("turns.log"))?;
            print!("{log}");
            std::fs::remove_dir_all(&dir)?;
            check(&log)?;
            return if other.success() {
                Ok(())
            } else {
                Err("process B failed".into())
            };
        }
    };
    turns(&name, &dir).await
}

/// Every turn of both processes is in the log, and none overlaps the one before it.
fn check(log: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut turns: Vec<(u128, u128)> = log
        .lines()
        .filter_map(|line| {
            let (start, end) = line
                .split_once(", ")?
                .1
                .trim_end_matches(" ms")
                .split_once(" .. ")?;
            Some((start.parse().ok()?, end.parse().ok()?))
        })
        .collect();
    turns.sort_unstable();
    if turns.len() != 2 * TURNS as usize {
        return Err(format!("{} turns in the log, expected {}", turns.len(), 2 * TURNS).into());
    }
    if let Some(w) = turns.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(format!("two turns overlap: {:?} and {:?}", w[0], w[1]).into());
    }
    println!("{} turns, none overlapping", turns.len());
    Ok(())
}

/// Five turns of process `name` under the lock `report`.
async fn turns(name: &str, dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("LOCK_SQLITE_PATH")
        .unwrap_or_else(|_| dir.join("locks.db").display().to_string());
    let locker = Locker::sqlite(&path)?;
    let opts = LockOptions::default()
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        // Waiters in another process poll: every 20 ms here.
        .retry_interval(Duration::from_millis(20));
    for turn in 1..=TURNS {
        let log = dir.join("turns.log");
        locker
            .run("report", opts, || async move {
                let start = now_ms();
                tokio::time::sleep(Duration::from_millis(150)).await; // the work
                let line = format!("process {name}: turn {turn}, {start} .. {} ms\n", now_ms());
                print!("{line}");
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?;
                file.write_all(line.as_bytes())
            })
            .await??;
        // Let the other process in before asking again.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}
