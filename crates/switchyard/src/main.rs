// mimalloc instead of glibc's malloc: the router allocates and frees small objects on several
// threads at once (tokio's workers, the journal writer, librdkafka), where glibc's arenas
// contended for a lock (~6 % of the runtime's time in `__lll_lock_wait_private`, a quarter in
// malloc/free) and kept freed memory as RSS. Measured in docs/benchmarks.md (kafka_ingest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
