//! What an acquisition leaves in order when it is dropped: a waiting writer's intent
//! withdrawn, a request still out released, the waiting gauge and a release channel let go.

use std::sync::Arc;

use crate::core::Core;
use crate::meter;
use crate::store::{OwnedLease, Store};

/// A waiting writer's intent: withdrawn in the background when dropped, unless the
/// writer got the lock (its acquisition removed the intent already).
pub(super) struct Intent<'a> {
    pub(super) core: &'a Arc<Core>,
    /// The writer's lease, whose intent to withdraw; `None` once fulfilled.
    pub(super) withdraw: Option<OwnedLease>,
}

impl Intent<'_> {
    /// The writer got the lock: nothing to withdraw.
    pub(super) fn fulfilled(intent: Option<Self>) {
        if let Some(mut intent) = intent {
            intent.withdraw = None;
        }
    }
}

impl Drop for Intent<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.withdraw.take() {
            self.core.release_in_background(None, held);
        }
    }
}

/// An acquisition request on its way: if it is dropped before its answer came back, the
/// lock it may have set is released in the background (on the same connection, after the
/// request). Completed requests `forget` it.
pub(super) struct InFlight<'a> {
    pub(super) core: &'a Arc<Core>,
    pub(super) held: &'a OwnedLease,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.core.release_in_background(None, self.held.clone());
    }
}

/// A caller counted in the `locked_waiting` gauge while it waits.
pub(super) struct Waiting(&'static str);

impl Waiting {
    pub(super) fn new(label: &'static str) -> Self {
        meter::waiting(label, true);
        Self(label)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        meter::waiting(self.0, false);
    }
}

/// A key's release channel listened to while this waiter waits.
pub(super) struct Watching<'a> {
    pub(super) core: &'a Core,
    pub(super) key: &'a str,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.core.store.unwatch(self.key);
    }
}
