use crate::pipelines::checks::*;
use sluice_runtime::TaskError;

// The one correct body: declared connection, declared outputs.
pub async fn extract(ctx: extract::Context<'_>) -> Result<extract::Outputs, TaskError> {
    let db = ctx.conn.warehouse.host.clone().unwrap_or_default();
    Ok(extract::Outputs { rows: ctx.params.limit, path: db })
}

pub async fn undeclared_connection(ctx: undeclared_connection::Context<'_>) -> Result<(), TaskError> {
    let _ = ctx.conn.warehouse; // ERROR: no field `warehouse`
    Ok(())
}

pub async fn missing_output(ctx: missing_output::Context<'_>) -> Result<(), TaskError> {
    let _ = ctx.upstream.extract.row_count; // ERROR: no field `row_count`
    Ok(())
}

pub async fn wrong_output_type(ctx: wrong_output_type::Context<'_>) -> Result<(), TaskError> {
    let _rows: String = ctx.upstream.extract.rows; // ERROR: mismatched types
    Ok(())
}

pub async fn not_upstream(ctx: not_upstream::Context<'_>) -> Result<(), TaskError> {
    let _ = ctx.upstream.extract; // ERROR: no field `extract`
    Ok(())
}

pub async fn wrong_param(ctx: wrong_param::Context<'_>) -> Result<(), TaskError> {
    let _ = ctx.params.league; // ERROR: no field `league`
    Ok(())
}

pub async fn wrong_signature(ctx: extract::Context<'_>) -> Result<(), TaskError> { // ERROR: mismatched types
    let _ = ctx;
    Ok(())
}

pub async fn wrong_return(_ctx: wrong_return::Context<'_>) -> Result<wrong_return::Outputs, TaskError> {
    Ok(wrong_return::Outputs { count: "many" }) // ERROR: mismatched types
}

pub fn not_async(_ctx: not_async::Context<'_>) -> Result<(), TaskError> { // ERROR: is not a future
    Ok(())
}

// `all_done` runs even when `extract` failed: its outputs are an Option.
pub async fn cleanup(ctx: cleanup::Context<'_>) -> Result<(), TaskError> {
    let _rows: Option<i64> = ctx.upstream.extract.as_ref().map(|o| o.rows);
    let _rows: i64 = ctx.upstream.extract.rows; // ERROR: no field `rows` on type `Option<
    Ok(())
}

// The choice is one of the `branch:` targets, checked by rustc: `elsewhere` is downstream
// but not a target, so it has no variant.
pub async fn choose(ctx: choose::Context<'_>) -> Result<choose::Outputs, TaskError> {
    let branch = if ctx.upstream.extract.rows > 0 { choose::Branch::LoadA } else { choose::Branch::LoadB };
    let _ = choose::Branch::Elsewhere; // ERROR: no variant or associated item named `Elsewhere`
    Ok(choose::Outputs { branch: vec![branch] })
}

pub async fn load_a(_ctx: load_a::Context<'_>) -> Result<(), TaskError> {
    Ok(())
}

pub async fn load_b(_ctx: load_b::Context<'_>) -> Result<(), TaskError> {
    Ok(())
}

pub async fn elsewhere(_ctx: elsewhere::Context<'_>) -> Result<(), TaskError> {
    Ok(())
}
