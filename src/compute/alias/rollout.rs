//! Moving `live` between versions: a bake (resumed after a crash), its promotion or
//! rollback, `payctl rollback`, and pruning old versions after a release.

use super::{ALIAS, Recorded, SERVICE, address, get, point, save, versions, weighted};
use crate::compute::canary::{self, Bake, Verdict};
use crate::compute::function_name;
use crate::engine::Ctx;
use crate::engine::report::Change;
use crate::error::{Error, Result, aws, required};
use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

/// A weighted alias found at the start of a run: a bake this state recorded is resumed;
/// any other weight is taken off (the alias goes back to its primary version).
#[allow(clippy::too_many_arguments)]
pub(super) async fn unfinished(
    ctx: &Ctx,
    key: &str,
    name: &str,
    arn: &str,
    primary: &str,
    weighted: &str,
    rec: Recorded,
) -> Result<()> {
    let addr = address(key);
    let started = match &rec.canary {
        Some((v, at)) if v == weighted && rec.live.as_deref() == Some(primary) => *at,
        _ => {
            if !ctx.apply(&addr, "routing", format!("{weighted} weighted"), "none") {
                return Ok(());
            }
            tracing::warn!(
                "function {name}: {ALIAS} sends part of its traffic to version {weighted}, which no bake of this state explains; all traffic goes back to version {primary}"
            );
            point(ctx, name, primary, None).await?;
            let rec = Recorded {
                live: Some(primary.to_string()),
                canary: None,
                ..rec
            };
            save(ctx, key, arn, &rec).await?;
            ctx.report.note(
                Change::Updated,
                format!("{addr} {name}:{ALIAS} → version {primary} (weight on {weighted} removed)"),
            );
            return Ok(());
        }
    };
    if !ctx.apply(
        &addr,
        "canary",
        format!("version {weighted} baking"),
        "resumed",
    ) {
        return Ok(());
    }
    tracing::info!("function {name}: resuming the bake of version {weighted}");
    bake(ctx, key, name, arn, primary, weighted, started, rec).await
}

/// Bakes `new` and then promotes it or puts `old` back.
#[allow(clippy::too_many_arguments)]
pub(super) async fn bake(
    ctx: &Ctx,
    key: &str,
    name: &str,
    arn: &str,
    old: &str,
    new: &str,
    started: u64,
    rec: Recorded,
) -> Result<()> {
    let addr = address(key);
    let r = &ctx.settings.rollout;
    if r.bake < canary::SHORTEST_USEFUL_BAKE {
        tracing::warn!(
            "function {name}: a bake of {}s is shorter than Lambda's metrics take to arrive ({}s); the canary may be promoted before its errors are seen",
            r.bake.as_secs(),
            canary::SHORTEST_USEFUL_BAKE.as_secs()
        );
    }
    let plan = Bake {
        function: name.to_string(),
        old: old.to_string(),
        new: new.to_string(),
        percent: r.canary_percent,
        started: UNIX_EPOCH + Duration::from_secs(started),
        bake: r.bake,
        max_errors: r.max_errors,
        max_throttles: r.max_throttles,
        alarm: ctx.name(&format!("{key}-errors")),
    };
    let verdict = canary::watch(ctx, &plan).await;
    let back = Recorded {
        live: Some(old.to_string()),
        canary: None,
        rejected: Some(new.to_string()),
        ..rec.clone()
    };
    match verdict {
        Ok(Verdict::Healthy) => {
            point(ctx, name, new, None).await?;
            let rec = Recorded {
                live: Some(new.to_string()),
                previous: Some(old.to_string()),
                canary: None,
                rejected: None,
            };
            save(ctx, key, arn, &rec).await?;
            ctx.report.note(
                Change::Updated,
                format!("{addr} {name}:{ALIAS} → version {new} (was {old}; canary promoted)"),
            );
            prune(ctx, name, &rec).await
        }
        Ok(Verdict::Unhealthy(why)) => {
            point(ctx, name, old, None).await?;
            save(ctx, key, arn, &back).await?;
            Err(Error::Invalid(format!(
                "function {name}: canary version {new} rolled back, {ALIAS} is on version {old} again: {why}"
            )))
        }
        Err(e) => {
            // Ctrl-C, or the metrics could not be read: no verdict on the build, so it
            // is not rejected, but no traffic stays on an unjudged version either.
            point(ctx, name, old, None).await?;
            let back = Recorded {
                rejected: rec.rejected,
                ..back
            };
            save(ctx, key, arn, &back).await?;
            tracing::warn!(
                "function {name}: the bake of version {new} stopped ({e}); {ALIAS} is on version {old} again, and the next `up` starts the canary again"
            );
            Err(e)
        }
    }
}

/// Deletes the versions beyond the newest `versions_kept`, except those an alias points
/// at and the previous one.
pub(super) async fn prune(ctx: &Ctx, name: &str, rec: &Recorded) -> Result<()> {
    let keep = ctx.settings.rollout.versions_kept;
    let all = versions(ctx, name).await?;
    let aliases = ctx.aws.lambda.list_aliases().function_name(name).send();
    let aliases = aliases.await.map_err(aws("ListAliases", name))?;
    let mut pinned: BTreeSet<String> = rec.previous.iter().chain(&rec.live).cloned().collect();
    for a in aliases.aliases() {
        pinned.extend(a.function_version().map(str::to_string));
        pinned.extend(weighted(a).into_iter().map(|(v, _)| v));
    }
    let mut numbered: Vec<u64> = all
        .iter()
        .filter_map(|v| v.version()?.parse().ok())
        .collect();
    numbered.sort_unstable_by(|a, b| b.cmp(a));
    numbered.dedup();
    for v in numbered.into_iter().skip(keep) {
        let v = v.to_string();
        if pinned.contains(&v) {
            continue;
        }
        let call = ctx
            .aws
            .lambda
            .delete_function()
            .function_name(name)
            .qualifier(&v);
        let gone = call
            .send()
            .await
            .map_err(aws("DeleteFunction", format!("{name}:{v}")));
        SERVICE.found(gone)?;
        tracing::info!("function {name}: deleted old version {v}");
    }
    Ok(())
}

/// `payctl rollback` for one function: `live` back on the previous version (recorded in
/// state), or, when a bake was left weighted, wholly on its primary version. Answers the
/// line to print; a function without a previous version is an error when it was named
/// (`named`), else skipped (None).
pub async fn rollback(ctx: &Ctx, key: &str, named: bool) -> Result<Option<String>> {
    let name = function_name(ctx, key);
    let Some(alias) = get(ctx, &name).await? else {
        return Err(Error::Invalid(format!(
            "function {name} has no alias {ALIAS}; run `payctl up --env {}` first; nothing was changed",
            ctx.env
        )));
    };
    let arn = required(alias.alias_arn(), "alias ARN")?;
    let primary = required(alias.function_version(), "alias version")?;
    let rec = Recorded::of(ctx, key);
    if let Some((v, _)) = weighted(&alias).into_iter().next() {
        point(ctx, &name, &primary, None).await?;
        let rec = Recorded {
            live: Some(primary.clone()),
            canary: None,
            rejected: Some(v.clone()),
            ..rec
        };
        save(ctx, key, &arn, &rec).await?;
        return Ok(Some(format!(
            "{key}: {ALIAS} stays on version {primary}; the canary version {v} takes no traffic"
        )));
    }
    let Some(previous) = rec.previous.clone().filter(|p| *p != primary) else {
        if !named {
            return Ok(None);
        }
        return Err(Error::Invalid(format!(
            "function {name} has no previous version recorded ({ALIAS} is on version {primary}); nothing was changed"
        )));
    };
    if !versions(ctx, &name)
        .await?
        .iter()
        .any(|v| v.version() == Some(previous.as_str()))
    {
        return Err(Error::Invalid(format!(
            "function {name}: version {previous} no longer exists; nothing was changed"
        )));
    }
    point(ctx, &name, &previous, None).await?;
    let rec = Recorded {
        live: Some(previous.clone()),
        previous: Some(primary.clone()),
        canary: None,
        rejected: Some(primary.clone()),
    };
    save(ctx, key, &arn, &rec).await?;
    Ok(Some(format!(
        "{key}: {ALIAS} → version {previous} (was {primary})"
    )))
}
