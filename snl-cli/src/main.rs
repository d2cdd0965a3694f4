//! The `snl` command (filled in by the CLI issue).
fn main() {
    eprintln!("snl: the command line is not built yet");
    std::process::exit(2);
}
