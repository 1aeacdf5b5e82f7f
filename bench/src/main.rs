//! `petrel-bench`: the load generator. It is built on the Rust smart client, which lands
//! first; until then this binary says so and exits with an error.

fn main() -> std::process::ExitCode {
    eprintln!("petrel-bench: the load generator is not built yet");
    std::process::ExitCode::FAILURE
}
