/// jemalloc instead of the system allocator: glibc's `malloc` under load spent about a quarter
/// of the router's time, much of it waiting on its arenas' lock (`docs/benchmarks.md`, Kafka
/// ingest: ~65k → ~80k events/s journaled).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the environment overrides
/// them): two arenas instead of four per core keep an idle router under 20 MB (19.6 MB; 20.2
/// with the default, 18.8 with glibc) at no cost in throughput measured on two cores.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 10] = b"narenas:2\0";

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
