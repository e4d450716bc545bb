//! Quickstart on the embedded memory store: no Redis, no setup, exits by itself.
//!
//! `cargo run --example quickstart`
//!
//! Shows: concurrent calls serialised by `#[locked]`, try mode with a fallback, and the
//! timeout error. Swap `Locker::memory()` for `Locker::redis("redis://127.0.0.1/")` (or
//! set `REDIS_URL` and drop the `init` call) to lock across processes and machines.

use std::time::{Duration, Instant};

use locked::{LockError, Locker, locked};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

/// Only one call per order runs at a time; the others wait (up to 5 s).
#[locked(key = "order:{order_id}", ttl = "30s", timeout = "5s")]
async fn process_order(order_id: u64, worker: u32, started: Instant) -> Result<String, AppError> {
    let at = started.elapsed().as_millis();
    tokio::time::sleep(Duration::from_millis(100)).await; // pay, update stock, notify
    Ok(format!(
        "worker {worker} processed order {order_id} (entered at {at} ms)"
    ))
}

/// A cron job: if another instance is already running it, skip instead of waiting.
#[locked(key = "cron:daily-report", ttl = "10m", try_lock, fallback = report_in_progress)]
async fn daily_report(instance: u32) -> String {
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("instance {instance}: report generated")
}

async fn report_in_progress(instance: u32) -> String {
    format!("instance {instance}: report generation already in progress, skipped")
}

/// Waits at most 100 ms for the lock.
#[locked(key = "inventory:{product_id}", ttl = "5s", timeout = "100ms")]
async fn deduct_stock(product_id: u32) -> Result<(), AppError> {
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    locked::init(Locker::memory())?;

    println!("1. three workers, one order: the calls run one after another");
    let started = Instant::now();
    let workers: Vec<_> = (1..=3)
        .map(|w| tokio::spawn(process_order(123, w, started)))
        .collect();
    for w in workers {
        println!("   {}", w.await?.map_err(|e| format!("{e:?}"))?);
    }

    println!("2. two instances of a cron job: one runs, the other falls back at once");
    let (a, b) = tokio::join!(daily_report(1), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        daily_report(2).await
    });
    println!("   {a}\n   {b}");

    println!("3. a lock held elsewhere: the call gives up after its timeout");
    let held = locked::global()?
        .acquire("inventory:42", locked::global()?.options())
        .await?;
    match deduct_stock(42).await {
        Err(AppError::Lock(e)) => println!("   error: {e}"),
        Ok(()) => println!("   unexpected: ran while the lock was held"),
    }
    held.release().await?;
    deduct_stock(42).await.map_err(|e| format!("{e:?}"))?;
    println!("   after release: stock deducted");
    Ok(())
}
