//! The registry of the Lua scripts under `scripts/`, each hashed once per process.

use std::sync::LazyLock;

use redis::Script;

/// The scripts, hashed once per process.
pub(super) struct Scripts {
    pub(super) batch: Script,
    pub(super) release: Script,
    pub(super) release_one: Script,
    pub(super) extend: Script,
    pub(super) remaining: Script,
    pub(super) acquire: Script,
    pub(super) seed_fence: Script,
    pub(super) shared: Script,
    pub(super) live: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    batch: Script::new(include_str!("scripts/batch.lua")),
    release: Script::new(include_str!("scripts/release.lua")),
    release_one: Script::new(include_str!("scripts/release_one.lua")),
    extend: Script::new(include_str!("scripts/extend.lua")),
    remaining: Script::new(include_str!("scripts/remaining.lua")),
    acquire: Script::new(include_str!("scripts/acquire.lua")),
    seed_fence: Script::new(include_str!("scripts/seed_fence.lua")),
    shared: Script::new(include_str!("scripts/shared.lua")),
    live: Script::new(include_str!("scripts/live.lua")),
});
