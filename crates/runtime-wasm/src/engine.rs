//! The node's one wasmtime engine: pooled instances, copy-on-write memory images, epoch
//! interruption ticked by a background thread, async support, optional compiled-code cache.

use std::{
    path::Path,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};

use crate::{WasmError, host::TABLE_ELEMENTS};

/// Most component instances alive at once on the node (every instance of every wasm
/// function, busy or idle). The pool also holds at most this many linear memories and
/// five times as many core instances, so components that each use two memories, or
/// more than five core instances, fit fewer at once (500 with two memories each).
pub const MAX_INSTANCES: u32 = 1000;
/// Most core instances one component may contain (a Rust component has about five:
/// its module, the WASI adapter and the shims between them).
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 20;
/// Most linear memories one component may define.
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// Largest linear memory, in bytes: 4 GiB, all a 32-bit memory can address. A
/// function's own limit is its `memory_mb`; above 4096 MB it is this.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// How often the epoch advances; a guest's deadline is checked (and a busy guest yields
/// to other tasks) at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Most bytes of a linear memory reset in place, page by page, when its instance ends,
/// rather than given back to the kernel.
///
/// Without it, every ended instance's memory is reset with `madvise`, which on a node
/// with more than one worker thread interrupts every other core to flush its TLB, and
/// the next instance in the slot faults each page back in: in `per-request` mode that
/// was most of a request's cost. With the kernel's `PAGEMAP_SCAN` (Linux 6.7 and later)
/// only the pages the instance wrote are reset, so a small component's reset touches
/// a few pages. A slot once used keeps up to this much resident while it waits for
/// the next instance, as an instance kept warm in `reuse` mode does.
pub(crate) const KEEP_RESIDENT_BYTES: usize = 8 << 20;
/// The same for tables.
pub(crate) const TABLE_KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// The engine for `cache_dir` (compiled code cached there when given).
///
/// The pool reserves address space up front, not memory: [`MAX_INSTANCES`] slots of
/// 4 GiB + 32 MiB guard (about 4 TiB of `PROT_NONE` virtual space, the layout that lets
/// compiled code skip bounds checks), 1 MiB of metadata per core instance, 2 MiB of async
/// stack per instance. Pages become resident only as guests touch them. When an instance
/// ends, the pages it wrote are reset in place (up to [`KEEP_RESIDENT_BYTES`]) and the
/// rest with `madvise`, back to the copy-on-write image.
pub(crate) fn build(cache_dir: Option<&Path>) -> Result<Engine, WasmError> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(MAX_INSTANCES)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_core_instances(MAX_INSTANCES * 5)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .total_memories(MAX_INSTANCES)
        .max_tables_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_tables(MAX_INSTANCES * 5)
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(MAX_INSTANCES)
        .max_memory_size(usize::try_from(MAX_MEMORY_BYTES).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
        // Used where the kernel has it (6.7 and later); elsewhere the first
        // KEEP_RESIDENT_BYTES are reset whole.
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .async_support(true)
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .memory_reservation(MAX_MEMORY_BYTES)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = cache_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| WasmError::Cache(format!("cannot create {}: {e}", dir.display())))?;
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache).map_err(|e| WasmError::Cache(format!("{e:#}")))?;
        config.cache(Some(cache));
    }
    Engine::new(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    // Dropping the sender wakes the thread, which then ends.
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub(crate) fn start(engine: &Engine) -> Result<EpochTicker, WasmError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine: EngineWeak = engine.weak();
        thread::Builder::new()
            .name("nimbus-wasm-epoch".to_owned())
            .spawn(move || tick(&engine, &stopped))
            .map_err(|e| WasmError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker { _stop: stop })
    }
}

fn tick(engine: &EngineWeak, stopped: &mpsc::Receiver<()>) {
    let mut next = Instant::now() + EPOCH_TICK;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match stopped.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.increment_epoch();
        // Keep a steady cadence; after a stall, do not try to catch up.
        next = (next + EPOCH_TICK).max(Instant::now());
    }
}
