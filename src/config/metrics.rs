//! `[metrics]`: where the fleet metrics go (node_exporter's textfile
//! collector). Parsed as strictly as every other section.

use std::path::PathBuf;

use super::{ConfigError, Parser, Section};

/// Debian's `prometheus-node-exporter` reads `*.prom` files from here
/// (`--collector.textfile.directory`).
pub const DEFAULT_TEXTFILE: &str = "/var/lib/prometheus/node-exporter/cis490.prom";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The file to write; `None` when `textfile = ""` turned metrics off.
    pub textfile: Option<PathBuf>,
    /// Set in the config rather than the default: a missing directory is
    /// then a mistake worth a warning, not just a host without node_exporter.
    pub explicit: bool,
}

impl Default for MetricsSettings {
    fn default() -> MetricsSettings {
        MetricsSettings {
            textfile: Some(PathBuf::from(DEFAULT_TEXTFILE)),
            explicit: false,
        }
    }
}

impl Parser<'_> {
    pub(super) fn metrics(&self, root: &mut Section) -> Result<MetricsSettings, ConfigError> {
        let mut s = self.section(root, "metrics")?;
        let explicit = s.table.contains_key("textfile");
        let settings = match self.optional_path(&mut s, "textfile")? {
            None if explicit => MetricsSettings {
                textfile: None,
                explicit,
            },
            None => MetricsSettings::default(),
            Some(path) => {
                let key = s.key("textfile");
                // node_exporter reads only `*.prom`; any other name would be
                // written faithfully and never seen.
                if path.extension().is_none_or(|e| e != "prom") {
                    return Err(self.key_error(
                        &key,
                        format!(
                            "{:?} must end in .prom (node_exporter's textfile collector reads \
                             only *.prom files); \"\" turns metrics off",
                            path.display().to_string()
                        ),
                    ));
                }
                if !path.is_absolute() {
                    return Err(self.key_error(
                        &key,
                        format!("{:?} must be an absolute path", path.display().to_string()),
                    ));
                }
                MetricsSettings {
                    textfile: Some(path),
                    explicit,
                }
            }
        };
        self.finish(s)?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::Config;

    const MINIMAL: &str = "host_id = \"lab-7\"\n[receiver]\nurl = \"https://collector.wg/\"\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{MINIMAL}{extra}"),
            Path::new("/etc/cis490/lab-host.toml"),
            None,
        )
    }

    #[test]
    fn default_is_debians_textfile_directory() {
        let c = parse("").expect("minimal");
        assert_eq!(
            c.metrics.textfile,
            Some(PathBuf::from(
                "/var/lib/prometheus/node-exporter/cis490.prom"
            ))
        );
        assert!(!c.metrics.explicit);
        let c = parse("[metrics]\n").expect("empty section");
        assert_eq!(c.metrics, MetricsSettings::default());
    }

    #[test]
    fn empty_string_turns_metrics_off() {
        let c = parse("[metrics]\ntextfile = \"\"\n").expect("off");
        assert_eq!(c.metrics.textfile, None);
        assert!(c.metrics.explicit);
    }

    #[test]
    fn another_file_is_taken_as_given() {
        let c = parse("[metrics]\ntextfile = \"/srv/textfile/lab.prom\"\n").expect("path");
        assert_eq!(
            c.metrics.textfile,
            Some(PathBuf::from("/srv/textfile/lab.prom"))
        );
        assert!(c.metrics.explicit);
    }

    #[test]
    fn bad_values_name_key_and_file() {
        for (extra, wants) in [
            (
                "[metrics]\ntextfil = \"/x.prom\"\n",
                "metrics.textfil: unknown key",
            ),
            (
                "[metrics]\ntextfile = 1\n",
                "metrics.textfile: expected a string",
            ),
            (
                "[metrics]\ntextfile = \"/x/cis490.txt\"\n",
                "must end in .prom",
            ),
            (
                "[metrics]\ntextfile = \"rel/cis490.prom\"\n",
                "must be an absolute path",
            ),
            ("metrics = 3\n", "metrics: expected a table"),
        ] {
            // A top-level key after a table header belongs to that table:
            // put it first so that it stays at the root.
            let text = if extra.starts_with("metrics =") {
                format!("{extra}{MINIMAL}")
            } else {
                format!("{MINIMAL}{extra}")
            };
            let err = Config::parse(&text, Path::new("/etc/cis490/lab-host.toml"), None)
                .expect_err(extra)
                .to_string();
            assert!(err.contains(wants), "{extra:?}: {err}");
            assert!(err.starts_with("/etc/cis490/lab-host.toml: "), "{err}");
        }
    }
}
