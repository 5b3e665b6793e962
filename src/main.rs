//! The `lsbackup` binary: parses arguments, draws output, maps outcomes to exit codes. The work
//! is done by the library (`lsbackup::engine` and friends).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
