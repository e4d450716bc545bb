// A fallback must return the same type as the annotated fn: the error is on its path.
use locked::locked;

async fn busy(_n: u32) -> String {
    String::new()
}

#[locked(key = "job:{n}", try_lock, fallback = busy)]
async fn job(n: u32) -> u32 {
    n
}

fn main() {}
