use locked::{locked, LockError};

#[derive(Debug)]
struct AppError(LockError);
impl From<LockError> for AppError { fn from(e: LockError) -> Self { AppError(e) } }

#[locked(key = "order:{id}", ttl = "30s", timeout = "1s")]
async fn process(id: u64) -> Result<u64, AppError> {
    Ok(id * 2)
}

struct Svc { id: u32 }
impl Svc {
    #[locked(key = "svc:{self.id}", try_lock, fallback = Self::busy)]
    async fn work(&self, n: u32) -> u32 { n + self.id }
    async fn busy(&self, _n: u32) -> u32 { 0 }
}

#[tokio::test]
async fn smoke() {
    assert_eq!(process(21).await.unwrap(), 42);
    assert_eq!(Svc { id: 1 }.work(2).await, 3);
    let h = tokio::spawn(process(1));
    assert_eq!(h.await.unwrap().unwrap(), 2);
}
