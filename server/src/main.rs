//! `petreld`, the Petrel server; see `petrel_server::cli`.

fn main() -> anyhow::Result<()> {
    petrel_server::cli::main()
}
