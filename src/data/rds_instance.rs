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

use super::rds_parameter_group;
use super::rds_subnet_group::{self, rds_tags};
use super::{Setting, differing, wait_gone_and_forget};
use crate::engine::report::{Change, Kept};
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Direction, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::network::security_group;
use crate::security::kms_key;
use crate::state::Record;
use crate::waiter::{Status, Wait, retry_while, wait_for};
use async_trait::async_trait;
use aws_sdk_rds::operation::modify_db_instance::builders::ModifyDBInstanceFluentBuilder as Modify;
use aws_sdk_rds::types::{CloudwatchLogsExportConfiguration, DbInstance as Instance};

pub const KIND: &str = "rds_instance";
/// The kind of the state records of kept final snapshots (`rds_snapshot.<name>`).
pub const SNAPSHOT_KIND: &str = "rds_snapshot";
pub const ADDR: &str = "rds_instance.main";
pub const BACKUP_RETENTION_DAYS: i32 = 30;
pub const LOG_EXPORT: &str = "postgresql";
/// The certificate authority the server's certificate is signed by, pinned rather than
/// left to RDS's default ("Using SSL/TLS to encrypt a connection to a DB instance",
/// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html>); the
/// functions trust the Amazon RDS CA bundle it belongs to.
pub const CA: &str = "rds-ca-rsa2048-g1";
const MASTER_USER: &str = "payments_admin";
pub const DB_NAME: &str = "payments";
/// Real Multi-AZ creation takes 15–20 minutes; deletion with a snapshot about as long.
const READY_WAIT: Wait = Wait::minutes(45);
const SERVICE: Service = Service::Rds;

#[derive(Default)]
pub struct DbInstance {
    /// This run found the instance available and changed nothing: no need to wait.
    ready: std::sync::atomic::AtomicBool,
}

async fn describe(ctx: &Ctx, id: &str) -> Result<Option<Instance>> {
    let call = ctx
        .aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(id);
    let out = SERVICE.found(call.send().await.map_err(aws("DescribeDBInstances", id)))?;
    Ok(out.and_then(|o| o.db_instances().first().cloned()))
}

/// The instance, by the identifier in state, else by its name.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Instance>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    let name = ctx.name("db");
    find(ctx, ADDR, SERVICE, by_id, || describe(ctx, &name)).await
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

/// A value as AWS reported it (`unset` when it did not say).
fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "unset".to_string(), |v| v.to_string())
}

/// What one setting adds to the `ModifyDBInstance` call that puts it back.
type Fix = Box<dyn FnOnce(Modify) -> Modify + Send>;

fn setting(
    label: &str,
    have: impl std::fmt::Display,
    want: impl std::fmt::Display,
    fix: impl FnOnce(Modify) -> Modify + Send + 'static,
) -> Setting<Fix> {
    Setting::new(label, have, want, Box::new(fix) as Fix)
}

/// The instance's settings, as declarations: as AWS has each, as payctl wants it, and
/// what `ModifyDBInstance` needs to put it back.
fn settings(ctx: &Ctx, db: &Instance) -> Vec<Setting<Fix>> {
    let s = &ctx.settings;
    let pending = db.pending_modified_values();
    let (multi_az, protection) = (s.db.multi_az, s.deletion_protection);
    let class = s.db.instance_class.clone();
    // Storage only grows: less than configured is put up, more is kept.
    let storage = db
        .allocated_storage()
        .map(|g| g.max(s.db.allocated_storage_gib));
    let exports = db.enabled_cloudwatch_logs_exports();
    let logs = if exports.iter().any(|l| l == LOG_EXPORT) {
        LOG_EXPORT.to_string()
    } else if exports.is_empty() {
        "none".to_string()
    } else {
        exports.join(", ")
    };
    let export = CloudwatchLogsExportConfiguration::builder()
        .enable_log_types(LOG_EXPORT)
        .build();
    vec![
        setting(
            "backup retention (days)",
            opt(db.backup_retention_period()),
            BACKUP_RETENTION_DAYS,
            |c| c.backup_retention_period(BACKUP_RETENTION_DAYS),
        ),
        setting("multi-AZ", opt(db.multi_az()), multi_az, move |c| {
            c.multi_az(multi_az)
        }),
        setting(
            "deletion protection",
            opt(db.deletion_protection()),
            protection,
            move |c| c.deletion_protection(protection),
        ),
        setting(
            "minor version upgrades",
            opt(db.auto_minor_version_upgrade()),
            true,
            |c| c.auto_minor_version_upgrade(true),
        ),
        setting(
            "copy tags to snapshot",
            opt(db.copy_tags_to_snapshot()),
            true,
            |c| c.copy_tags_to_snapshot(true),
        ),
        setting(
            "publicly accessible",
            db.publicly_accessible().unwrap_or(false),
            false,
            |c| c.publicly_accessible(false),
        ),
        setting("log export", logs, LOG_EXPORT, |c| {
            c.cloudwatch_logs_export_configuration(export)
        }),
        setting(
            "instance class",
            opt(db.db_instance_class()),
            &s.db.instance_class,
            move |c| c.db_instance_class(class),
        ),
        setting(
            "allocated storage (GiB)",
            opt(db.allocated_storage()),
            opt(storage),
            move |c| c.set_allocated_storage(storage),
        ),
        setting(
            "IAM database authentication",
            opt(pending
                .and_then(|p| p.iam_database_authentication_enabled())
                .or(db.iam_database_authentication_enabled())),
            true,
            |c| c.enable_iam_database_authentication(true),
        ),
    ]
}

/// The settings that take effect only when the instance restarts: the parameter group
/// (attaching one always waits for a reboot) and the CA (RDS restarts the instance to
/// change it). A pending value counts as set.
fn reboot_settings(ctx: &Ctx, db: &Instance) -> Vec<Setting<Fix>> {
    // By name, not by record: `plan` compares before the group is made.
    let group = rds_parameter_group::group_name(ctx);
    let have_group = db
        .db_parameter_groups()
        .iter()
        .find_map(|g| g.db_parameter_group_name());
    let pending = db.pending_modified_values();
    let have_ca = pending
        .and_then(|p| p.ca_certificate_identifier())
        .or(db.ca_certificate_identifier());
    let want_group = group.clone();
    vec![
        setting("parameter group", opt(have_group), &group, move |c| {
            c.db_parameter_group_name(want_group)
        }),
        setting("CA certificate", opt(have_ca), CA, |c| {
            c.ca_certificate_identifier(CA)
        }),
    ]
}

/// What is pending on the instance, as `plan` and `up` show it, each with what applies
/// it: a parameter group whose status is `pending-reboot` takes effect when the instance
/// restarts; a pending CA change in the next maintenance window, or at once with another
/// `ModifyDBInstance` with `ApplyImmediately` ("Rotating your SSL/TLS certificate",
/// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL-certificate-rotation.html>).
pub fn pending_changes(db: &Instance) -> Vec<String> {
    let id = db.db_instance_identifier().unwrap_or("?");
    let mut pending: Vec<String> = db
        .db_parameter_groups()
        .iter()
        .filter(|g| g.parameter_apply_status() == Some("pending-reboot"))
        .map(|g| {
            format!(
                "reboot pending: parameter group {} takes effect when the instance restarts (`aws rds reboot-db-instance --db-instance-identifier {id}`)",
                g.db_parameter_group_name().unwrap_or("?")
            )
        })
        .collect();
    let ca = db
        .pending_modified_values()
        .and_then(|p| p.ca_certificate_identifier());
    if let Some(ca) = ca {
        pending.push(format!(
            "CA change pending: {ca} takes effect in the next maintenance window, or at once with `aws rds modify-db-instance --db-instance-identifier {id} --ca-certificate-identifier {ca} --apply-immediately` (restarts the instance)"
        ));
    }
    pending
}

/// Puts drifted settings back; true when it did. In a production environment what needs
/// a restart is left pending (`ApplyImmediately = false`) for an operator (see
/// [`pending_changes`]): `up` never restarts a production database by itself. Elsewhere everything is applied
/// at once, in one call.
async fn converge_settings(ctx: &Ctx, db: &Instance, id: &str) -> Result<bool> {
    let now = differing(ctx, ADDR, settings(ctx, db)).await?;
    let later = differing(ctx, ADDR, reboot_settings(ctx, db)).await?;
    let calls = if ctx.settings.production {
        vec![(now, true), (later, false)]
    } else {
        vec![(now.into_iter().chain(later).collect(), true)]
    };
    let mut wrote = false;
    for (fixes, immediately) in calls.into_iter().filter(|(f, _)| !f.is_empty()) {
        let call = ctx.aws.rds.modify_db_instance().db_instance_identifier(id);
        let call = call.apply_immediately(immediately);
        let call = fixes.into_iter().fold(call, |call, fix| fix(call));
        when_not_busy(id, || {
            let call = call.clone();
            async move { call.send().await.map_err(aws("ModifyDBInstance", id)) }
        })
        .await?;
        wrote = true;
    }
    Ok(wrote)
}

/// RDS refuses a change or a delete while the instance is busy — `backing-up` right
/// after it is created, `modifying`, `configuring-enhanced-monitoring` — with
/// `InvalidDBInstanceState`
/// (<https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html>).
/// `call` is made again until the instance takes it, for as long as the instance may
/// take to become available.
async fn when_not_busy<T, F, Fut>(id: &str, call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let busy = |e: &Error| e.aws_code() == Some("InvalidDBInstanceState");
    let what = format!("DB instance {id} to take the change (it is busy)");
    retry_while(&what, READY_WAIT, busy, call).await
}

async fn create(ctx: &Ctx, id: &str) -> Result<Instance> {
    let s = &ctx.settings;
    let key = ctx.needed_id(&kms_key::address("rds"))?;
    let sg = ctx.needed_id(&security_group::address("rds"))?;
    let group = ctx.needed_id(rds_subnet_group::ADDR)?;
    let parameters = ctx.needed_id(rds_parameter_group::ADDR)?;
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
        .db_parameter_group_name(parameters)
        .ca_certificate_identifier(CA)
        .enable_iam_database_authentication(true)
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
    kind!(
        KIND,
        depends_on = [
            rds_subnet_group::KIND,
            rds_parameter_group::KIND,
            security_group::KIND,
            kms_key::KIND
        ]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let id = ctx.name("db");
        let Some(found) = lookup(ctx).await? else {
            if !ctx.would_create(format!("{ADDR} {id}")) {
                return Ok(());
            }
            let db = create(ctx, &id).await?;
            ctx.record(ADDR, record(&db, &id)).await?;
            ctx.report.note(Change::Created, format!("{ADDR} {id}"));
            return Ok(());
        };
        let db = &found.value;
        let arn = required(db.db_instance_arn(), "DB instance ARN")?;
        let retagged = converge_tags(ctx, ADDR, &tags::Rds(&arn), None).await?;
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
        ctx.record(ADDR, record(db, &id)).await?;
        let wrote = converge_settings(ctx, db, &id).await?;
        let ready = !wrote && db.db_instance_status() == Some("available");
        self.ready.store(ready, std::sync::atomic::Ordering::SeqCst);
        let change = found.change().updated_if(retagged || wrote);
        // What is left pending, as AWS says after this run's changes.
        let now = if wrote {
            describe(ctx, &id).await?
        } else {
            None
        };
        let pending = pending_changes(now.as_ref().unwrap_or(db));
        let detail = if pending.is_empty() {
            String::new()
        } else {
            format!(" ({})", pending.join("; "))
        };
        ctx.report.note(change, format!("{ADDR} {id}{detail}"));
        Ok(())
    }

    async fn wait(&self, ctx: &Ctx, direction: Direction) -> Result<()> {
        let id = ctx.name("db");
        if direction == Direction::Down {
            let status = || async {
                let db = describe(ctx, &id).await?;
                Ok(db.map(|db| db.db_instance_status().unwrap_or("deleting").to_string()))
            };
            return wait_gone_and_forget(
                ctx,
                ADDR,
                &format!("DB instance {id}"),
                READY_WAIT,
                status,
            )
            .await;
        }
        if self.ready.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let db = wait_for(
            &format!("DB instance {id} to be available"),
            READY_WAIT,
            || async {
                let Some(db) = describe(ctx, &id).await? else {
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
        ctx.record(ADDR, record(&db, &id)).await
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let id = ctx.name("db");
        // The record is forgotten once the instance is gone (`wait`), not here.
        let Some(found) = lookup(ctx).await? else {
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        let db = &found.value;
        let arn = required(db.db_instance_arn(), "DB instance ARN")?;
        tags::ensure_owned(ctx, &tags::Rds(&arn)).await?;
        if db.db_instance_status() == Some("deleting") {
            return Ok(());
        }
        let rds = &ctx.aws.rds;
        if db.deletion_protection() == Some(true) {
            // Only reached from a confirmed `down`.
            let call = rds.modify_db_instance().db_instance_identifier(&id);
            let call = call.deletion_protection(false).apply_immediately(true);
            when_not_busy(&id, || {
                let call = call.clone();
                async { call.send().await.map_err(aws("ModifyDBInstance", &id)) }
            })
            .await?;
            tracing::info!("lifted deletion protection on DB instance {id}");
        }
        let skip = ctx.options.skip_final_snapshot && !ctx.settings.production;
        let snapshot = (!skip).then(|| final_snapshot_name(ctx));
        let call = rds.delete_db_instance().db_instance_identifier(&id);
        let call = call
            .skip_final_snapshot(skip)
            .set_final_db_snapshot_identifier(snapshot.clone());
        let deleted = when_not_busy(&id, || {
            let call = call.clone();
            async { call.send().await.map_err(aws("DeleteDBInstance", &id)) }
        })
        .await;
        SERVICE.found(deleted)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_rds::types::{DbParameterGroupStatus, PendingModifiedValues};

    #[test]
    fn a_pending_group_and_ca_each_say_what_applies_them() {
        let in_sync = Instance::builder()
            .db_instance_identifier("payment-db-prod")
            .db_parameter_groups(
                DbParameterGroupStatus::builder()
                    .db_parameter_group_name("payment-db-params-prod")
                    .parameter_apply_status("in-sync")
                    .build(),
            )
            .build();
        assert!(pending_changes(&in_sync).is_empty());
        let pending = Instance::builder()
            .db_instance_identifier("payment-db-prod")
            .db_parameter_groups(
                DbParameterGroupStatus::builder()
                    .db_parameter_group_name("payment-db-params-prod")
                    .parameter_apply_status("pending-reboot")
                    .build(),
            )
            .pending_modified_values(
                PendingModifiedValues::builder()
                    .ca_certificate_identifier("rds-ca-rsa2048-g1")
                    .build(),
            )
            .build();
        let said = pending_changes(&pending);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].starts_with("reboot pending: parameter group payment-db-params-prod"));
        assert!(said[0].contains("reboot-db-instance --db-instance-identifier payment-db-prod"));
        assert!(said[1].starts_with("CA change pending: rds-ca-rsa2048-g1"));
        assert!(said[1].contains("next maintenance window"));
        assert!(said[1].contains("--apply-immediately"));
    }
}
