//! `gen-assets OUT_DIR`: the man pages (section 1) and the bash, zsh and
//! fish completions of ship-episode, ship-scanner, quarantine-prune and
//! doctor, from the clap definitions the binaries parse with
//! (`cis490::args`). scripts/package.sh runs it; cargo-deb picks the files
//! up from `target/assets/`.
//!
//! Layout of OUT_DIR (the Debian locations, minus the prefix):
//! `man/NAME.1`, `bash/NAME`, `zsh/_NAME`, `fish/NAME.fish`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_complete::Shell;

fn main() -> Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: gen-assets OUT_DIR")?;
    for dir in ["man", "bash", "zsh", "fish"] {
        fs::create_dir_all(out.join(dir)).with_context(|| format!("mkdir {}", out.display()))?;
    }
    for cmd in cis490::args::commands() {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section("1")
            .manual("cis490 lab-host shipper")
            .source(format!("cis490-shipper {}", env!("CARGO_PKG_VERSION")))
            .render(&mut page)
            .with_context(|| format!("render the man page of {name}"))?;
        write(&out.join("man").join(format!("{name}.1")), &page)?;
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut script);
            write(&out.join(file), &script)?;
        }
    }
    println!("wrote man pages and completions to {}", out.display());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}
