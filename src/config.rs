//! Settings per environment: built-in defaults, a stricter production profile, then the
//! optional `payctl.toml` (`[defaults]` for every environment, `[env.<name>]` for one).
//!
//! An environment is a *production environment* when it is named `prod`, or when its own
//! table says `production = true` (never `[defaults]`: production is chosen env by env,
//! and `prod` cannot opt out). It gets the production profile and every production guard
//! (see [`Settings::production`]); the state file records it, so commands that run
//! without this file still know.
//!
//! ```toml
//! [defaults]
//! vpc_cidr = "10.20.0.0/16"
//!
//! [env.staging]
//! nat_gateways = 3
//! ```
//!
//! Unknown keys, wrong types and invalid values are errors that name the key.

use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const AZ_COUNT: usize = 3;
pub const PROD_ENV: &str = "prod";

/// What one environment gets, after all layers of configuration are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The VPC's IPv4 block, /16 to /24; it is cut into /(n+4) subnets.
    pub vpc_cidr: Ipv4Net,
    /// NAT gateways, 1 to 3: one per AZ in prod, one shared elsewhere by default.
    pub nat_gateways: usize,
    /// A production environment: the production profile (Multi-AZ, deletion protection,
    /// one NAT per AZ, reserved concurrency, production throttles) and every guard: `down`
    /// needs `--yes` or a typed confirmation, keeps a final snapshot, a table backup, the
    /// audit trail and their keys, refuses `--purge` and `--skip-final-snapshot`; `local
    /// start-api` refuses it.
    pub production: bool,
    pub db: DbSettings,
    /// Deletion protection on the database and the transactions table.
    pub deletion_protection: bool,
    pub functions: FunctionSettings,
    pub api: ApiSettings,
    /// Where the alarms' topic sends e-mail.
    pub alert_email: String,
    /// `s3://BUCKET[/PREFIX]` to keep the state in S3 (`--state` overrides it).
    pub state: Option<String>,
    /// The audit bucket's policy denying every request made without TLS. Always on in
    /// `prod`; an environment may turn it off (e.g. one on a local emulator reached over
    /// plain HTTP, where the policy refuses every object call).
    pub audit_bucket_tls_only: bool,
    /// The Lambda event source mappings (table stream → audit logger, retry queue →
    /// processor). Always on in `prod`; an environment driven by `payctl local
    /// start-api` may leave them out, so that only the local run consumes its sources.
    pub event_source_mappings: bool,
    /// The account that owns the S3 state bucket (12 digits); `None`: the caller's.
    /// `--state-bucket-owner` overrides it.
    pub state_bucket_owner: Option<String>,
    /// Days the stack's log groups keep their events: 365 in production (PCI DSS 10.5.1
    /// keeps audit logs 12 months), 90 elsewhere. One of CloudWatch Logs' own values.
    pub log_retention_days: i32,
    /// A WAF web ACL on the API stage (FSBP APIGateway.4): always in production, off
    /// elsewhere unless turned on.
    pub waf: bool,
    /// The web ACL's rate-based rule: requests one client IP may make in 5 minutes
    /// before WAF blocks it (30000 in production, a fifth of the stage's rate; 3000
    /// elsewhere).
    pub waf_rate_limit: i64,
    /// How a new version of a function goes live (see `compute::alias`).
    pub rollout: RolloutSettings,
}

/// How a function's new version reaches its alias `live`: in production through a canary
/// (`canary_percent` of the traffic for `bake`, rolled back when the version's errors or
/// throttles exceed the maxima or the function's error alarm fires); elsewhere at once
/// (`canary_percent` 0). After a promotion, `versions_kept` versions are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    pub canary_percent: f64,
    pub bake: std::time::Duration,
    pub max_errors: f64,
    pub max_throttles: f64,
    pub versions_kept: usize,
}

/// The shares of traffic a canary may take (`AdditionalVersionWeights` takes 0 to 1).
pub const CANARY_PERCENTS: std::ops::RangeInclusive<f64> = 1.0..=50.0;

/// The limits WAF accepts for a rate-based rule (`RateBasedStatement.Limit`,
/// <https://docs.aws.amazon.com/waf/latest/APIReference/API_RateBasedStatement.html>).
pub const WAF_RATE_LIMITS: std::ops::RangeInclusive<i64> = 10..=2_000_000_000;

/// The retention periods CloudWatch Logs accepts (`PutRetentionPolicy`,
/// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html>).
pub const LOG_RETENTION_VALUES: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Reserved concurrency per function (`None`: draw from the account's unreserved pool).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSettings {
    pub validator_concurrency: Option<i32>,
    pub processor_concurrency: Option<i32>,
    pub audit_logger_concurrency: Option<i32>,
}

/// The API's stage throttling and the usage plan's throttle and daily quota. The rate
/// is requests per second (API Gateway takes a double); burst and quota are counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub rate_limit: f64,
    pub burst_limit: i32,
    pub daily_quota: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbSettings {
    pub instance_class: String,
    pub allocated_storage_gib: i32,
    /// A PostgreSQL major version (RDS picks its current default minor version).
    pub engine_version: String,
    pub multi_az: bool,
}

impl Settings {
    /// The built-in settings of `env`, before any file: the production profile for `prod`.
    pub fn builtin(env: &str) -> Self {
        Self::profile(env == PROD_ENV)
    }

    /// The built-in settings with or without the production profile.
    pub fn profile(production: bool) -> Self {
        Settings {
            vpc_cidr: "10.0.0.0/16".parse().expect("valid built-in CIDR"),
            nat_gateways: if production { AZ_COUNT } else { 1 },
            production,
            db: DbSettings {
                instance_class: if production {
                    "db.r6g.large"
                } else {
                    "db.t4g.micro"
                }
                .into(),
                allocated_storage_gib: if production { 100 } else { 20 },
                engine_version: "17".into(),
                multi_az: production,
            },
            deletion_protection: production,
            functions: FunctionSettings {
                validator_concurrency: production.then_some(100),
                processor_concurrency: production.then_some(50),
                audit_logger_concurrency: production.then_some(10),
            },
            api: ApiSettings {
                rate_limit: if production { 500.0 } else { 50.0 },
                burst_limit: if production { 1000 } else { 100 },
                daily_quota: if production { 1_000_000 } else { 10_000 },
            },
            alert_email: "ops@company.com".into(),
            state: None,
            audit_bucket_tls_only: true,
            event_source_mappings: true,
            state_bucket_owner: None,
            log_retention_days: if production { 365 } else { 90 },
            waf: production,
            waf_rate_limit: if production { 30_000 } else { 3_000 },
            rollout: RolloutSettings {
                canary_percent: if production { 10.0 } else { 0.0 },
                bake: std::time::Duration::from_secs(600),
                max_errors: 0.0,
                max_throttles: 0.0,
                versions_kept: 5,
            },
        }
    }
}

/// One table of overrides in `payctl.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Only under `[env.NAME]`: this environment is a production environment.
    pub production: Option<bool>,
    pub vpc_cidr: Option<String>,
    pub nat_gateways: Option<i64>,
    pub db_instance_class: Option<String>,
    pub db_allocated_storage: Option<i64>,
    pub db_engine_version: Option<String>,
    pub db_multi_az: Option<bool>,
    pub deletion_protection: Option<bool>,
    /// 0 removes the reservation.
    pub validator_reserved_concurrency: Option<i64>,
    pub processor_reserved_concurrency: Option<i64>,
    pub audit_logger_reserved_concurrency: Option<i64>,
    pub api_rate_limit: Option<f64>,
    pub api_burst_limit: Option<i64>,
    pub api_daily_quota: Option<i64>,
    pub alert_email: Option<String>,
    /// `s3://BUCKET[/PREFIX]`: the state lives in S3.
    pub state: Option<String>,
    pub audit_bucket_tls_only: Option<bool>,
    pub event_source_mappings: Option<bool>,
    /// The S3 state bucket's account, when it is not the caller's.
    pub state_bucket_owner: Option<String>,
    pub log_retention_days: Option<i64>,
    pub waf: Option<bool>,
    pub waf_rate_limit: Option<i64>,
    /// Production: the canary's share in percent (1 to 50). Elsewhere 0 (at once) or
    /// a canary like production's.
    pub canary_percent: Option<f64>,
    pub canary_bake_seconds: Option<i64>,
    pub canary_max_errors: Option<i64>,
    pub canary_max_throttles: Option<i64>,
    pub versions_kept: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub defaults: Overrides,
    #[serde(default)]
    pub env: BTreeMap<String, Overrides>,
}

impl ConfigFile {
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::Config(format!("{origin}: {}", crate::error::one_line(e.message())))
        })
    }

    /// Reads `path`; a missing file is an error only when the user named it.
    pub fn load(path: &Path, explicit: bool) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(e) => Err(Error::Config(format!("{}: {e}", path.display()))),
        }
    }

    pub fn settings_for(&self, env: &str) -> Result<Settings> {
        let mut s = Settings::profile(self.is_production(env)?);
        apply(&mut s, &self.defaults, "[defaults]")?;
        if let Some(o) = self.env.get(env) {
            apply(&mut s, o, &format!("[env.{env}]"))?;
        }
        Ok(s)
    }
}

impl ConfigFile {
    /// Whether `env` is a production environment: `prod`, or `production = true` in its
    /// own table. `[defaults]` may not say it, and `prod` may not say otherwise.
    pub fn is_production(&self, env: &str) -> Result<bool> {
        if self.defaults.production.is_some() {
            return Err(Error::Config(
                "[defaults] production is not allowed: mark each production environment with `production = true` under its own [env.NAME] table".into(),
            ));
        }
        let own = self.env.get(env).and_then(|o| o.production);
        if env == PROD_ENV && own == Some(false) {
            return Err(Error::Config(format!(
                "[env.{PROD_ENV}] production = false is refused: the environment named {PROD_ENV} is always a production environment"
            )));
        }
        Ok(env == PROD_ENV || own == Some(true))
    }
}

fn apply(s: &mut Settings, o: &Overrides, table: &str) -> Result<()> {
    if let Some(cidr) = &o.vpc_cidr {
        let net: Ipv4Net = cidr.parse().map_err(|_| {
            Error::Config(format!(
                "{table} vpc_cidr {cidr:?} is not an IPv4 CIDR block"
            ))
        })?;
        if net.network() != net.addr() {
            return Err(Error::Config(format!(
                "{table} vpc_cidr {cidr:?} has host bits set (did you mean {}?)",
                net.trunc()
            )));
        }
        if !(16..=24).contains(&net.prefix_len()) {
            return Err(Error::Config(format!(
                "{table} vpc_cidr {cidr:?} must be between /16 and /24"
            )));
        }
        s.vpc_cidr = net;
    }
    if let Some(n) = o.nat_gateways {
        if !(1..=AZ_COUNT as i64).contains(&n) {
            return Err(Error::Config(format!(
                "{table} nat_gateways = {n} must be between 1 and {AZ_COUNT}"
            )));
        }
        s.nat_gateways = n as usize;
    }
    if let Some(class) = &o.db_instance_class {
        if !class.starts_with("db.") || class.split('.').count() != 3 {
            return Err(Error::Config(format!(
                "{table} db_instance_class {class:?} is not an RDS instance class such as db.t4g.micro"
            )));
        }
        s.db.instance_class = class.clone();
    }
    if let Some(gib) = o.db_allocated_storage {
        if !(20..=65536).contains(&gib) {
            return Err(Error::Config(format!(
                "{table} db_allocated_storage = {gib} must be between 20 and 65536 (GiB)"
            )));
        }
        s.db.allocated_storage_gib = gib as i32;
    }
    if let Some(v) = &o.db_engine_version {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(Error::Config(format!(
                "{table} db_engine_version {v:?} is not a PostgreSQL version such as \"17\""
            )));
        }
        s.db.engine_version = v.clone();
    }
    if let Some(days) = o.log_retention_days {
        if !LOG_RETENTION_VALUES.iter().any(|v| i64::from(*v) == days) {
            return Err(Error::Config(format!(
                "{table} log_retention_days = {days} is not a CloudWatch Logs retention period (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)"
            )));
        }
        if s.production && days < 365 {
            return Err(Error::Config(format!(
                "{table} log_retention_days = {days} is refused for a production environment: it keeps logs at least 365 days (PCI DSS 10.5.1)"
            )));
        }
        s.log_retention_days = days as i32;
    }
    if let Some(m) = o.db_multi_az {
        s.db.multi_az = m;
    }
    if let Some(d) = o.deletion_protection {
        s.deletion_protection = d;
    }
    let f = &mut s.functions;
    for (key, value, slot) in [
        (
            "validator_reserved_concurrency",
            o.validator_reserved_concurrency,
            &mut f.validator_concurrency,
        ),
        (
            "processor_reserved_concurrency",
            o.processor_reserved_concurrency,
            &mut f.processor_concurrency,
        ),
        (
            "audit_logger_reserved_concurrency",
            o.audit_logger_reserved_concurrency,
            &mut f.audit_logger_concurrency,
        ),
    ] {
        if let Some(n) = value {
            if !(0..=10_000).contains(&n) {
                return Err(Error::Config(format!(
                    "{table} {key} = {n} must be between 0 (no reservation) and 10000"
                )));
            }
            *slot = (n > 0).then_some(n as i32);
        }
    }
    if let Some(r) = o.api_rate_limit {
        if !(r.is_finite() && r > 0.0 && r <= 10_000.0) {
            return Err(Error::Config(format!(
                "{table} api_rate_limit = {r} must be above 0 and at most 10000 (requests per second)"
            )));
        }
        s.api.rate_limit = r;
    }
    if let Some(b) = o.api_burst_limit {
        if !(1..=5_000).contains(&b) {
            return Err(Error::Config(format!(
                "{table} api_burst_limit = {b} must be between 1 and 5000"
            )));
        }
        s.api.burst_limit = b as i32;
    }
    if let Some(q) = o.api_daily_quota {
        if !(1..=i32::MAX as i64).contains(&q) {
            return Err(Error::Config(format!(
                "{table} api_daily_quota = {q} must be between 1 and {}",
                i32::MAX
            )));
        }
        s.api.daily_quota = q as i32;
    }
    if let Some(email) = &o.alert_email {
        let valid = email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }) && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.matches('@').count() == 1;
        if !valid {
            return Err(Error::Config(format!(
                "{table} alert_email {email:?} is not an e-mail address"
            )));
        }
        s.alert_email = email.clone();
    }
    if let Some(url) = &o.state {
        crate::state::s3::S3Url::parse(url)
            .map_err(|e| Error::Config(format!("{table} state: {e}")))?;
        s.state = Some(url.clone());
    }
    if let Some(tls_only) = o.audit_bucket_tls_only {
        if !tls_only && s.production {
            return Err(Error::Config(format!(
                "{table} audit_bucket_tls_only = false is refused for a production environment"
            )));
        }
        s.audit_bucket_tls_only = tls_only;
    }
    if let Some(mappings) = o.event_source_mappings {
        if !mappings && s.production {
            return Err(Error::Config(format!(
                "{table} event_source_mappings = false is refused for a production environment"
            )));
        }
        s.event_source_mappings = mappings;
    }
    if let Some(waf) = o.waf {
        if !waf && s.production {
            return Err(Error::Config(format!(
                "{table} waf = false is refused for a production environment: its API is always behind a WAF web ACL (FSBP APIGateway.4)"
            )));
        }
        s.waf = waf;
    }
    if let Some(limit) = o.waf_rate_limit {
        if !WAF_RATE_LIMITS.contains(&limit) {
            return Err(Error::Config(format!(
                "{table} waf_rate_limit = {limit} must be between {} and {} (requests per IP in 5 minutes)",
                WAF_RATE_LIMITS.start(),
                WAF_RATE_LIMITS.end()
            )));
        }
        s.waf_rate_limit = limit;
    }
    apply_rollout(&mut s.rollout, o, table, s.production)?;
    if let Some(owner) = &o.state_bucket_owner {
        s.state_bucket_owner = Some(account_id(owner, &format!("{table} state_bucket_owner"))?);
    }
    Ok(())
}

fn apply_rollout(
    r: &mut RolloutSettings,
    o: &Overrides,
    table: &str,
    production: bool,
) -> Result<()> {
    if let Some(p) = o.canary_percent {
        let at_once = p == 0.0 && !production;
        if !(at_once || CANARY_PERCENTS.contains(&p)) {
            let zero = if production { "" } else { "0 (at once) or " };
            return Err(Error::Config(format!(
                "{table} canary_percent = {p} must be {zero}between 1 and 50 (percent of the traffic)"
            )));
        }
        r.canary_percent = p;
    }
    if let Some(secs) = o.canary_bake_seconds {
        if !(1..=86_400).contains(&secs) {
            return Err(Error::Config(format!(
                "{table} canary_bake_seconds = {secs} must be between 1 and 86400"
            )));
        }
        r.bake = std::time::Duration::from_secs(secs as u64);
    }
    for (key, value, slot) in [
        ("canary_max_errors", o.canary_max_errors, &mut r.max_errors),
        (
            "canary_max_throttles",
            o.canary_max_throttles,
            &mut r.max_throttles,
        ),
    ] {
        if let Some(n) = value {
            if !(0..=1_000_000).contains(&n) {
                return Err(Error::Config(format!(
                    "{table} {key} = {n} must be between 0 and 1000000"
                )));
            }
            *slot = n as f64;
        }
    }
    if let Some(n) = o.versions_kept {
        if !(1..=100).contains(&n) {
            return Err(Error::Config(format!(
                "{table} versions_kept = {n} must be between 1 and 100"
            )));
        }
        r.versions_kept = n as usize;
    }
    Ok(())
}

/// `value` when it is an AWS account id (12 digits); else an error naming `origin`.
pub fn account_id(value: &str, origin: &str) -> Result<String> {
    if value.len() == 12 && value.chars().all(|c| c.is_ascii_digit()) {
        return Ok(value.to_string());
    }
    Err(Error::Config(format!(
        "{origin} {value:?} is not an AWS account id (12 digits)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_rolls_out_through_a_canary_and_other_envs_at_once_unless_told() {
        let prod = Settings::builtin("prod").rollout;
        assert_eq!((prod.canary_percent, prod.bake.as_secs()), (10.0, 600));
        assert_eq!(Settings::builtin("dev").rollout.canary_percent, 0.0);
        let file = ConfigFile::parse(
            "[env.qa]\ncanary_percent = 20\ncanary_bake_seconds = 5\nversions_kept = 2\n[env.prod]\ncanary_percent = 0\n",
            "payctl.toml",
        )
        .unwrap();
        let qa = file.settings_for("qa").unwrap().rollout;
        assert_eq!(
            (qa.canary_percent, qa.bake.as_secs(), qa.versions_kept),
            (20.0, 5, 2)
        );
        let err = file.settings_for("prod").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid configuration: [env.prod] canary_percent = 0 must be between 1 and 50 (percent of the traffic)"
        );
        let bad = ConfigFile::parse("[defaults]\nversions_kept = 0\n", "payctl.toml").unwrap();
        let err = bad.settings_for("dev").unwrap_err().to_string();
        assert!(
            err.contains("versions_kept = 0 must be between 1 and 100"),
            "{err}"
        );
    }

    #[test]
    fn the_web_acl_is_on_in_production_only_and_may_be_turned_on_elsewhere() {
        assert!(Settings::builtin("prod").waf);
        assert!(!Settings::builtin("dev").waf);
        assert_eq!(Settings::builtin("prod").waf_rate_limit, 30_000);
        let file = ConfigFile::parse(
            "[env.qa]\nwaf = true\nwaf_rate_limit = 500\n[env.prod]\nwaf = false\n",
            "payctl.toml",
        )
        .unwrap();
        let qa = file.settings_for("qa").unwrap();
        assert!(qa.waf);
        assert_eq!(qa.waf_rate_limit, 500);
        let err = file.settings_for("prod").unwrap_err().to_string();
        assert!(err.contains("waf = false is refused"), "{err}");
        let low = ConfigFile::parse("[env.qa]\nwaf_rate_limit = 9\n", "payctl.toml").unwrap();
        let err = low.settings_for("qa").unwrap_err().to_string();
        assert!(
            err.contains("waf_rate_limit = 9 must be between 10"),
            "{err}"
        );
    }

    #[test]
    fn the_tls_only_policy_and_the_mappings_can_be_turned_off_outside_prod_only() {
        let file = ConfigFile::parse(
            "[env.dev]\naudit_bucket_tls_only = false\n[env.prod]\naudit_bucket_tls_only = false\n",
            "payctl.toml",
        )
        .unwrap();
        assert!(!file.settings_for("dev").unwrap().audit_bucket_tls_only);
        assert!(Settings::builtin("qa").audit_bucket_tls_only);
        let err = file.settings_for("prod").unwrap_err().to_string();
        assert!(err.contains("audit_bucket_tls_only"), "{err}");
        let file = ConfigFile::parse(
            "[env.dev]\nevent_source_mappings = false\n[env.prod]\nevent_source_mappings = false\n",
            "payctl.toml",
        )
        .unwrap();
        assert!(!file.settings_for("dev").unwrap().event_source_mappings);
        assert!(Settings::builtin("qa").event_source_mappings);
        let err = file.settings_for("prod").unwrap_err().to_string();
        assert!(err.contains("event_source_mappings"), "{err}");
    }

    #[test]
    fn production_is_prod_or_an_env_that_says_so_in_its_own_table() {
        let file = ConfigFile::parse(
            "[env.live]\nproduction = true\n[env.qa]\nproduction = false\n",
            "payctl.toml",
        )
        .unwrap();
        let live = file.settings_for("live").unwrap();
        assert!(live.production);
        assert!(live.db.multi_az && live.deletion_protection);
        assert_eq!(live.nat_gateways, AZ_COUNT);
        assert_eq!(live.functions.processor_concurrency, Some(50));
        assert_eq!(live.api.rate_limit, 500.0);
        assert!(!file.settings_for("qa").unwrap().production);
        assert!(!file.settings_for("prod-eu").unwrap().production);
        assert!(file.settings_for("prod").unwrap().production);
        // The production guards on settings apply to an env that opted in.
        let file = ConfigFile::parse(
            "[env.live]\nproduction = true\naudit_bucket_tls_only = false\n",
            "payctl.toml",
        )
        .unwrap();
        let err = file.settings_for("live").unwrap_err().to_string();
        assert!(
            err.contains("refused for a production environment"),
            "{err}"
        );
    }

    #[test]
    fn production_is_refused_under_defaults_and_false_for_prod() {
        let file = ConfigFile::parse("[defaults]\nproduction = true\n", "payctl.toml").unwrap();
        let err = file.settings_for("dev").unwrap_err().to_string();
        assert!(
            err.contains("[defaults] production is not allowed"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let file = ConfigFile::parse("[env.prod]\nproduction = false\n", "payctl.toml").unwrap();
        let err = file.settings_for("prod").unwrap_err().to_string();
        assert!(err.contains("production = false is refused"), "{err}");
        // Other environments are unaffected by prod's table.
        assert!(!file.settings_for("dev").unwrap().production);
    }

    #[test]
    fn log_retention_is_a_year_in_production_and_configurable_within_cloudwatch_values() {
        assert_eq!(Settings::builtin("prod").log_retention_days, 365);
        assert_eq!(Settings::builtin("dev").log_retention_days, 90);
        let c = ConfigFile::parse(
            "[env.dev]\nlog_retention_days = 30\n[env.prod]\nlog_retention_days = 731\n",
            "payctl.toml",
        )
        .unwrap();
        assert_eq!(c.settings_for("dev").unwrap().log_retention_days, 30);
        assert_eq!(c.settings_for("prod").unwrap().log_retention_days, 731);
        let odd = ConfigFile::parse("[env.dev]\nlog_retention_days = 100\n", "payctl.toml");
        let err = odd.unwrap().settings_for("dev").unwrap_err().to_string();
        assert!(
            err.contains("log_retention_days = 100 is not a CloudWatch Logs retention period"),
            "{err}"
        );
        let short = ConfigFile::parse("[env.prod]\nlog_retention_days = 90\n", "payctl.toml");
        let err = short.unwrap().settings_for("prod").unwrap_err().to_string();
        assert!(
            err.contains("refused for a production environment"),
            "{err}"
        );
    }

    #[test]
    fn builtin_prod_is_stricter() {
        assert_eq!(Settings::builtin("prod").nat_gateways, 3);
        assert!(Settings::builtin("prod").production);
        assert_eq!(Settings::builtin("dev").nat_gateways, 1);
        assert_eq!(Settings::builtin("dev").vpc_cidr.to_string(), "10.0.0.0/16");
        let (prod, dev) = (Settings::builtin("prod"), Settings::builtin("dev"));
        assert!(prod.db.multi_az && prod.deletion_protection);
        assert!(!dev.db.multi_az && !dev.deletion_protection);
    }

    #[test]
    fn env_table_overrides_defaults_table() {
        let c = ConfigFile::parse(
            "[defaults]\nvpc_cidr = \"10.9.0.0/16\"\nnat_gateways = 2\n[env.qa]\nnat_gateways = 3\n",
            "t",
        )
        .unwrap();
        let qa = c.settings_for("qa").unwrap();
        assert_eq!(
            (qa.vpc_cidr.to_string().as_str(), qa.nat_gateways),
            ("10.9.0.0/16", 3)
        );
        assert_eq!(c.settings_for("dev").unwrap().nat_gateways, 2);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let cases = [
            ("[defaults]\nnat_gatways = 1\n", "nat_gatways"),
            ("[defaults]\nnat_gateways = \"two\"\n", "invalid type"),
            (
                "[env.dev]\nvpc_cidr = \"10.0.0.0/33\"\n",
                "not an IPv4 CIDR",
            ),
            ("[env.dev]\nvpc_cidr = \"10.0.0.1/16\"\n", "host bits"),
            (
                "[env.dev]\nvpc_cidr = \"10.0.0.0/8\"\n",
                "between /16 and /24",
            ),
            ("[env.dev]\nnat_gateways = 0\n", "between 1 and 3"),
            ("[surprise]\n", "surprise"),
            (
                "[env.dev]\ndb_instance_class = \"large\"\n",
                "db_instance_class",
            ),
            (
                "[env.dev]\ndb_allocated_storage = 5\n",
                "between 20 and 65536",
            ),
            ("[env.dev]\ndb_multi_az = \"yes\"\n", "invalid type"),
            (
                "[env.dev]\nprocessor_reserved_concurrency = -1\n",
                "processor_reserved_concurrency",
            ),
            ("[env.dev]\napi_rate_limit = 0.0\n", "api_rate_limit"),
            ("[env.dev]\napi_burst_limit = 0\n", "api_burst_limit"),
            ("[env.dev]\napi_daily_quota = 0\n", "api_daily_quota"),
            (
                "[env.dev]\nalert_email = \"ops\"\n",
                "not an e-mail address",
            ),
            (
                "[env.dev]\nalert_email = \"a@b@c.com\"\n",
                "not an e-mail address",
            ),
            (
                "[defaults]\nstate = \"s3://Bad_Bucket/x\"\n",
                "[defaults] state: invalid state location",
            ),
        ];
        for (text, want) in cases {
            let err = ConfigFile::parse(text, "payctl.toml")
                .and_then(|c| c.settings_for("dev"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?} gave {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn function_and_api_settings_are_configurable() {
        let (prod, dev) = (Settings::builtin("prod"), Settings::builtin("dev"));
        assert_eq!(prod.functions.processor_concurrency, Some(50));
        assert_eq!(dev.functions.processor_concurrency, None);
        assert_eq!(dev.alert_email, "ops@company.com");
        let c = ConfigFile::parse(
            "[env.prod]\nprocessor_reserved_concurrency = 0\nvalidator_reserved_concurrency = 7\napi_rate_limit = 12.5\napi_burst_limit = 20\napi_daily_quota = 300\nalert_email = \"pager@example.org\"\n",
            "t",
        )
        .unwrap();
        let p = c.settings_for("prod").unwrap();
        assert_eq!(p.functions.processor_concurrency, None);
        assert_eq!(p.functions.validator_concurrency, Some(7));
        assert_eq!(p.functions.audit_logger_concurrency, Some(10));
        assert_eq!(
            p.api,
            ApiSettings {
                rate_limit: 12.5,
                burst_limit: 20,
                daily_quota: 300
            }
        );
        assert_eq!(p.alert_email, "pager@example.org");
    }

    #[test]
    fn the_state_location_comes_from_defaults_or_the_env_table() {
        let c = ConfigFile::parse(
            "[defaults]\nstate = \"s3://team-state/payctl\"\n[env.qa]\nstate = \"s3://qa-state\"\n",
            "t",
        )
        .unwrap();
        let dev = c.settings_for("dev").unwrap().state;
        assert_eq!(dev.as_deref(), Some("s3://team-state/payctl"));
        assert_eq!(
            c.settings_for("qa").unwrap().state.as_deref(),
            Some("s3://qa-state")
        );
        assert_eq!(Settings::builtin("dev").state, None);
    }

    #[test]
    fn the_state_bucket_owner_is_an_account_id() {
        let c = ConfigFile::parse(
            "[defaults]\nstate_bucket_owner = \"111122223333\"\n[env.qa]\nstate_bucket_owner = \"444455556666\"\n",
            "t",
        )
        .unwrap();
        let owner = |env: &str| c.settings_for(env).unwrap().state_bucket_owner;
        assert_eq!(owner("dev").as_deref(), Some("111122223333"));
        assert_eq!(owner("qa").as_deref(), Some("444455556666"));
        assert_eq!(Settings::builtin("dev").state_bucket_owner, None);
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            let text = format!("[env.dev]\nstate_bucket_owner = \"{bad}\"\n");
            let err = ConfigFile::parse(&text, "payctl.toml")
                .and_then(|c| c.settings_for("dev"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("[env.dev] state_bucket_owner") && err.contains("12 digits"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn missing_file_is_fine_unless_named() {
        let p = Path::new("/nonexistent/payctl.toml");
        assert!(ConfigFile::load(p, false).is_ok());
        assert!(ConfigFile::load(p, true).is_err());
    }
}
