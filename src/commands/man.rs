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
    out.extend_from_slice(FILES_AND_ENVIRONMENT.as_bytes());
    out.extend_from_slice(CONFIGURATION.as_bytes());
    page.render_version_section(&mut out)
        .map_err(CommandError::Stdout)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Where the helper reads and writes, and the variables it reads: what clap cannot know.
/// tests/docs.rs holds both to docs/configuration.md.
const FILES_AND_ENVIRONMENT: &str = r#".SH FILES
.TP
\fB$XDG_CONFIG_HOME/codestorage/config.toml\fR, else \fB~/.config/codestorage/config.toml\fR
The configuration (Linux, the BSDs, macOS; on Windows \fB%APPDATA%\\codestorage\\config.toml\fR).
\fBCODESTORAGE_CONFIG\fR names another file. It and the directories above it must belong to
you or root and be writable by nobody else, as OpenSSH's StrictModes asks.
.TP
\fB~/.config/codestorage/ORG.pem\fR
The private key \fBkeygen \-\-org ORG\fR writes (mode 600).
.TP
\fB~/.gitconfig\fR (or \fBGIT_CONFIG_GLOBAL\fR)
Where \fBsetup\fR writes \fB[credential "https://*.code.storage"]\fR (helper, useHttpPath)
and \fB[http "https://*.code.storage"]\fR (proactiveAuth), and \fBsetup \-\-remove\fR takes
them away.
.SH ENVIRONMENT
.TP
\fBCODESTORAGE_CONFIG\fR
Path of the config file, instead of the default.
.TP
\fBCODESTORAGE_PRIVATE_KEY\fR (alias \fBPIERRE_PRIVATE_KEY\fR)
PEM text of a key for *.code.storage hosts whose organisation the config does not name.
.TP
\fBCODESTORAGE_PRIVATE_KEY_FILE\fR (alias \fBPIERRE_PRIVATE_KEY_FILE\fR)
Path of such a key, when no PEM text is set.
.TP
\fBCODESTORAGE_TTL\fR (alias \fBPIERRE_TOKEN_TTL\fR)
Token lifetime for every request: seconds, or a number with s, m, h or d.
.TP
\fBCODESTORAGE_SCOPES\fR
Comma-separated scopes for every request, e.g. git:read,git:write.
.TP
\fBCODESTORAGE_SUBJECT\fR
The sub claim for every request (default: the user name and the host name).
.TP
\fBCODESTORAGE_LEAST_PRIVILEGE\fR
0 gives fetches the configured scopes too; 1 (the default) gives them git:read only.
.TP
\fBCODESTORAGE_DEBUG\fR (alias \fBPIERRE_DEBUG\fR)
One stderr line per decision; never a token or a key.
.TP
\fBCODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS\fR
Accept key files others may read, or own, for every organisation (mounted secrets).
.TP
\fBCODESTORAGE_KEY_COMMAND_TIMEOUT\fR
How long a key_command or sign_command may run (default 10 seconds).
.TP
\fBCODESTORAGE_BROKER\fR
Inside a sandbox: the token broker's socket, asked instead of any key or config.
"#;

/// The config file's keys, one line each; docs/configuration.md has the whole reference.
const CONFIGURATION: &str = r#".SH CONFIGURATION
The config file is TOML with three levels; docs/configuration.md explains every key.
.TP
Top level
\fBttl\fR (default "1h"), \fBscopes\fR (default ["git:read", "git:write"]),
\fBsubject\fR, \fBleast_privilege\fR (default true), \fBbroker\fR (a socket: ask the token
broker instead); for the broker, \fBreuse_tokens\fR (default true), \fBcontrol_socket\fR,
\fBcontrol_group\fR and \fBsandbox_dir\fR.
.TP
\fB[org.NAME]\fR
One key source: \fBkey_file\fR, \fBkey_env\fR, \fBkey_command\fR, \fBkey_agent\fR (with
\fBagent_socket\fR), or \fBsign_command\fR with \fBpublic_key_file\fR (and
\fBsign_persistent\fR to keep it running); \fBhosts\fR (default
["NAME.code.storage"]), \fBallow_http\fR, \fBallow_insecure_key_permissions\fR, and \fBttl\fR,
\fBscopes\fR, \fBsubject\fR, \fBleast_privilege\fR for this organisation.
.TP
\fB[[org.NAME.repo]]\fR
Rules, the first whose \fBmatch\fR fits the repository wins: \fBttl\fR, \fBscopes\fR,
\fBsubject\fR, \fBleast_privilege\fR, \fBops\fR (no-push, no-force-push, verify-sig) and
\fBrefs\fR ([{ pattern = "refs/heads/main", ops = ["no-push"] }]).
.TP
\fB[sandbox.NAME]\fR
What the token broker grants one sandbox (docs/sandboxes.md).
"#;
