//! Behaviour injection: per-episode rules that make the receiver misbehave on purpose.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Store as usual.
    Normal,
    /// Read the whole body, then answer `code`.
    Status { code: u16, retry_after: Option<u64> },
    /// Answer `code` right after the headers without reading the body, then close gracefully.
    CloseEarly { code: u16, retry_after: Option<u64> },
    /// Read a little of the body, then stop reading and never answer.
    Stall,
    /// Read the body at this many bytes per second, then store as usual.
    Slow(u64),
    /// Answer `code` to every request for the id, `HEAD` as well as `PUT`,
    /// before the credentials are checked and without reading any body,
    /// then close gracefully: what a proxy or TLS terminator in front of
    /// the receiver does when it refuses a client.
    Refuse { code: u16, retry_after: Option<u64> },
}

impl Action {
    /// Whether this action also answers `HEAD` (every other one is about
    /// an upload, and leaves a `HEAD` to the store).
    pub fn covers_head(&self) -> bool {
        matches!(self, Action::Refuse { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// Apply to this many more requests, then remove the rule (`None`: forever).
    pub remaining: Option<u32>,
}

fn parse_code(s: &str) -> Result<u16> {
    let code: u16 = s
        .trim()
        .parse()
        .with_context(|| format!("bad status code {s:?}"))?;
    if !(200..=599).contains(&code) {
        bail!("status code {code} out of range 200..=599");
    }
    Ok(code)
}

/// `NNN` or `NNN,retry-after:SECS`.
fn parse_status(s: &str) -> Result<(u16, Option<u64>)> {
    let mut parts = s.split(',');
    let code = parse_code(parts.next().unwrap_or_default())?;
    let mut retry_after = None;
    for p in parts {
        let p = p.trim();
        match p.split_once(':') {
            Some(("retry-after", v)) => {
                retry_after = Some(
                    v.trim()
                        .parse()
                        .with_context(|| format!("bad retry-after {v:?}"))?,
                );
            }
            _ => bail!("unknown status option {p:?} (expected retry-after:SECS)"),
        }
    }
    Ok((code, retry_after))
}

/// Bytes with an optional k/K (KiB), m/M (MiB), g/G (GiB) suffix.
fn parse_rate(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("bad rate {s:?}"))?;
    let rate = n.checked_mul(mult).context("rate too large")?;
    if rate == 0 {
        bail!("rate must be > 0");
    }
    Ok(rate)
}

fn parse_action(spec: &str) -> Result<Action> {
    let spec = spec.trim();
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let no_arg = |a: Action| {
        if arg.is_empty() {
            Ok(a)
        } else {
            bail!("{kind} takes no argument")
        }
    };
    match kind {
        "normal" | "ok" => no_arg(Action::Normal),
        "stall" => no_arg(Action::Stall),
        "status" => {
            let (code, retry_after) = parse_status(arg)?;
            Ok(Action::Status { code, retry_after })
        }
        "close-early" => {
            let (code, retry_after) = parse_status(arg)?;
            Ok(Action::CloseEarly { code, retry_after })
        }
        "refuse" => {
            let (code, retry_after) = parse_status(arg)?;
            Ok(Action::Refuse { code, retry_after })
        }
        "slow" => Ok(Action::Slow(parse_rate(arg)?)),
        "once" | "times" => bail!("{kind}: cannot be nested"),
        _ => bail!(
            "unknown behaviour {kind:?} (expected status:NNN[,retry-after:S], close-early:NNN, refuse:NNN, stall, slow:BYTES_PER_SEC, normal, once:SPEC, times:N:SPEC)"
        ),
    }
}

/// `SPEC`, `once:SPEC` or `times:N:SPEC` (N >= 1).
pub fn parse_rule(spec: &str) -> Result<Rule> {
    let spec = spec.trim();
    let (remaining, rest) = if let Some(rest) = spec.strip_prefix("once:") {
        (Some(1), rest)
    } else if let Some(rest) = spec.strip_prefix("times:") {
        let (n, rest) = rest.split_once(':').context("expected times:N:SPEC")?;
        let n: u32 = n
            .trim()
            .parse()
            .with_context(|| format!("bad count {n:?}"))?;
        if n == 0 {
            bail!("times: count must be at least 1");
        }
        (Some(n), rest)
    } else {
        (None, spec)
    };
    Ok(Rule {
        action: parse_action(rest)?,
        remaining,
    })
}

/// Parse `ID=SPEC` as given to `--behave`.
pub fn parse_assignment(s: &str) -> Result<(String, Rule)> {
    let (id, spec) = s.split_once('=').context("expected ID=SPEC")?;
    let id = id.trim();
    if id.is_empty() {
        bail!("empty ID in {s:?}");
    }
    let rule = parse_rule(spec).with_context(|| format!("in --behave {s:?}"))?;
    Ok((id.to_owned(), rule))
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ra = |f: &mut fmt::Formatter<'_>, r: &Option<u64>| match r {
            Some(s) => write!(f, ",retry-after:{s}"),
            None => Ok(()),
        };
        match self {
            Action::Normal => write!(f, "normal"),
            Action::Stall => write!(f, "stall"),
            Action::Slow(r) => write!(f, "slow:{r}"),
            Action::Status { code, retry_after } => {
                write!(f, "status:{code}")?;
                ra(f, retry_after)
            }
            Action::CloseEarly { code, retry_after } => {
                write!(f, "close-early:{code}")?;
                ra(f, retry_after)
            }
            Action::Refuse { code, retry_after } => {
                write!(f, "refuse:{code}")?;
                ra(f, retry_after)
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.remaining {
            None => {}
            Some(1) => write!(f, "once:")?,
            Some(n) => write!(f, "times:{n}:")?,
        }
        write!(f, "{}", self.action)
    }
}

/// Rules keyed by `host/episode`, `episode`, or `*` (most specific wins).
#[derive(Default)]
pub struct Rules {
    map: BTreeMap<String, Rule>,
}

impl Rules {
    pub fn set(&mut self, id: String, rule: Rule) {
        self.map.insert(id, rule);
    }

    pub fn clear(&mut self, id: &str) -> bool {
        self.map.remove(id).is_some()
    }

    pub fn list(&self) -> BTreeMap<String, String> {
        self.map
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    /// The action for this request; counts down a matching `once:`/`times:` rule
    /// and removes it when used up.
    pub fn take(&mut self, host: &str, episode: &str) -> Action {
        self.take_if(host, episode, |_| true)
            .unwrap_or(Action::Normal)
    }

    /// The action of the rule for this id if it answers every method (a
    /// `refuse:`), counted down like [`Rules::take`]; `None` (and nothing
    /// counted) when the most specific rule is about uploads only, or
    /// there is none.
    pub fn take_refusal(&mut self, host: &str, episode: &str) -> Option<Action> {
        self.take_if(host, episode, Action::covers_head)
    }

    fn take_if(
        &mut self,
        host: &str,
        episode: &str,
        applies: impl Fn(&Action) -> bool,
    ) -> Option<Action> {
        let full = format!("{host}/{episode}");
        let key = [full.as_str(), episode, "*"]
            .into_iter()
            .find(|k| self.map.contains_key(*k))?;
        let rule = self.map.get_mut(key)?;
        if !applies(&rule.action) {
            return None;
        }
        let action = rule.action.clone();
        match &mut rule.remaining {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.map.remove(key);
            }
            None => {}
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let r = parse_rule("status:503,retry-after:7").expect("parse");
        assert_eq!(
            r.action,
            Action::Status {
                code: 503,
                retry_after: Some(7)
            }
        );
        assert_eq!(r.remaining, None);
        let r = parse_rule("once:close-early:400").expect("parse");
        assert_eq!(r.remaining, Some(1));
        assert_eq!(r.to_string(), "once:close-early:400");
        assert_eq!(
            parse_rule("slow:2M").expect("parse").action,
            Action::Slow(2 << 20)
        );
        assert_eq!(parse_rule("stall").expect("parse").action, Action::Stall);
        for bad in [
            "status:99",
            "status:abc",
            "stall:1",
            "slow:0",
            "once:once:stall",
            "times:0:stall",
            "times:2",
            "times:x:stall",
            "times:2:once:stall",
            "once:times:2:stall",
            "nope",
            "status:503,x:1",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
        let (id, _) = parse_assignment("*=status:500").expect("parse");
        assert_eq!(id, "*");
    }

    #[test]
    fn lookup_and_once() {
        let mut rules = Rules::default();
        rules.set("*".into(), parse_rule("status:500").expect("parse"));
        rules.set("e1".into(), parse_rule("once:status:503").expect("parse"));
        rules.set("h/e2".into(), parse_rule("stall").expect("parse"));
        assert_eq!(
            rules.take("h", "e1"),
            Action::Status {
                code: 503,
                retry_after: None
            }
        );
        assert_eq!(
            rules.take("h", "e1"),
            Action::Status {
                code: 500,
                retry_after: None
            }
        );
        assert_eq!(rules.take("h", "e2"), Action::Stall);
        assert!(rules.clear("*"));
        assert_eq!(rules.take("x", "e2"), Action::Normal);
    }

    #[test]
    fn refusals_answer_every_method_and_count_every_request() {
        let r = parse_rule("times:2:refuse:400").expect("parse");
        assert_eq!(
            r.action,
            Action::Refuse {
                code: 400,
                retry_after: None
            }
        );
        assert_eq!(r.to_string(), "times:2:refuse:400");
        assert!(parse_rule("refuse").is_err());
        let mut rules = Rules::default();
        rules.set("*".into(), r);
        rules.set("e-412".into(), parse_rule("status:412").expect("parse"));
        let refuse = Some(Action::Refuse {
            code: 400,
            retry_after: None,
        });
        // The most specific rule decides: an upload-only rule leaves HEAD
        // alone and counts nothing.
        assert_eq!(rules.take_refusal("h", "e-412"), None);
        assert_eq!(
            rules.list().get("*").map(String::as_str),
            Some("times:2:refuse:400")
        );
        // A HEAD and a PUT each count as one request.
        assert_eq!(rules.take_refusal("h", "e"), refuse);
        assert_eq!(rules.take_refusal("h", "e"), refuse);
        assert_eq!(rules.take_refusal("h", "e"), None);
        assert_eq!(rules.take("h", "e"), Action::Normal);
        assert_eq!(
            rules.take("h", "e-412"),
            Action::Status {
                code: 412,
                retry_after: None
            }
        );
    }

    #[test]
    fn times_counts_down_then_falls_through() {
        let r = parse_rule("times:2:status:503,retry-after:2").expect("parse");
        assert_eq!(r.remaining, Some(2));
        assert_eq!(r.to_string(), "times:2:status:503,retry-after:2");
        let mut rules = Rules::default();
        rules.set("*".into(), parse_rule("status:500").expect("parse"));
        rules.set("e".into(), r);
        let s503 = Action::Status {
            code: 503,
            retry_after: Some(2),
        };
        assert_eq!(rules.take("h", "e"), s503);
        // Listed with what is left.
        assert_eq!(
            rules.list().get("e").map(String::as_str),
            Some("once:status:503,retry-after:2")
        );
        assert_eq!(rules.take("h", "e"), s503);
        assert_eq!(rules.list().get("e"), None);
        assert_eq!(
            rules.take("h", "e"),
            Action::Status {
                code: 500,
                retry_after: None
            }
        );
        assert!(rules.clear("*"));
        assert_eq!(rules.take("x", "e2"), Action::Normal);
    }
}
