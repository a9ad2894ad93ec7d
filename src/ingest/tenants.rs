//! The BSP's tenant map: which client business each WABA and business phone number belongs
//! to, so every event carries its tenant and a client can be charted, billed or handed its
//! data on its own.
//!
//! The file (`ingest.tenant_map`, TOML) is re-read when it changes, without a restart:
//!
//! ```toml
//! [waba]
//! "102290129340398" = "acme"
//! [phone_number_id]
//! "106540352242922" = "acme-support"   # a number's entry wins over its WABA's
//! ```
//!
//! Requests read the current map through an atomic pointer swap (`arc-swap`), never a lock; a
//! reload that fails (a typo mid-edit) keeps the map in use and says why in the log.

use arc_swap::ArcSwap;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum TenantMapError {
    #[error("tenant map {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("tenant map {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// WABA id / phone number id → tenant label.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantMap {
    #[serde(default)]
    waba: HashMap<String, String>,
    #[serde(default)]
    phone_number_id: HashMap<String, String>,
}

/// Longest tenant label: it is a column value and a dashboard variable, not free text.
const MAX_LABEL: usize = 64;

impl TenantMap {
    pub fn parse(path: &str, text: &str) -> Result<TenantMap, TenantMapError> {
        let invalid = |reason: String| TenantMapError::Invalid {
            path: path.to_string(),
            reason,
        };
        let map: TenantMap = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        for label in map.waba.values().chain(map.phone_number_id.values()) {
            let ok = !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(invalid(format!(
                    "tenant {label:?}: use 1-{MAX_LABEL} letters, digits, '-', '_' or '.'"
                )));
            }
        }
        Ok(map)
    }

    /// The tenant of a change: its phone number's, else its WABA's.
    pub fn tenant(&self, waba_id: &str, phone_number_id: Option<&str>) -> Option<&str> {
        phone_number_id
            .and_then(|p| self.phone_number_id.get(p))
            .or_else(|| self.waba.get(waba_id))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.waba.len() + self.phone_number_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The map in use and where it comes from.
pub struct Tenants {
    current: ArcSwap<TenantMap>,
    path: Option<PathBuf>,
    /// Modification time of the file when it was last read.
    loaded_at: std::sync::Mutex<Option<SystemTime>>,
}

impl Tenants {
    /// Loads `path` (none: every event has no tenant). A map that does not load stops the
    /// start: events would otherwise be written without their tenant.
    pub fn load(path: &str) -> Result<Tenants, TenantMapError> {
        if path.is_empty() {
            return Ok(Tenants {
                current: ArcSwap::from_pointee(TenantMap::default()),
                path: None,
                loaded_at: std::sync::Mutex::new(None),
            });
        }
        let (map, modified) = read(Path::new(path))?;
        Ok(Tenants {
            current: ArcSwap::from_pointee(map),
            path: Some(PathBuf::from(path)),
            loaded_at: std::sync::Mutex::new(modified),
        })
    }

    /// The map for one request.
    pub fn get(&self) -> Arc<TenantMap> {
        self.current.load_full()
    }

    /// Re-reads the file if it changed since it was last read. Returns whether a new map is in
    /// use; an unreadable or invalid file keeps the current one and is reported once, not
    /// again until it changes.
    pub fn reload_if_changed(&self) -> Result<bool, TenantMapError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let Ok(mut loaded_at) = self.loaded_at.lock() else {
            return Ok(false);
        };
        if modified.is_some() && modified == *loaded_at {
            return Ok(false);
        }
        *loaded_at = modified;
        let (map, _) = read(path)?;
        self.current.store(Arc::new(map));
        Ok(true)
    }
}

fn read(path: &Path) -> Result<(TenantMap, Option<SystemTime>), TenantMapError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TenantMapError::Read {
        path: shown.clone(),
        source,
    })?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((TenantMap::parse(&shown, &text)?, modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_wins_over_its_waba() {
        let map = TenantMap::parse(
            "t.toml",
            "[waba]\n\"w1\" = \"acme\"\n[phone_number_id]\n\"p2\" = \"acme-support\"\n",
        )
        .expect("valid");
        assert_eq!(map.tenant("w1", Some("p1")), Some("acme"));
        assert_eq!(map.tenant("w1", Some("p2")), Some("acme-support"));
        assert_eq!(map.tenant("w9", None), None);
    }

    #[test]
    fn bad_labels_and_keys_are_refused_with_the_reason() {
        for text in [
            "[waba]\n\"w1\" = \"\"\n",
            "[waba]\n\"w1\" = \"acme corp; DROP\"\n",
            "[wabas]\n\"w1\" = \"acme\"\n",
        ] {
            let e = TenantMap::parse("t.toml", text).expect_err(text);
            assert!(e.to_string().starts_with("tenant map t.toml:"), "{e}");
        }
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_map() {
        let dir = std::env::temp_dir().join(format!("tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tenants.toml");
        std::fs::write(&path, "[waba]\n\"w1\" = \"acme\"\n").expect("write");
        let tenants = Tenants::load(&path.to_string_lossy()).expect("load");
        assert_eq!(tenants.get().tenant("w1", None), Some("acme"));
        assert!(!tenants.reload_if_changed().expect("unchanged"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "[waba]\n\"w1\" = \"globex\"\n").expect("write");
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(later).expect("mtime");
        assert!(tenants.reload_if_changed().expect("changed"));
        assert_eq!(tenants.get().tenant("w1", None), Some("globex"));
        std::fs::write(&path, "[waba\n").expect("write");
        file.set_modified(later + std::time::Duration::from_secs(2))
            .expect("mtime");
        assert!(tenants.reload_if_changed().is_err());
        assert!(!tenants.reload_if_changed().expect("reported once"));
        assert_eq!(tenants.get().tenant("w1", None), Some("globex"), "kept");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
