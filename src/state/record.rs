//! What the state holds: the [`State`] of one environment and the [`Record`] of each
//! resource, how a stored state is parsed and checked, and where a local one lives.

use super::{SCHEMA_VERSION, StateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

impl Record {
    pub fn new(kind: &str, id: impl Into<String>) -> Self {
        Record {
            kind: kind.to_string(),
            id: id.into(),
            arn: None,
            attrs: BTreeMap::new(),
        }
    }

    pub fn arn(mut self, arn: impl Into<String>) -> Self {
        self.arn = Some(arn.into());
        self
    }

    pub fn attr(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attrs.insert(key.to_string(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub serial: u64,
    pub lineage: String,
    pub env: String,
    pub region: String,
    pub account_id: String,
    /// A production environment (see [`crate::config::Settings::production`]): once an
    /// `up` recorded it, every command treats the environment as production, with or
    /// without the config file that said so.
    #[serde(default)]
    pub production: bool,
    #[serde(default)]
    pub resources: BTreeMap<String, Record>,
    /// Creates under way, by address, with when the intent was written (RFC 3339): a
    /// resource whose create call AWS gives no idempotency token is announced here before
    /// the call, and the record replaces the intent (see `Ctx::create_once`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intents: BTreeMap<String, String>,
}

impl State {
    pub fn new(env: &str, region: &str, account_id: &str) -> Self {
        State {
            version: SCHEMA_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            env: env.to_string(),
            region: region.to_string(),
            account_id: account_id.to_string(),
            production: false,
            resources: BTreeMap::new(),
            intents: BTreeMap::new(),
        }
    }

    /// Reads a state file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io(path, e)),
        };
        Self::parse(&bytes, &path.display().to_string()).map(Some)
    }

    /// Parses and checks a state file's contents; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<State, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            path: origin.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v > u64::from(SCHEMA_VERSION) => {
                return Err(StateError::NewerVersion {
                    path: origin.to_string(),
                    found: v,
                });
            }
            Some(_) => {}
            None => return Err(corrupt("no schema version".into())),
        }
        let state: State = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        for (addr, rec) in &state.resources {
            if !addr.starts_with(&format!("{}.", rec.kind)) || rec.id.is_empty() {
                return Err(corrupt(format!("resource {addr:?} is malformed")));
            }
        }
        Ok(state)
    }

    /// Checks that this file belongs to the environment, region and account of the run.
    pub fn check_belongs(
        &self,
        path: &Path,
        env: &str,
        region: &str,
        account_id: &str,
    ) -> Result<(), StateError> {
        let mismatch = |field, found: &str, expected: &str, hint: String| StateError::Mismatch {
            path: path.display().to_string(),
            field,
            found: found.to_string(),
            expected: expected.to_string(),
            hint,
        };
        if self.env != env {
            return Err(mismatch(
                "environment",
                &self.env,
                env,
                "use the matching --env or --state-dir".into(),
            ));
        }
        if self.region != region {
            return Err(mismatch(
                "region",
                &self.region,
                region,
                format!("pass --region {}", self.region),
            ));
        }
        if !self.account_id.is_empty() && self.account_id != account_id {
            return Err(mismatch(
                "account",
                &self.account_id,
                account_id,
                "use credentials for that account".into(),
            ));
        }
        Ok(())
    }
}

pub fn state_path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.json"))
}
