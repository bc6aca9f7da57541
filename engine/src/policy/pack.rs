//! Policy packs: the files of a policy, as read from a directory, bundled
//! with the engine, or stored as a version in the database.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::PolicyError;
use crate::script::MAX_FILE_SIZE;

/// The name of the required roles file.
const ROLES_FILE: &str = "roles.toml";
/// The name of the optional test-case file.
const CASES_FILE: &str = "cases.toml";
/// The first byte of [`PolicyPack::to_bytes`]: the format version.
const FORMAT_VERSION: u8 = 1;

/// The files of a policy: rhai scripts, `roles.toml` and optionally
/// `cases.toml`. Checked for shape and size, not compiled; the engine
/// compiles a pack and runs its cases before installing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPack {
    /// (file name, source) of every `.rhai` file, sorted by name.
    scripts: Vec<(String, String)>,
    /// The source of `roles.toml`.
    roles: String,
    /// The source of `cases.toml`, if the pack has one.
    cases: Option<String>,
}

/// A role declared in `roles.toml`:
///
/// ```toml
/// [roles.sales]
/// description = "Sales representatives: their own customers"
/// require_2fa = false
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    /// What the role is for, shown to administrators.
    pub description: String,
    /// Whether a principal holding the role must log in with a second
    /// factor. `false` when absent.
    #[serde(default)]
    pub require_2fa: bool,
}

impl PolicyPack {
    /// Reads a policy directory: every `*.rhai` file (in name order),
    /// `roles.toml` (required) and `cases.toml` (optional); other files are
    /// ignored. Refuses a file over 1 MiB and a directory without a script.
    pub fn from_dir(dir: &Path) -> Result<PolicyPack, PolicyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PolicyError::Io { path, source }
        };
        let mut scripts = Vec::new();
        let mut roles = None;
        let mut cases = None;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let wanted = name.ends_with(".rhai") || name == ROLES_FILE || name == CASES_FILE;
            if !wanted || !path.is_file() {
                continue;
            }
            let text = read_limited(&path)?;
            match name.as_str() {
                ROLES_FILE => roles = Some(text),
                CASES_FILE => cases = Some(text),
                _ => scripts.push((name, text)),
            }
        }
        let roles = roles.ok_or_else(|| {
            PolicyError::Pack(format!(
                "`{}` has no {ROLES_FILE}: declare the policy's roles there",
                dir.display()
            ))
        })?;
        if scripts.is_empty() {
            return Err(PolicyError::Pack(format!(
                "`{}` has no .rhai script: a policy needs at least one, defining `fn authorize(req)`",
                dir.display()
            )));
        }
        PolicyPack::from_sources(scripts, roles, cases)
    }

    /// A pack from its sources: (file name, source) of each script, the
    /// source of `roles.toml` and of `cases.toml`. Scripts are sorted by
    /// name; the same checks as [`PolicyPack::from_dir`] apply.
    pub fn from_sources(
        mut scripts: Vec<(String, String)>,
        roles: String,
        cases: Option<String>,
    ) -> Result<PolicyPack, PolicyError> {
        scripts.sort_by(|a, b| a.0.cmp(&b.0));
        let pack = PolicyPack {
            scripts,
            roles,
            cases,
        };
        pack.check()?;
        Ok(pack)
    }

    /// The pack bundled with Custodian (the files of `examples/policies`).
    pub fn default_pack() -> PolicyPack {
        PolicyPack {
            scripts: vec![(
                "access.rhai".to_string(),
                include_str!("../../../examples/policies/access.rhai").to_string(),
            )],
            roles: include_str!("../../../examples/policies/roles.toml").to_string(),
            cases: Some(include_str!("../../../examples/policies/cases.toml").to_string()),
        }
    }

    /// The pack as bytes, for storing a version in the database.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![FORMAT_VERSION];
        #[expect(
            clippy::expect_used,
            reason = "postcard writes strings, vectors and options of known length without error"
        )]
        let body = postcard::to_stdvec(self).expect("a policy pack serializes");
        bytes.extend_from_slice(&body);
        bytes
    }

    /// A pack stored with [`PolicyPack::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PolicyPack, PolicyError> {
        let unreadable = |why: String| {
            PolicyError::Pack(format!(
                "the stored policy pack cannot be read ({why}): install the policy again"
            ))
        };
        match bytes.split_first() {
            Some((&FORMAT_VERSION, body)) => {
                let pack: PolicyPack =
                    postcard::from_bytes(body).map_err(|e| unreadable(e.to_string()))?;
                pack.check()?;
                Ok(pack)
            }
            Some((version, _)) => Err(unreadable(format!(
                "format version {version}; this build reads version {FORMAT_VERSION}"
            ))),
            None => Err(unreadable("it is empty".into())),
        }
    }

    /// Every file as (name, source): the scripts, `roles.toml`, then
    /// `cases.toml` if present.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.scripts
            .iter()
            .map(|(name, source)| (name.as_str(), source.as_str()))
            .chain(std::iter::once((ROLES_FILE, self.roles.as_str())))
            .chain(self.cases.as_deref().map(|c| (CASES_FILE, c)))
    }

    /// The source of `cases.toml`, if the pack has one.
    pub fn cases(&self) -> Option<&str> {
        self.cases.as_deref()
    }

    /// The scripts as (file name, source), sorted by name.
    pub(crate) fn scripts(&self) -> &[(String, String)] {
        &self.scripts
    }

    /// The source of `roles.toml`.
    pub(crate) fn roles_source(&self) -> &str {
        &self.roles
    }

    /// Shape and size: at least one script, every script named `*.rhai`
    /// once, no file over [`MAX_FILE_SIZE`].
    fn check(&self) -> Result<(), PolicyError> {
        if self.scripts.is_empty() {
            return Err(PolicyError::Pack(
                "the pack has no .rhai script: a policy needs at least one, defining `fn authorize(req)`"
                    .into(),
            ));
        }
        let mut previous: Option<&str> = None;
        for (name, _) in &self.scripts {
            let plain = name.len() > ".rhai".len()
                && name.ends_with(".rhai")
                && !name.contains(['/', '\\'])
                && !name.starts_with('.');
            if !plain {
                return Err(PolicyError::Pack(format!(
                    "script name `{name}` must be a plain file name ending in .rhai"
                )));
            }
            if previous == Some(name.as_str()) {
                return Err(PolicyError::Pack(format!(
                    "script `{name}` appears twice: give each script its own name"
                )));
            }
            previous = Some(name);
        }
        for (name, source) in self.files() {
            if source.len() as u64 > MAX_FILE_SIZE {
                return Err(too_large(name, source.len() as u64));
            }
        }
        Ok(())
    }
}

fn too_large(name: &str, size: u64) -> PolicyError {
    PolicyError::Pack(format!(
        "`{name}` is {size} bytes; policy files may be at most {MAX_FILE_SIZE} bytes (1 MiB): split or shorten it"
    ))
}

/// Reads a UTF-8 file of at most [`MAX_FILE_SIZE`] bytes, without reading
/// more than that from a larger one.
fn read_limited(path: &Path) -> Result<String, PolicyError> {
    let io = |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_FILE_SIZE {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(text.len() as u64);
        return Err(too_large(&path.display().to_string(), size));
    }
    Ok(text)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    #[serde(default)]
    roles: BTreeMap<String, RoleDef>,
}

/// Parses `roles.toml`: `[roles.NAME]` tables with a description and
/// `require_2fa`.
pub(crate) fn parse_roles(source: &str) -> Result<BTreeMap<String, RoleDef>, PolicyError> {
    let file: RolesFile =
        toml::from_str(source).map_err(|e| PolicyError::Roles(toml_error(source, &e)))?;
    if file.roles.is_empty() {
        return Err(PolicyError::Roles(
            "no role is declared: add tables like `[roles.sales]` with a `description`".into(),
        ));
    }
    for name in file.roles.keys() {
        let ok = (1..=32).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(PolicyError::Roles(format!(
                "invalid role name `{name}`: use 1 to 32 lowercase letters, digits or `_`"
            )));
        }
    }
    Ok(file.roles)
}

/// A TOML error as `line N: message`.
pub(crate) fn toml_error(source: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end_matches('.');
    match error.span() {
        Some(span) => {
            let line = source
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("line {line}: {message}")
        }
        None => message.to_string(),
    }
}
