//! The transactions table `payment-transactions-<env>`: key `transaction_id` (S),
//! on-demand, KMS server-side encryption, a stream of new and old images (the audit
//! logger consumes it), point-in-time recovery, deletion protection per the settings.
//! A production `down` makes a final on-demand backup first and deletes the table only
//! once that backup is available ([`super::final_backup`]).

use crate::engine::report::Change;
use crate::engine::{Ctx, Direction, Resource};
use crate::error::{Error, Result, aws};
use crate::state::Record;
use crate::waiter::{Status, Wait, retry_while, wait_for};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    PointInTimeRecoveryStatus, ScalarAttributeType, SseSpecification, SseStatus, SseType,
    StreamSpecification, StreamViewType, TableDescription, TableStatus, Tag,
};

pub const KIND: &str = "dynamodb_table";
pub const ADDR: &str = "dynamodb_table.transactions";
pub const KEY: &str = "transaction_id";
const WAIT: Wait = Wait::minutes(10);

pub struct TransactionsTable;

fn not_found(e: &SdkError<DescribeTableError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_resource_not_found_exception())
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("building a DynamoDB request: {e}"))
}

async fn find(ctx: &Ctx, name: &str) -> Result<Option<TableDescription>> {
    match ctx
        .aws
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.table().cloned()),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(aws("DescribeTable", name)(e)),
    }
}

async fn check_owned(ctx: &Ctx, t: &TableDescription, name: &str) -> Result<()> {
    let arn = t.table_arn().unwrap_or_default();
    let out = ctx
        .aws
        .dynamodb
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws("ListTagsOfResource", name))?;
    if ctx.owns(out.tags().iter().map(|t| (t.key(), t.value()))) {
        return Ok(());
    }
    Err(Error::not_owned(format!("DynamoDB table {name}"), &ctx.env))
}

async fn create(ctx: &Ctx, name: &str) -> Result<TableDescription> {
    let tags: Vec<Tag> = ctx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(invalid)?;
    let out = ctx
        .aws
        .dynamodb
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(invalid)?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY)
                .key_type(KeyType::Hash)
                .build()
                .map_err(invalid)?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(stream_spec()?)
        .sse_specification(
            SseSpecification::builder()
                .enabled(true)
                .sse_type(SseType::Kms)
                .build(),
        )
        .deletion_protection_enabled(ctx.settings.deletion_protection)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(aws("CreateTable", name))?;
    out.table_description()
        .cloned()
        .ok_or_else(|| Error::Invalid("CreateTable returned no table".into()))
}

fn stream_spec() -> Result<StreamSpecification> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(invalid)
}

async fn wait_active(ctx: &Ctx, name: &str) -> Result<TableDescription> {
    wait_for(
        &format!("DynamoDB table {name} to be active"),
        WAIT,
        || async {
            let Some(t) = find(ctx, name).await? else {
                return Err(Error::Invalid(format!(
                    "DynamoDB table {name} disappeared; run `payctl up` again"
                )));
            };
            match t.table_status() {
                Some(TableStatus::Active) => Ok(Status::Ready(t)),
                s => Ok(Status::Pending(
                    s.map(|s| s.as_str().to_string()).unwrap_or_default(),
                )),
            }
        },
    )
    .await
}

/// Turns point-in-time recovery on; retried while backups are still being enabled.
async fn ensure_pitr(ctx: &Ctx, name: &str) -> Result<bool> {
    let db = &ctx.aws.dynamodb;
    let out = db
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .map_err(aws("DescribeContinuousBackups", name))?;
    let on = out
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        == Some(&PointInTimeRecoveryStatus::Enabled);
    if on || !ctx.apply(ADDR, "point-in-time recovery", "disabled", "enabled") {
        return Ok(false);
    }
    let spec = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build()
        .map_err(invalid)?;
    let unavailable = |e: &Error| e.aws_code() == Some("ContinuousBackupsUnavailableException");
    retry_while(
        &format!("enabling point-in-time recovery on {name}"),
        WAIT,
        unavailable,
        || async {
            let call = db
                .update_continuous_backups()
                .table_name(name)
                .point_in_time_recovery_specification(spec.clone());
            call.send()
                .await
                .map_err(aws("UpdateContinuousBackups", name))
        },
    )
    .await?;
    Ok(true)
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Puts drifted table settings back; returns the names of what changed.
async fn converge(ctx: &Ctx, t: &TableDescription, name: &str) -> Result<Vec<&'static str>> {
    let mut changed = Vec::new();
    let db = &ctx.aws.dynamodb;
    let protection = ctx.settings.deletion_protection;
    if t.deletion_protection_enabled() != Some(protection)
        && ctx.apply(
            ADDR,
            "deletion protection",
            on_off(t.deletion_protection_enabled() == Some(true)),
            on_off(protection),
        )
    {
        let call = db
            .update_table()
            .table_name(name)
            .deletion_protection_enabled(ctx.settings.deletion_protection);
        call.send().await.map_err(aws("UpdateTable", name))?;
        changed.push("deletion protection");
        wait_active(ctx, name).await?;
    }
    let stream = t.stream_specification();
    if (stream.map(|s| s.stream_enabled()) != Some(true)
        || stream.and_then(|s| s.stream_view_type()) != Some(&StreamViewType::NewAndOldImages))
        && ctx.apply(
            ADDR,
            "stream",
            stream
                .and_then(|s| s.stream_view_type())
                .filter(|_| stream.is_some_and(|s| s.stream_enabled()))
                .map_or("off".to_string(), |v| v.as_str().to_string()),
            StreamViewType::NewAndOldImages.as_str(),
        )
    {
        if stream.map(|s| s.stream_enabled()) == Some(true) {
            return Err(Error::Invalid(format!(
                "table {name} streams the wrong view; disable its stream, then run `payctl up` again"
            )));
        }
        db.update_table()
            .table_name(name)
            .stream_specification(stream_spec()?)
            .send()
            .await
            .map_err(aws("UpdateTable", name))?;
        changed.push("stream");
        wait_active(ctx, name).await?;
    }
    let sse_on = t
        .sse_description()
        .and_then(|s| s.status())
        .is_some_and(|s| matches!(s, SseStatus::Enabled | SseStatus::Enabling));
    if !sse_on && ctx.apply(ADDR, "encryption", "off", "KMS") {
        let sse = SseSpecification::builder()
            .enabled(true)
            .sse_type(SseType::Kms)
            .build();
        db.update_table()
            .table_name(name)
            .sse_specification(sse)
            .send()
            .await
            .map_err(aws("UpdateTable", name))?;
        changed.push("encryption");
        wait_active(ctx, name).await?;
    }
    Ok(changed)
}

#[async_trait]
impl Resource for TransactionsTable {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("transactions");
        let mut active = None;
        let (mut change, created) = match find(ctx, &name).await? {
            Some(t) => {
                check_owned(ctx, &t, &name).await?;
                if t.table_status() == Some(&TableStatus::Active) {
                    active = Some(t);
                }
                (
                    if ctx.state.get(ADDR).is_some() {
                        Change::Unchanged
                    } else {
                        Change::Adopted
                    },
                    None,
                )
            }
            None if !ctx.would_create(format!("{ADDR} {name}")) => return Ok(()),
            None => (Change::Created, Some(create(ctx, &name).await?)),
        };
        if let Some(t) = &created {
            ctx.record(
                ADDR,
                Record::new(KIND, &name).arn(t.table_arn().unwrap_or_default()),
            )
            .await?;
        }
        let t = match active {
            Some(t) => t,
            None => wait_active(ctx, &name).await?,
        };
        let mut changed = if created.is_none() {
            converge(ctx, &t, &name).await?
        } else {
            Vec::new()
        };
        if ensure_pitr(ctx, &name).await? && created.is_none() {
            changed.push("point-in-time recovery");
        }
        let t = if changed.is_empty() {
            t
        } else {
            wait_active(ctx, &name).await?
        };
        let mut rec = Record::new(KIND, &name).arn(t.table_arn().unwrap_or_default());
        if let Some(stream) = t.latest_stream_arn() {
            rec = rec.attr("stream_arn", stream);
        }
        ctx.record(ADDR, rec).await?;
        if !changed.is_empty() {
            tracing::info!("DynamoDB table {name}: put back {}", changed.join(", "));
            if change == Change::Unchanged {
                change = Change::Updated;
            }
        }
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("transactions");
        let Some(t) = find(ctx, &name).await? else {
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        check_owned(ctx, &t, &name).await?;
        if t.table_status() == Some(&TableStatus::Deleting) {
            return Ok(());
        }
        if ctx.settings.production {
            super::final_backup::make(ctx, &name).await?;
        }
        let db = &ctx.aws.dynamodb;
        if t.deletion_protection_enabled() == Some(true) {
            // Only reached from a confirmed `down`.
            db.update_table()
                .table_name(&name)
                .deletion_protection_enabled(false)
                .send()
                .await
                .map_err(aws("UpdateTable", &name))?;
            tracing::info!("lifted deletion protection on DynamoDB table {name}");
            wait_active(ctx, &name).await?;
        }
        match db.delete_table().table_name(&name).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteTable", &name)(e)),
        }
        ctx.report.note(Change::Deleted, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn wait(&self, ctx: &Ctx, direction: Direction) -> Result<()> {
        if direction == Direction::Up {
            return Ok(());
        }
        let name = ctx.name("transactions");
        wait_for(
            &format!("DynamoDB table {name} to be deleted"),
            WAIT,
            || async {
                Ok(match find(ctx, &name).await? {
                    None => Status::Ready(()),
                    Some(t) => Status::Pending(
                        t.table_status()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                    ),
                })
            },
        )
        .await?;
        ctx.forget(ADDR).await?;
        Ok(())
    }
}
