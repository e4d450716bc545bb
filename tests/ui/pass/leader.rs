// `leader` on free fns and methods, with options, a `?` body and a fallback; the body
// borrows the arguments, since each term runs it anew.
use locked::{locked, LockError, Locker};

struct Scheduler {
    name: String,
    locker: Locker,
}

impl Scheduler {
    #[locked(key = "scheduler:{self.name}", leader, ttl = "10s", max_hold = "1h", locker = self.locker)]
    async fn run(&self, jobs: &[u32]) -> Result<u32, LockError> {
        let _fence = locked::fencing_token();
        Ok(jobs.iter().sum())
    }
}

#[locked(key = "relay", leader, timeout = "1s", fallback = relay_elsewhere)]
async fn relay(batch: u32) -> u32 {
    batch + 1
}

async fn relay_elsewhere(_batch: u32) -> u32 {
    0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let s = Scheduler { name: "eu".into(), locker: Locker::memory() };
    assert_eq!(s.run(&[1, 2, 3]).await.unwrap(), 6);
    locked::init(Locker::memory()).unwrap();
    assert_eq!(relay(1).await, 2);
}
