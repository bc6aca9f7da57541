//! `custodian init`: a new database, and with `--new-key` a new master key.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use custodian::{MasterKey, Schema};

use crate::args::Global;
use crate::render::tell;

pub fn run(g: &Global, new_key: bool, schema: Option<&Path>, admin: &str) -> Result<()> {
    if g.db.exists() {
        bail!("`{}` already exists; choose another --db", g.db.display());
    }
    let key = if new_key {
        let path = g.key_file.clone().unwrap_or_else(|| {
            let mut p = g.db.clone().into_os_string();
            p.push(".key");
            PathBuf::from(p)
        });
        let key = MasterKey::generate();
        key.write_new_file(&path)?;
        tell!(
            "wrote a new master key to {} (mode 0600): keep a copy somewhere safe and apart from the database; without it nothing can be read",
            path.display()
        );
        key
    } else {
        g.master_key()?
    };
    let mut b = g.builder(key).create(true).initial_admin(admin);
    if let Some(path) = schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read schema `{}`", path.display()))?;
        b = b.schema(Schema::from_toml(&text)?);
    }
    let engine = b.open()?;
    tell!(
        "created {} with key store {}; first admin: {admin}",
        g.db.display(),
        engine.key_store_path().display()
    );
    Ok(())
}
