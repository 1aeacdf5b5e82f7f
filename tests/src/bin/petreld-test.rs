//! `petreld` built inside the test package, so integration tests always run the current code.

fn main() -> anyhow::Result<()> {
    petrel_server::cli::main()
}
