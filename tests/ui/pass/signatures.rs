// Every kind of signature `#[locked]` goes on, compiled and run on the memory store.
use std::sync::Arc;

use locked::{LockError, locked};

struct Repo {
    id: u32,
    hits: u32,
}

impl Repo {
    #[locked(key = "repo:{self.id}")]
    async fn by_ref(&self, n: u32) -> Result<u32, LockError> {
        Ok(self.id + n)
    }

    #[locked(key = "repo:{self.id}:mut")]
    async fn by_mut(&mut self) -> Result<u32, LockError> {
        self.hits += 1;
        Ok(self.hits)
    }

    #[locked(key = "repo:{self.id}:arc")]
    async fn by_arc(self: Arc<Self>) -> Result<u32, LockError> {
        Ok(self.id)
    }
}

trait Store {
    async fn save(&self, key: &str) -> Result<(), LockError>;
}

impl Store for Repo {
    #[locked(key = "save:{key}")]
    async fn save(&self, key: &str) -> Result<(), LockError> {
        Ok(())
    }
}

#[locked(key = "generic:{a}:{b}")]
async fn generic<A: std::fmt::Display + Send, B>(a: A, b: impl std::fmt::Display + Send) -> Result<String, LockError>
where
    B: Default,
{
    let _ = B::default();
    Ok(format!("{a}{b}"))
}

#[locked(key = "pair:{a}:{b}")]
async fn destructured((a, b): (u32, u32)) -> Result<u32, LockError> {
    Ok(a + b)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    locked::init(locked::Locker::memory()).unwrap();
    let mut repo = Repo { id: 1, hits: 0 };
    assert_eq!(repo.by_ref(1).await.unwrap(), 2);
    assert_eq!(repo.by_mut().await.unwrap(), 1);
    repo.save("x").await.unwrap();
    assert_eq!(Arc::new(repo).by_arc().await.unwrap(), 1);
    assert_eq!(generic::<_, u8>(1, "b").await.unwrap(), "1b");
    assert_eq!(destructured((1, 2)).await.unwrap(), 3);
}
