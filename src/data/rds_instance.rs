//! The PostgreSQL instance `payment-db-<env>`.
//!
//! Encrypted with the RDS key, master password managed by RDS in Secrets Manager (payctl
//! never sees it; state and outputs hold the secret's ARN only), 30-day backups, minor
//! upgrades on, the PostgreSQL log exported, tags copied to snapshots, private only.
//! Multi-AZ and deletion protection follow the settings (on in prod). `wait` holds only
//! what depends on the database; `down` lifts deletion protection (a confirmed `down`
//! only) and deletes with a final snapshot `payment-db-<env>-final-<timestamp>`, which is
//! kept (recorded as `rds_snapshot.<name>` and listed with its restore command), and so
//! is the RDS key that encrypts it (see `kms_key`).

use super::rds_subnet_group::{self, rds_owned, rds_tags};
use crate::engine::report::{Change, Kept};
use crate::engine::{Ctx, Direction, Resource};
use crate::error::{Error, Result, aws};
use crate::network::security_group;
use crate::security::kms_key;
use crate::state::Record;
use crate::waiter::{Status, Wait, wait_for};
use async_trait::async_trait;
use aws_sdk_rds::error::SdkError;
use aws_sdk_rds::operation::describe_db_instances::DescribeDBInstancesError;
use aws_sdk_rds::types::{CloudwatchLogsExportConfiguration, DbInstance as Instance};

pub const KIND: &str = "rds_instance";
/// The kind of the state records of kept final snapshots (`rds_snapshot.<name>`).
pub const SNAPSHOT_KIND: &str = "rds_snapshot";
pub const ADDR: &str = "rds_instance.main";
pub const BACKUP_RETENTION_DAYS: i32 = 30;
pub const LOG_EXPORT: &str = "postgresql";
const MASTER_USER: &str = "payments_admin";
pub const DB_NAME: &str = "payments";
/// Real Multi-AZ creation takes 15–20 minutes; deletion with a snapshot about as long.
const READY_WAIT: Wait = Wait::minutes(45);

#[derive(Default)]
pub struct DbInstance {
    /// This run found the instance available and changed nothing: no need to wait.
    ready: std::sync::atomic::AtomicBool,
}

fn not_found(e: &SdkError<DescribeDBInstancesError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_db_instance_not_found_fault())
}

async fn find(ctx: &Ctx, id: &str) -> Result<Option<Instance>> {
    match ctx
        .aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(aws("DescribeDBInstances", id)(e)),
    }
}

async fn check_owned(ctx: &Ctx, db: &Instance, id: &str) -> Result<()> {
    let owned = ctx.owns(
        db.tag_list()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    );
    if owned || rds_owned(ctx, db.db_instance_arn().unwrap_or_default()).await? {
        return Ok(());
    }
    Err(Error::not_owned(format!("DB instance {id}"), &ctx.env))
}

fn needed(ctx: &Ctx, addr: &str) -> Result<String> {
    ctx.state.id(addr).ok_or_else(|| {
        Error::Invalid(format!(
            "{addr} is not in the state file; run `payctl up` again"
        ))
    })
}

fn record(db: &Instance, id: &str) -> Record {
    let mut r = Record::new(KIND, id);
    r.arn = db.db_instance_arn().map(str::to_string);
    if let Some(secret) = db.master_user_secret().and_then(|s| s.secret_arn()) {
        r = r.attr("secret_arn", secret);
    }
    if let Some(ep) = db.endpoint()
        && let (Some(host), Some(port)) = (ep.address(), ep.port())
    {
        r = r.attr("endpoint", format!("{host}:{port}"));
    }
    r
}

/// Puts drifted settings back; returns the names of what changed.
async fn converge(ctx: &Ctx, db: &Instance, id: &str) -> Result<Vec<&'static str>> {
    let s = &ctx.settings;
    let mut call = ctx
        .aws
        .rds
        .modify_db_instance()
        .db_instance_identifier(id)
        .apply_immediately(true);
    let mut changed = Vec::new();
    if db.backup_retention_period() != Some(BACKUP_RETENTION_DAYS) {
        ctx.apply(
            ADDR,
            "backup retention (days)",
            opt(db.backup_retention_period()),
            BACKUP_RETENTION_DAYS,
        );
        call = call.backup_retention_period(BACKUP_RETENTION_DAYS);
        changed.push("backup retention");
    }
    if db.multi_az() != Some(s.db.multi_az) {
        ctx.apply(ADDR, "multi-AZ", opt(db.multi_az()), s.db.multi_az);
        call = call.multi_az(s.db.multi_az);
        changed.push("multi-AZ");
    }
    if db.deletion_protection() != Some(s.deletion_protection) {
        ctx.apply(
            ADDR,
            "deletion protection",
            opt(db.deletion_protection()),
            s.deletion_protection,
        );
        call = call.deletion_protection(s.deletion_protection);
        changed.push("deletion protection");
    }
    if db.auto_minor_version_upgrade() != Some(true) {
        ctx.apply(
            ADDR,
            "minor version upgrades",
            opt(db.auto_minor_version_upgrade()),
            true,
        );
        call = call.auto_minor_version_upgrade(true);
        changed.push("minor version upgrades");
    }
    if db.copy_tags_to_snapshot() != Some(true) {
        ctx.apply(
            ADDR,
            "copy tags to snapshot",
            opt(db.copy_tags_to_snapshot()),
            true,
        );
        call = call.copy_tags_to_snapshot(true);
        changed.push("copy tags to snapshot");
    }
    if db.publicly_accessible() == Some(true) {
        ctx.apply(ADDR, "publicly accessible", true, false);
        call = call.publicly_accessible(false);
        changed.push("public accessibility");
    }
    if !db
        .enabled_cloudwatch_logs_exports()
        .iter()
        .any(|l| l == LOG_EXPORT)
    {
        let logs = CloudwatchLogsExportConfiguration::builder()
            .enable_log_types(LOG_EXPORT)
            .build();
        call = call.cloudwatch_logs_export_configuration(logs);
        ctx.apply(
            ADDR,
            "log export",
            db.enabled_cloudwatch_logs_exports().join(", "),
            LOG_EXPORT,
        );
        changed.push("log export");
    }
    if db.db_instance_class() != Some(s.db.instance_class.as_str()) {
        call = call.db_instance_class(&s.db.instance_class);
        ctx.apply(
            ADDR,
            "instance class",
            opt(db.db_instance_class()),
            &s.db.instance_class,
        );
        changed.push("instance class");
    }
    if db
        .allocated_storage()
        .is_some_and(|g| g < s.db.allocated_storage_gib)
    {
        call = call.allocated_storage(s.db.allocated_storage_gib);
        ctx.apply(
            ADDR,
            "allocated storage (GiB)",
            opt(db.allocated_storage()),
            s.db.allocated_storage_gib,
        );
        changed.push("allocated storage");
    }
    // On `plan`, each setting above was noted by `ctx.apply` and nothing is sent.
    if !changed.is_empty() && !ctx.planning() {
        call.send().await.map_err(aws("ModifyDBInstance", id))?;
    }
    Ok(changed)
}

/// A setting as AWS reported it, for `plan` (`unset` when it did not say).
fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "unset".to_string(), |v| v.to_string())
}

async fn create(ctx: &Ctx, id: &str) -> Result<Instance> {
    let s = &ctx.settings;
    let key = needed(ctx, &kms_key::address("rds"))?;
    let sg = needed(ctx, &security_group::address("rds"))?;
    let group = needed(ctx, rds_subnet_group::ADDR)?;
    let out = ctx
        .aws
        .rds
        .create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .engine_version(&s.db.engine_version)
        .db_instance_class(&s.db.instance_class)
        .allocated_storage(s.db.allocated_storage_gib)
        .storage_type("gp3")
        .db_name(DB_NAME)
        .master_username(MASTER_USER)
        .manage_master_user_password(true)
        .master_user_secret_kms_key_id(&key)
        .db_subnet_group_name(group)
        .vpc_security_group_ids(sg)
        .publicly_accessible(false)
        .storage_encrypted(true)
        .kms_key_id(&key)
        .backup_retention_period(BACKUP_RETENTION_DAYS)
        .auto_minor_version_upgrade(true)
        .enable_cloudwatch_logs_exports(LOG_EXPORT)
        .copy_tags_to_snapshot(true)
        .multi_az(s.db.multi_az)
        .deletion_protection(s.deletion_protection)
        .set_tags(Some(rds_tags(ctx)))
        .send()
        .await
        .map_err(aws("CreateDBInstance", id))?;
    out.db_instance()
        .cloned()
        .ok_or_else(|| Error::Invalid("CreateDBInstance returned no instance".into()))
}

fn final_snapshot_name(ctx: &Ctx) -> String {
    format!(
        "{}-final-{}",
        ctx.name("db"),
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    )
}

/// Records the final snapshot `name` in the state and among the kept things.
async fn keep_snapshot(ctx: &Ctx, name: &str) -> Result<()> {
    let arn = format!(
        "arn:aws:rds:{}:{}:snapshot:{name}",
        ctx.region, ctx.account_id
    );
    ctx.record(
        &format!("{SNAPSHOT_KIND}.{name}"),
        Record::new(SNAPSHOT_KIND, name)
            .arn(&arn)
            .attr("db_instance", ctx.name("db")),
    )
    .await?;
    ctx.report.keep(
        &format!("{SNAPSHOT_KIND}.{name}"),
        Kept {
            what: format!("RDS final snapshot {name}"),
            id: arn,
            why: format!("the last copy of the database of environment {}", ctx.env),
            restore: format!(
                "after `payctl up --env {env}`: `aws rds restore-db-instance-from-db-snapshot --db-snapshot-identifier {name} --db-instance-identifier {db}-restored --db-subnet-group-name {group} --vpc-security-group-ids <the RDS security group>` (docs/teardown.md)",
                env = ctx.env,
                db = ctx.name("db"),
                group = ctx.name("db-subnets"),
            ),
            remove: format!("`aws rds delete-db-snapshot --db-snapshot-identifier {name}`"),
        },
    );
    Ok(())
}

#[async_trait]
impl Resource for DbInstance {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[rds_subnet_group::KIND, security_group::KIND, kms_key::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let id = ctx.name("db");
        let (db, mut change) = match find(ctx, &id).await? {
            Some(db) => {
                check_owned(ctx, &db, &id).await?;
                if db.db_instance_status() == Some("deleting") {
                    return Err(Error::Invalid(format!(
                        "DB instance {id} is being deleted; wait for it to go, then run `payctl up` again"
                    )));
                }
                if db.storage_encrypted() != Some(true) {
                    return Err(Error::Invalid(format!(
                        "DB instance {id} is not encrypted and cannot be encrypted in place"
                    )));
                }
                let change = if ctx.state.get(ADDR).is_some() {
                    Change::Unchanged
                } else {
                    Change::Adopted
                };
                (db, change)
            }
            None if !ctx.would_create(format!("{ADDR} {id}")) => return Ok(()),
            None => (create(ctx, &id).await?, Change::Created),
        };
        ctx.record(ADDR, record(&db, &id)).await?;
        if change != Change::Created {
            let changed = converge(ctx, &db, &id).await?;
            let ready = changed.is_empty() && db.db_instance_status() == Some("available");
            self.ready.store(ready, std::sync::atomic::Ordering::SeqCst);
            if !changed.is_empty() {
                tracing::info!("DB instance {id}: put back {}", changed.join(", "));
                if change == Change::Unchanged {
                    change = Change::Updated;
                }
            }
        }
        ctx.report.note(change, format!("{ADDR} {id}"));
        Ok(())
    }

    async fn wait(&self, ctx: &Ctx, direction: Direction) -> Result<()> {
        let id = ctx.name("db");
        match direction {
            Direction::Up if self.ready.load(std::sync::atomic::Ordering::SeqCst) => {}
            Direction::Up => {
                let db = wait_for(
                    &format!("DB instance {id} to be available"),
                    READY_WAIT,
                    || async {
                        let Some(db) = find(ctx, &id).await? else {
                            return Err(Error::Invalid(format!(
                                "DB instance {id} disappeared while starting; run `payctl up` again"
                            )));
                        };
                        match db.db_instance_status() {
                            Some("available") => Ok(Status::Ready(db)),
                            Some(
                                s @ ("failed"
                                | "incompatible-parameters"
                                | "incompatible-network"
                                | "storage-full"),
                            ) => Err(Error::Invalid(format!("DB instance {id} is {s}"))),
                            s => Ok(Status::Pending(s.unwrap_or("unknown").to_string())),
                        }
                    },
                )
                .await?;
                ctx.record(ADDR, record(&db, &id)).await?;
            }
            Direction::Down => {
                wait_for(
                    &format!("DB instance {id} to be deleted"),
                    READY_WAIT,
                    || async {
                        Ok(match find(ctx, &id).await? {
                            None => Status::Ready(()),
                            Some(db) => Status::Pending(
                                db.db_instance_status().unwrap_or("deleting").to_string(),
                            ),
                        })
                    },
                )
                .await?;
                ctx.forget(ADDR).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let id = ctx.name("db");
        let Some(db) = find(ctx, &id).await? else {
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        check_owned(ctx, &db, &id).await?;
        if db.db_instance_status() == Some("deleting") {
            return Ok(());
        }
        if db.deletion_protection() == Some(true) {
            // Only reached from a confirmed `down`.
            let call = ctx
                .aws
                .rds
                .modify_db_instance()
                .db_instance_identifier(&id)
                .deletion_protection(false)
                .apply_immediately(true);
            call.send().await.map_err(aws("ModifyDBInstance", &id))?;
            tracing::info!("lifted deletion protection on DB instance {id}");
        }
        let skip = ctx.options.skip_final_snapshot && !ctx.settings.production;
        let mut call = ctx
            .aws
            .rds
            .delete_db_instance()
            .db_instance_identifier(&id)
            .skip_final_snapshot(skip);
        let snapshot = (!skip).then(|| final_snapshot_name(ctx));
        if let Some(name) = &snapshot {
            call = call.final_db_snapshot_identifier(name);
        }
        call.send().await.map_err(aws("DeleteDBInstance", &id))?;
        let how = match &snapshot {
            Some(name) => {
                keep_snapshot(ctx, name).await?;
                format!("final snapshot {name}")
            }
            None => "no final snapshot".into(),
        };
        ctx.report
            .note(Change::Deleted, format!("{ADDR} {id} ({how})"));
        Ok(())
    }
}
