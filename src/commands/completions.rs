//! `completions SHELL`: completion scripts for bash, zsh and fish, from the clap definitions.

use clap::CommandFactory;

use crate::cli::Shell;

/// The completion script for `shell`, from the clap definitions.
pub fn script(shell: Shell) -> String {
    use clap_complete::{generate, shells};
    let mut command = crate::cli::Cli::command();
    let name = command.get_name().to_owned();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => generate(shells::Bash, &mut command, &name, &mut out),
        Shell::Zsh => generate(shells::Zsh, &mut command, &name, &mut out),
        Shell::Fish => generate(shells::Fish, &mut command, &name, &mut out),
    }
    String::from_utf8_lossy(&out).into_owned()
}
