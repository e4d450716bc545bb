//! `SCAN` for lock keys: one step's command, and its reply's keys without the companions.

use redis::Value;

use crate::error::BoxError;

/// One `SCAN` step: `SCAN cursor MATCH pattern COUNT 500`.
pub(crate) fn scan_cmd(cursor: u64, pattern: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(500);
    cmd
}

/// Takes one `SCAN` reply's keys into `keys` (fence counters, waiting writers and
/// waiters' marks left out); the next cursor,
/// `None` when the scan is complete.
pub(crate) fn scan_reply(reply: Value, keys: &mut Vec<String>) -> Result<Option<u64>, BoxError> {
    let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
    keys.extend(batch.into_iter().filter(|k| {
        ![":fence", ":writers", ":waiters"]
            .iter()
            .any(|companion| k.ends_with(companion))
    }));
    Ok((next != 0).then_some(next))
}
