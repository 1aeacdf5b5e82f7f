//! `petrel-bench` built inside the test package, so its tests always run the current code.

fn main() -> std::process::ExitCode {
    petrel_bench::load::main()
}
