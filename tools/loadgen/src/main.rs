//! `feige-loadgen`: see the library docs and `feige-loadgen --help`.

use clap::Parser;
use std::process::ExitCode;

/// The load generator shares the machine with the server it measures: glibc's malloc was a
/// tenth of its CPU (`perf`), taken from the server.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let opts = feige_loadgen::Options::parse();
    let json = opts.json.clone();
    let report = match feige_loadgen::run(opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("feige-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    if let Some(path) = json {
        let written = serde_json::to_string_pretty(&report).map_err(std::io::Error::other).and_then(|text| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, text + "\n")
        });
        if let Err(e) = written {
            eprintln!("feige-loadgen: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
