//! `WAIT` for a write's replicas.

use crate::store::Replicas;
use crate::time::duration_ms;

/// `WAIT count ms`.
pub(crate) fn wait_cmd(r: Replicas) -> redis::Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(r.count).arg(duration_ms(r.within).max(1));
    cmd
}
