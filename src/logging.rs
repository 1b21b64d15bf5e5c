//! Logs of the commands that run calls outside `ivr serve` (`ivr simulate`, `ivr test`): to
//! standard error, filtered by `IVR_LOG` (or `RUST_LOG`), e.g. `IVR_LOG=warn` shows every
//! failed lookup with the database's reason, `IVR_LOG=debug` more. Quiet (errors only) by
//! default: the transcripts already show what a flow did and why a lookup failed.

/// Installs the subscriber (once; later calls do nothing).
pub fn init() {
    let filter = std::env::var("IVR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
