//! `cargo xtask <task>`: project chores that drive the `snl` binary as a child process.

const TASKS: &str = "tasks:\n  (none yet: `pareto` and `bench-vs-torch` come with their issues)";

fn main() {
    match std::env::args().nth(1).as_deref() {
        None | Some("help" | "--help" | "-h") => println!("cargo xtask <task>\n\n{TASKS}"),
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`\n\n{TASKS}");
            std::process::exit(2);
        }
    }
}
