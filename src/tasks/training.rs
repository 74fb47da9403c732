//! `ml_model_training`: weekly training of the three league models.

use crate::pipelines::ml_model_training::{evaluate, prepare_data, train_mlb, train_nba, train_nfl};
use sluice_runtime::{RunInfo, TaskError};

pub async fn prepare_data(ctx: prepare_data::Context<'_>) -> Result<prepare_data::Outputs, TaskError> {
    let db = ctx.conn.postgres_mlsp.database.as_deref().unwrap_or("mlsp");
    ctx.log.info(format!("preparing the training set from database {db}"));
    let day = ctx.run.logical_date.get(..10).unwrap_or("latest");
    Ok(prepare_data::Outputs { dataset: format!("/data/training/{day}.parquet"), rows: 0 })
}

fn model_uri(league: &str, run: &RunInfo) -> String {
    format!("runs:/{}/{league}", run.run_id)
}

pub async fn train_nfl(ctx: train_nfl::Context<'_>) -> Result<train_nfl::Outputs, TaskError> {
    ctx.log.info(format!("training NFL on {}", ctx.upstream.prepare_data.dataset));
    Ok(train_nfl::Outputs { model_uri: model_uri("nfl", ctx.run), accuracy: 0.0 })
}

pub async fn train_nba(ctx: train_nba::Context<'_>) -> Result<train_nba::Outputs, TaskError> {
    ctx.log.info(format!("training NBA on {}", ctx.upstream.prepare_data.dataset));
    Ok(train_nba::Outputs { model_uri: model_uri("nba", ctx.run), accuracy: 0.0 })
}

pub async fn train_mlb(ctx: train_mlb::Context<'_>) -> Result<train_mlb::Outputs, TaskError> {
    ctx.log.info(format!("training MLB on {}", ctx.upstream.prepare_data.dataset));
    Ok(train_mlb::Outputs { model_uri: model_uri("mlb", ctx.run), accuracy: 0.0 })
}

/// Picks the most accurate model and checks it against the run's `min_accuracy` param.
pub async fn evaluate(ctx: evaluate::Context<'_>) -> Result<evaluate::Outputs, TaskError> {
    let up = &ctx.upstream;
    let candidates = [
        (&up.train_nfl.model_uri, up.train_nfl.accuracy),
        (&up.train_nba.model_uri, up.train_nba.accuracy),
        (&up.train_mlb.model_uri, up.train_mlb.accuracy),
    ];
    let (best, accuracy) = candidates
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(uri, acc)| ((*uri).clone(), *acc))
        .unwrap_or_default();
    let passed = accuracy >= ctx.params.min_accuracy;
    ctx.log.info(format!("best model {best} with accuracy {accuracy:.3} (threshold {})", ctx.params.min_accuracy));
    Ok(evaluate::Outputs { best_model: best, passed })
}
