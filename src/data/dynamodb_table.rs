//! The transactions table `payment-transactions-<env>`: key `transaction_id` (S),
//! on-demand, KMS server-side encryption, a stream of new and old images (the audit
//! logger consumes it), point-in-time recovery, deletion protection per the settings.
//! A production `down` makes a final on-demand backup first and deletes the table only
//! once that backup is available ([`super::support::final_backup`]).

use super::support::final_backup;
use super::{build_error, wait_gone_and_forget};
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Direction, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use crate::waiter::{Status, Wait, retry_while, wait_for};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_table::builders::UpdateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    PointInTimeRecoveryStatus, ScalarAttributeType, SseSpecification, SseStatus, SseType,
    StreamSpecification, StreamViewType, TableDescription, TableStatus, Tag,
};

pub const KIND: &str = "dynamodb_table";
pub const ADDR: &str = "dynamodb_table.transactions";
pub const KEY: &str = "transaction_id";
const WAIT: Wait = Wait::minutes(10);
const SERVICE: Service = Service::DynamoDb;

pub struct TransactionsTable;

/// The table, `None` when DynamoDB says there is none.
async fn describe(ctx: &Ctx, name: &str) -> Result<Option<TableDescription>> {
    let out = ctx
        .aws
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await;
    let out = SERVICE.found(out.map_err(aws("DescribeTable", name)))?;
    Ok(out.and_then(|o| o.table().cloned()))
}

/// The table, by the name in state, else by its name.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<TableDescription>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    let name = ctx.name("transactions");
    find(ctx, ADDR, SERVICE, by_id, || describe(ctx, &name)).await
}

fn sse_spec() -> SseSpecification {
    SseSpecification::builder()
        .enabled(true)
        .sse_type(SseType::Kms)
        .build()
}

fn stream_spec() -> Result<StreamSpecification> {
    let spec = StreamSpecification::builder().stream_enabled(true);
    let spec = spec.stream_view_type(StreamViewType::NewAndOldImages);
    spec.build().map_err(build_error)
}

async fn create(ctx: &Ctx, name: &str) -> Result<TableDescription> {
    let tags: Vec<Tag> = ctx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(build_error)?;
    let key = AttributeDefinition::builder()
        .attribute_name(KEY)
        .attribute_type(ScalarAttributeType::S)
        .build();
    let schema = KeySchemaElement::builder()
        .attribute_name(KEY)
        .key_type(KeyType::Hash)
        .build();
    let call = ctx.aws.dynamodb.create_table().table_name(name);
    let call = call
        .attribute_definitions(key.map_err(build_error)?)
        .key_schema(schema.map_err(build_error)?)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(stream_spec()?)
        .sse_specification(sse_spec())
        .deletion_protection_enabled(ctx.settings.deletion_protection)
        .set_tags(Some(tags));
    let out = call.send().await.map_err(aws("CreateTable", name))?;
    let t = out.table_description().cloned();
    t.ok_or_else(|| Error::Invalid("CreateTable returned no table".into()))
}

async fn wait_active(ctx: &Ctx, name: &str) -> Result<TableDescription> {
    wait_for(
        &format!("DynamoDB table {name} to be active"),
        WAIT,
        || async {
            let Some(t) = describe(ctx, name).await? else {
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

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The stream's view type, or `off`.
fn stream_of(t: &TableDescription) -> String {
    let stream = t.stream_specification().filter(|s| s.stream_enabled());
    let view = stream.and_then(|s| s.stream_view_type());
    view.map_or("off".into(), |v| v.as_str().into())
}

/// One `UpdateTable` call, then the wait for the table to be active again.
async fn update(ctx: &Ctx, name: &str, call: UpdateTableFluentBuilder) -> Result<()> {
    call.table_name(name)
        .send()
        .await
        .map_err(aws("UpdateTable", name))?;
    wait_active(ctx, name).await.map(drop)
}

/// The table's settings, as declarations. True when it wrote one. (Point-in-time
/// recovery, which has its own calls, is [`converge_pitr`].)
async fn converge_settings(ctx: &Ctx, t: &TableDescription, name: &str) -> Result<bool> {
    let db = &ctx.aws.dynamodb;
    let protection = ctx.settings.deletion_protection;
    let have = on_off(t.deletion_protection_enabled() == Some(true));
    let write = || {
        update(
            ctx,
            name,
            db.update_table().deletion_protection_enabled(protection),
        )
    };
    let mut wrote = ctx
        .converge(ADDR, "deletion protection", have, on_off(protection), write)
        .await?;

    let have = stream_of(t);
    let streaming = have != "off";
    let write = || async {
        if streaming {
            return Err(Error::Invalid(format!(
                "table {name} streams the wrong view; disable its stream, then run `payctl up` again"
            )));
        }
        update(
            ctx,
            name,
            db.update_table().stream_specification(stream_spec()?),
        )
        .await
    };
    let want = StreamViewType::NewAndOldImages.as_str().to_string();
    wrote |= ctx.converge(ADDR, "stream", have, want, write).await?;

    let sse = t.sse_description().and_then(|s| s.status());
    let on = sse.is_some_and(|s| matches!(s, SseStatus::Enabled | SseStatus::Enabling));
    let have = if on { "KMS" } else { "off" };
    let write = || update(ctx, name, db.update_table().sse_specification(sse_spec()));
    wrote |= ctx.converge(ADDR, "encryption", have, "KMS", write).await?;
    Ok(wrote)
}

/// Point-in-time recovery on; retried while backups are still being enabled.
async fn converge_pitr(ctx: &Ctx, name: &str) -> Result<bool> {
    let db = &ctx.aws.dynamodb;
    let out = db
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await;
    let out = out.map_err(aws("DescribeContinuousBackups", name))?;
    let status = out
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    let have = if status == Some(&PointInTimeRecoveryStatus::Enabled) {
        "enabled"
    } else {
        "disabled"
    };
    let enable = || async {
        let spec = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true);
        let spec = spec.build().map_err(build_error)?;
        let unavailable = |e: &Error| e.aws_code() == Some("ContinuousBackupsUnavailableException");
        let what = format!("enabling point-in-time recovery on {name}");
        retry_while(&what, WAIT, unavailable, || async {
            let call = db.update_continuous_backups().table_name(name);
            let call = call.point_in_time_recovery_specification(spec.clone());
            call.send()
                .await
                .map_err(aws("UpdateContinuousBackups", name))
        })
        .await
        .map(drop)
    };
    ctx.converge(ADDR, "point-in-time recovery", have, "enabled", enable)
        .await
}

fn record(t: &TableDescription, name: &str) -> Record {
    let rec = Record::new(KIND, name).arn(t.table_arn().unwrap_or_default());
    match t.latest_stream_arn() {
        Some(stream) => rec.attr("stream_arn", stream),
        None => rec,
    }
}

#[async_trait]
impl Resource for TransactionsTable {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("transactions");
        let change = match lookup(ctx).await? {
            Some(found) => {
                let arn = required(found.value.table_arn(), "table ARN")?;
                let retagged = converge_tags(ctx, ADDR, &tags::DynamoDb(&arn), None).await?;
                found.change().updated_if(retagged)
            }
            None if !ctx.would_create(format!("{ADDR} {name}")) => return Ok(()),
            None => {
                let t = create(ctx, &name).await?;
                ctx.record(ADDR, record(&t, &name)).await?;
                Change::Created
            }
        };
        let t = wait_active(ctx, &name).await?;
        ctx.record(ADDR, record(&t, &name)).await?;
        // A table created in this run has CreateTable's settings.
        let mut wrote = change != Change::Created && converge_settings(ctx, &t, &name).await?;
        wrote |= converge_pitr(ctx, &name).await?;
        if wrote {
            let t = wait_active(ctx, &name).await?;
            ctx.record(ADDR, record(&t, &name)).await?;
        }
        let change = change.updated_if(wrote);
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("transactions");
        // The record is forgotten once the table is gone (`wait`), not here.
        let Some(found) = lookup(ctx).await? else {
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        let t = found.value;
        let arn = required(t.table_arn(), "table ARN")?;
        tags::ensure_owned(ctx, &tags::DynamoDb(&arn)).await?;
        if t.table_status() == Some(&TableStatus::Deleting) {
            return Ok(());
        }
        if ctx.settings.production {
            final_backup::make(ctx, &name).await?;
        }
        let db = &ctx.aws.dynamodb;
        if t.deletion_protection_enabled() == Some(true) {
            // Only reached from a confirmed `down`.
            let call = db
                .update_table()
                .table_name(&name)
                .deletion_protection_enabled(false);
            call.send().await.map_err(aws("UpdateTable", &name))?;
            tracing::info!("lifted deletion protection on DynamoDB table {name}");
            wait_active(ctx, &name).await?;
        }
        let out = db.delete_table().table_name(&name).send().await;
        SERVICE.found(out.map_err(aws("DeleteTable", &name)))?;
        ctx.report.note(Change::Deleted, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn wait(&self, ctx: &Ctx, direction: Direction) -> Result<()> {
        if direction == Direction::Up {
            return Ok(());
        }
        let name = ctx.name("transactions");
        let status = || async {
            let t = describe(ctx, &name).await?;
            Ok(t.map(|t| {
                t.table_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default()
            }))
        };
        wait_gone_and_forget(ctx, ADDR, &format!("DynamoDB table {name}"), WAIT, status).await
    }
}
