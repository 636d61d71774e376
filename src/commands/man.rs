//! `man`: the manual page, in roff, from the clap definitions.

use clap::CommandFactory;

use crate::commands::CommandError;

/// The manual page, in roff, from the clap definitions: the top page and one section per
/// subcommand, so that it never drifts from `--help`.
pub fn page() -> Result<String, CommandError> {
    let command = crate::cli::Cli::command();
    let mut out = Vec::new();
    let page = clap_mangen::Man::new(command.clone());
    page.render_title(&mut out).map_err(CommandError::Stdout)?;
    page.render_name_section(&mut out)
        .map_err(CommandError::Stdout)?;
    page.render_synopsis_section(&mut out)
        .map_err(CommandError::Stdout)?;
    page.render_description_section(&mut out)
        .map_err(CommandError::Stdout)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let title = format!("{} {}", command.get_name(), sub.get_name());
        let section = clap_mangen::Man::new(sub.clone().bin_name(title));
        out.extend_from_slice(format!(".SH \"{}\"\n", sub.get_name().to_uppercase()).as_bytes());
        section
            .render_synopsis_section(&mut out)
            .map_err(CommandError::Stdout)?;
        section
            .render_description_section(&mut out)
            .map_err(CommandError::Stdout)?;
        section
            .render_options_section(&mut out)
            .map_err(CommandError::Stdout)?;
        section
            .render_extra_section(&mut out)
            .map_err(CommandError::Stdout)?;
    }
    page.render_version_section(&mut out)
        .map_err(CommandError::Stdout)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
