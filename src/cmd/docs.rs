//! `stunmap completions SHELL` and `stunmap man DIR`: shell completions and man pages generated
//! from the same clap definitions the binary parses, so they cannot drift from the flags. Both
//! subcommands are hidden (they are for packagers: `contrib/deb/build.sh` runs them before
//! `cargo deb`); they print or write files and never touch the network.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap_complete::Shell;
use roff::{Roff, bold, italic, roman};

use crate::exit::{Outcome, usage};

/// Flags of `stunmap completions`.
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write a completion script for (on stdout).
    #[arg(value_enum)]
    shell: Shell,
}

/// Flags of `stunmap man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Existing directory to write stunmap.1 and one stunmap-SUBCOMMAND.1 per subcommand to.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Write the completion script for `args.shell` to stdout.
pub(crate) fn completions(args: CompletionsArgs, mut cli: clap::Command) -> Result<Outcome> {
    let name = cli.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the completion script")?;
    Ok(Outcome::Ok)
}

/// Write the man pages into `args.dir`.
pub(crate) fn man(args: ManArgs, cli: clap::Command) -> Result<Outcome> {
    if !args.dir.is_dir() {
        return Err(usage(format!(
            "man {}: not an existing directory",
            args.dir.display()
        )));
    }
    for (file, text) in pages(cli)? {
        let path = args.dir.join(&file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Outcome::Ok)
}

/// Every page as (file name, roff text): the main page first, then one per visible subcommand.
pub(crate) fn pages(cli: clap::Command) -> Result<Vec<(String, Vec<u8>)>> {
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let subcommands: Vec<clap::Command> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let names: Vec<String> = subcommands.iter().map(page_name).collect();
    let mut out = Vec::with_capacity(subcommands.len() + 1);

    let main = clap_mangen::Man::new(cli.clone());
    let mut text = Vec::new();
    main.render_title(&mut text)?;
    main.render_name_section(&mut text)?;
    main.render_synopsis_section(&mut text)?;
    main.render_description_section(&mut text)?;
    main.render_options_section(&mut text)?;
    main.render_subcommands_section(&mut text)?;
    main_sections(&names).to_writer(&mut text)?;
    main.render_version_section(&mut text)?;
    out.push((main.get_filename(), one_preamble(&text)));

    for sub in subcommands {
        let man = clap_mangen::Man::new(sub);
        let mut text = Vec::new();
        man.render(&mut text)
            .with_context(|| format!("rendering {}", man.get_filename()))?;
        let mut r = Roff::new();
        see_also(&mut r, &[String::from("stunmap")], "");
        r.to_writer(&mut text)?;
        out.push((man.get_filename(), text));
    }
    Ok(out)
}

/// Each section rendered on its own starts with roff's string definitions; keep the first.
fn one_preamble(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut seen = std::collections::HashSet::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && !seen.insert(line.to_string()) {
            continue;
        }
        out.push_str(line);
    }
    out.into_bytes()
}

/// A subcommand's page name: its display name after `build` ("stunmap-check").
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

/// EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO of stunmap.1 (what clap does not know).
fn main_sections(subpages: &[String]) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        (
            Outcome::Ok,
            "check/demo: a direct P2P path is healthy; other commands: every target answered.",
        ),
        (
            Outcome::Degraded,
            "Degraded: relay only, some ports blocked, or some targets did not answer.",
        ),
        (
            Outcome::Blocked,
            "Blocked: nothing resolves, management or signal unreachable, or nothing answered.",
        ),
        (
            Outcome::Usage,
            "Bad usage (flag, profile field, target or range), with a one-line reason.",
        ),
        (Outcome::Internal, "Internal error."),
        (
            Outcome::Interrupted,
            "Interrupted by SIGINT or SIGTERM; the partial results were printed.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(code.code().to_string())]);
        r.text([roman(what)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    for (var, what) in [
        (
            "STUNMAP_TURN_PASSWORD",
            "TURN long-term password for --user (check, serve, turn, relay, audit).",
        ),
        (
            "STUNMAP_TURN_SECRET",
            "TURN REST shared secret; credentials are derived from it for --user.",
        ),
        (
            "HTTPS_PROXY",
            "HTTP proxy for the TCP checks of check and control, unless --proxy or \
             --no-proxy is given; NO_PROXY lists the names it is not used for.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(var)]);
        r.text([roman(what)]);
    }
    r.control("PP", []);
    r.text([roman(
        "Secrets are only read from the environment or from files (--password-file, \
         --secret-file), never from a flag value, and never printed.",
    )]);
    r.control("SH", ["FILES"]);
    for (file, what) in [
        (
            "/etc/default/stunmap",
            "Flags of the packaged systemd units (STUNMAP_CHECK_ARGS, STUNMAP_SERVE_ARGS).",
        ),
        (
            "/etc/stunmap/self-hosted.toml",
            "A profile template for a self-hosted NetBird (check --profile).",
        ),
        (
            "/var/lib/prometheus/node-exporter/stunmap.prom",
            "Metrics written by stunmap-check.service for node_exporter's textfile collector.",
        ),
    ] {
        r.control("TP", []);
        r.text([italic(file)]);
        r.text([roman(what)]);
    }
    see_also(&mut r, subpages, ", systemd.service(5), systemd.timer(5)");
    r
}

fn see_also(r: &mut Roff, pages: &[String], tail: &str) {
    r.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(p.as_str()));
        line.push(roman("(1)"));
    }
    line.push(roman(tail));
    r.text(line);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn visible() -> Vec<String> {
        crate::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn the_main_page_lists_every_subcommand_and_each_has_a_page() {
        let pages = pages(crate::Cli::command()).unwrap();
        let (name, main) = &pages[0];
        assert_eq!(name, "stunmap.1");
        let main = String::from_utf8(main.clone()).unwrap();
        let subs = visible();
        assert!(subs.len() >= 12, "{subs:?}");
        for s in &subs {
            assert!(
                main.contains(&format!("stunmap\\-{s}(1)")),
                "stunmap.1 does not list {s}:\n{main}"
            );
            let page = format!("stunmap-{s}.1");
            assert!(pages.iter().any(|(f, _)| *f == page), "no {page}");
        }
        // The hidden packaging subcommands have no page.
        assert!(!pages.iter().any(|(f, _)| f.contains("completions")));
        assert!(!pages.iter().any(|(f, _)| f.ends_with("-man.1")));
        for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"] {
            assert!(
                main.contains(&format!(".SH \"{section}\""))
                    || main.contains(&format!(".SH {section}")),
                "{section}"
            );
        }
        assert_eq!(main.matches(".TH ").count(), 1);
        assert_eq!(main.matches(".ds Aq").count(), 2, "{main}");
        // A subcommand's page has its flags.
        let check = pages.iter().find(|(f, _)| f == "stunmap-check.1").unwrap();
        let check = String::from_utf8_lossy(&check.1);
        assert!(check.contains("\\-\\-prom"), "{check}");
    }

    #[test]
    fn man_writes_every_page_into_an_existing_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        let args = ManArgs {
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(man(args, crate::Cli::command()).unwrap(), Outcome::Ok);
        let pages = pages(crate::Cli::command()).unwrap();
        for (f, text) in &pages {
            assert_eq!(&std::fs::read(dir.path().join(f)).unwrap(), text, "{f}");
        }
        let missing = ManArgs {
            dir: dir.path().join("nope"),
        };
        assert!(man(missing, crate::Cli::command()).is_err());
    }

    #[test]
    fn completions_name_every_subcommand_in_each_shell() {
        for (shell, flag) in [
            (Shell::Bash, "--prom"),
            (Shell::Zsh, "--prom"),
            (Shell::Fish, "-l prom"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut crate::Cli::command(), "stunmap", &mut out);
            let text = String::from_utf8(out).unwrap();
            for s in visible() {
                assert!(text.contains(&s), "{shell}: {s} missing");
            }
            assert!(text.contains(flag), "{shell}");
        }
    }
}
