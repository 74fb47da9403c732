//! `ml_model_training`: weekly training of one model per league on the games in
//! `postgres_mlsp`, evaluation against `min_accuracy`, registration with MLflow and a
//! record of the deployed model.
//!
//! The model is a logistic regression (plain batch gradient descent, deterministic) that
//! predicts a home win from the win-percentage gap and the rest-day gap. Each league's
//! games are split by date: the earliest 80% train, the latest 20% measure accuracy.

use super::games::{self, Game, LEAGUES};
use crate::pipelines::ml_model_training::{
    deploy, evaluate, prepare_data, register_mlflow, train_mlb, train_nba, train_nfl,
};
use serde_json::{Value, json};
use sluice_runtime::io::{post_json, sql_execute, sql_query_json, sql_quote};
use sluice_runtime::{Connection, Logger, RunInfo, TaskError};

/// Gathers the games from `postgres_mlsp` into `$SLUICE_HOME/data/training/<day>.jsonl`.
/// An empty `games` table (a fresh install that has not run the scraper yet) is first
/// filled from `sports_feed`, with the scraper's validation, so the pipeline runs alone.
pub async fn prepare_data(ctx: prepare_data::Context<'_>) -> Result<prepare_data::Outputs, TaskError> {
    let db = ctx.conn.postgres_mlsp;
    sql_execute(db, games::CREATE_GAMES).await?;
    let count = sql_query_json(db, "SELECT count(*) AS n FROM games").await?;
    if count.first().and_then(|r| r.get("n")).and_then(Value::as_i64).unwrap_or(0) == 0 {
        ctx.log.info(format!("`games` of `{}` is empty: loading it from `{}`", db.id, ctx.conn.sports_feed.id));
        let mut valid = Vec::new();
        for league in LEAGUES {
            let text = sluice_runtime::io::read_text(ctx.conn.sports_feed, &format!("{league}.csv")).await?;
            let (games, rejected) = games::validate_league(league, &games::parse_csv(league, &text)?)?;
            ctx.log.info(format!("{league}: {} valid, {} rejected", games.len(), rejected.len()));
            valid.extend(games);
        }
        games::upsert_games(db, &valid).await?;
    }
    let rows = sql_query_json(db, "SELECT * FROM games ORDER BY league, game_date, game_id").await?;
    let all = rows.iter().map(Game::from_json).collect::<Result<Vec<_>, _>>()?;
    let path =
        games::local_file(&["data", "training", &format!("{}.jsonl", games::day(&ctx.run.logical_date))]).await?;
    games::write_json_lines(&path, all.iter().map(Game::to_json)).await?;
    ctx.log.info(format!("{} games from `{}` in {}", all.len(), db.id, path.display()));
    Ok(prepare_data::Outputs { dataset: path.display().to_string(), rows: all.len() as i64 })
}

pub async fn train_nfl(ctx: train_nfl::Context<'_>) -> Result<train_nfl::Outputs, TaskError> {
    let (model_uri, accuracy) = train("nfl", &ctx.upstream.prepare_data.dataset, ctx.run, ctx.log).await?;
    Ok(train_nfl::Outputs { model_uri, accuracy })
}

pub async fn train_nba(ctx: train_nba::Context<'_>) -> Result<train_nba::Outputs, TaskError> {
    let (model_uri, accuracy) = train("nba", &ctx.upstream.prepare_data.dataset, ctx.run, ctx.log).await?;
    Ok(train_nba::Outputs { model_uri, accuracy })
}

pub async fn train_mlb(ctx: train_mlb::Context<'_>) -> Result<train_mlb::Outputs, TaskError> {
    let (model_uri, accuracy) = train("mlb", &ctx.upstream.prepare_data.dataset, ctx.run, ctx.log).await?;
    Ok(train_mlb::Outputs { model_uri, accuracy })
}

/// Every league's model must reach the run's `min_accuracy` (a league served by a model
/// worse than the threshold fails the run); the most accurate one goes on to registration.
pub async fn evaluate(ctx: evaluate::Context<'_>) -> Result<evaluate::Outputs, TaskError> {
    let up = &ctx.upstream;
    let candidates = [
        ("nfl", &up.train_nfl.model_uri, up.train_nfl.accuracy),
        ("nba", &up.train_nba.model_uri, up.train_nba.accuracy),
        ("mlb", &up.train_mlb.model_uri, up.train_mlb.accuracy),
    ];
    let min = ctx.params.min_accuracy;
    for (league, _, accuracy) in &candidates {
        ctx.log.info(format!("{league}: held-out accuracy {accuracy:.3} (threshold {min})"));
    }
    let below: Vec<String> = candidates.iter().filter(|c| c.2 < min).map(|(l, _, a)| format!("{l} ({a:.3})")).collect();
    if !below.is_empty() {
        return Err(TaskError::new(format!("accuracy below min_accuracy {min}: {}", below.join(", "))));
    }
    let (league, best, accuracy) = candidates
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(l, uri, acc)| (*l, (*uri).clone(), *acc))
        .ok_or_else(|| TaskError::new("no model to evaluate"))?;
    ctx.log.info(format!("best model: {league}, {best}"));
    Ok(evaluate::Outputs { best_model: best, accuracy, passed: true })
}

/// Registers the best model as a new version of `mlsp-<league>`, with MLflow's REST calls
/// `registered-models/create` and `model-versions/create`. A `file` connection (standalone)
/// is a local registry: the same request bodies under `<dir>/registered-models/`.
pub async fn register_mlflow(ctx: register_mlflow::Context<'_>) -> Result<register_mlflow::Outputs, TaskError> {
    let up = &ctx.upstream.evaluate;
    let model = read_model(&up.best_model).await?;
    let league = model.get("league").and_then(Value::as_str).unwrap_or("model");
    let model_name = format!("mlsp-{league}");
    let description = format!("Home-win logistic regression for {league}, trained by {}", ctx.run.run_id);
    let create_model = json!({ "name": model_name, "description": "MLSP home-win model" });
    let create_version = json!({
        "name": model_name,
        "source": up.best_model,
        "description": description,
        "tags": [
            { "key": "accuracy", "value": format!("{:.4}", up.accuracy) },
            { "key": "sluice_run_id", "value": ctx.run.run_id },
        ],
    });
    let registry = ctx.conn.mlflow_tracking;
    let version = match registry.conn_type.as_str() {
        "file" => register_in_folder(registry, &model_name, &create_model, create_version).await?,
        _ => register_with_mlflow(registry, &create_model, &create_version).await?,
    };
    ctx.log.info(format!("registered {model_name} version {version} with `{}`", registry.id));
    Ok(register_mlflow::Outputs { model_name, version, model_uri: up.best_model.clone(), accuracy: up.accuracy })
}

/// Records the registered model as the one in service: a row of `deployed_models` in
/// `postgres_mlsp` (created if missing), which the backend reads.
pub async fn deploy(ctx: deploy::Context<'_>) -> Result<deploy::Outputs, TaskError> {
    let up = &ctx.upstream.register_mlflow;
    let db = ctx.conn.postgres_mlsp;
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS deployed_models (
            model_name TEXT NOT NULL,
            version TEXT NOT NULL,
            model_uri TEXT NOT NULL,
            accuracy DOUBLE PRECISION NOT NULL,
            run_id TEXT NOT NULL,
            deployed_for DATE NOT NULL,
            PRIMARY KEY (model_name, version)
        );
        INSERT INTO deployed_models (model_name, version, model_uri, accuracy, run_id, deployed_for)
        VALUES ({}, {}, {}, {}, {}, {})
        ON CONFLICT (model_name, version) DO UPDATE SET model_uri = excluded.model_uri,
            accuracy = excluded.accuracy, run_id = excluded.run_id, deployed_for = excluded.deployed_for",
        sql_quote(&up.model_name),
        sql_quote(&up.version),
        sql_quote(&up.model_uri),
        up.accuracy,
        sql_quote(&ctx.run.run_id),
        sql_quote(games::day(&ctx.run.logical_date)),
    );
    sql_execute(db, &sql).await?;
    ctx.log.info(format!(
        "deployed {} version {} (recorded in `deployed_models` of `{}`)",
        up.model_name, up.version, db.id
    ));
    Ok(deploy::Outputs { model_name: up.model_name.clone(), version: up.version.clone() })
}

// ---------------------------------------------------------------------------------------
// Training

const FEATURES: [&str; 2] = ["win_pct_gap", "rest_days_gap"];
const TRAIN_SHARE: f64 = 0.8;
const ITERATIONS: usize = 500;
const LEARNING_RATE: f64 = 0.5;

fn features(g: &Game) -> [f64; 2] {
    [g.home_win_pct - g.away_win_pct, (g.home_rest_days - g.away_rest_days) as f64]
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A fitted model: standardization of the features, then weights (bias last).
#[derive(Debug)]
struct Model {
    means: [f64; 2],
    stds: [f64; 2],
    weights: [f64; 3],
}

impl Model {
    fn fit(train: &[Game]) -> Model {
        let n = train.len().max(1) as f64;
        let xs: Vec<[f64; 2]> = train.iter().map(features).collect();
        let mut means = [0.0; 2];
        let mut stds = [0.0; 2];
        for j in 0..2 {
            means[j] = xs.iter().map(|x| x[j]).sum::<f64>() / n;
            let var = xs.iter().map(|x| (x[j] - means[j]).powi(2)).sum::<f64>() / n;
            stds[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        let mut model = Model { means, stds, weights: [0.0; 3] };
        for _ in 0..ITERATIONS {
            let mut grad = [0.0; 3];
            for (x, g) in xs.iter().zip(train) {
                let z = model.standardized(x);
                let err = model.probability(&z) - if g.home_won() { 1.0 } else { 0.0 };
                grad[0] += err * z[0];
                grad[1] += err * z[1];
                grad[2] += err;
            }
            for (w, g) in model.weights.iter_mut().zip(grad) {
                *w -= LEARNING_RATE * g / n;
            }
        }
        model
    }

    fn standardized(&self, x: &[f64; 2]) -> [f64; 2] {
        [(x[0] - self.means[0]) / self.stds[0], (x[1] - self.means[1]) / self.stds[1]]
    }

    fn probability(&self, z: &[f64; 2]) -> f64 {
        sigmoid(self.weights[0] * z[0] + self.weights[1] * z[1] + self.weights[2])
    }

    fn accuracy(&self, games: &[Game]) -> f64 {
        let right = games
            .iter()
            .filter(|g| (self.probability(&self.standardized(&features(g))) >= 0.5) == g.home_won())
            .count();
        right as f64 / games.len().max(1) as f64
    }
}

/// Fits `league`'s model on its earliest games, measures it on the latest, and writes it to
/// `$SLUICE_HOME/models/<league>/<run>.json`: the model's path and its accuracy.
async fn train(league: &str, dataset: &str, run: &RunInfo, log: &Logger) -> Result<(String, f64), TaskError> {
    let mut games: Vec<Game> = games::read_json_lines(dataset)
        .await?
        .iter()
        .map(Game::from_json)
        .filter(|g| g.as_ref().map_or(true, |g| g.league == league))
        .collect::<Result<_, _>>()?;
    games.sort_by(|a, b| (&a.date, &a.game_id).cmp(&(&b.date, &b.game_id)));
    if games.len() < 20 {
        return Err(TaskError::new(format!(
            "{dataset} has {} {league} games; training needs at least 20",
            games.len()
        )));
    }
    let cut = (games.len() as f64 * TRAIN_SHARE).round() as usize;
    let (train, test) = games.split_at(cut);
    // The fit is synchronous CPU work, and stays so: a Rust body runs on a thread of its own
    // (see the README's "How runs happen"), so it holds up no heartbeat and no other task.
    let model = Model::fit(train);
    let accuracy = model.accuracy(test);
    log.info(format!(
        "{league}: trained on {} games, held-out accuracy {accuracy:.3} on {} games (train accuracy {:.3})",
        train.len(),
        test.len(),
        model.accuracy(train)
    ));
    let safe_run: String =
        run.run_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = games::local_file(&["models", league, &format!("{safe_run}.json")]).await?;
    let saved = json!({
        "kind": "logistic_regression",
        "league": league,
        "features": FEATURES,
        "means": model.means,
        "stds": model.stds,
        "weights": model.weights,
        "train_games": train.len(),
        "test_games": test.len(),
        "accuracy": accuracy,
        "run_id": run.run_id,
    });
    tokio::fs::write(&path, format!("{saved:#}\n"))
        .await
        .map_err(|e| TaskError::new(format!("cannot write {}: {e}", path.display())))?;
    Ok((path.display().to_string(), accuracy))
}

async fn read_model(path: &str) -> Result<Value, TaskError> {
    let text =
        tokio::fs::read_to_string(path).await.map_err(|e| TaskError::new(format!("cannot read model {path}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| TaskError::new(format!("model {path} is not JSON: {e}")))
}

// ---------------------------------------------------------------------------------------
// Registration

async fn register_with_mlflow(
    mlflow: &Connection,
    create_model: &Value,
    create_version: &Value,
) -> Result<String, TaskError> {
    match post_json(mlflow, "/api/2.0/mlflow/registered-models/create", create_model).await {
        Ok(_) => {}
        // A model registered by an earlier run: add a version to it.
        Err(e) if e.message.contains("RESOURCE_ALREADY_EXISTS") => {}
        Err(e) => return Err(e),
    }
    let created = post_json(mlflow, "/api/2.0/mlflow/model-versions/create", create_version).await?;
    let version = &created["model_version"]["version"];
    match version {
        Value::String(v) => Ok(v.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(TaskError::new(format!("MLflow's model-versions/create answered without a version: {created}"))),
    }
}

/// The local registry: `registered-models/<name>.json` (the create body, once) and
/// `registered-models/<name>/versions/<n>.json`, numbered from 1 as MLflow does.
async fn register_in_folder(
    dir: &Connection,
    name: &str,
    create_model: &Value,
    mut create_version: Value,
) -> Result<String, TaskError> {
    let root = sluice_runtime::io::file_path(dir, "registered-models")?;
    let io_error =
        |path: &std::path::Path, e: std::io::Error| TaskError::new(format!("cannot write {}: {e}", path.display()));
    let model_file = root.join(format!("{name}.json"));
    let versions = root.join(name).join("versions");
    tokio::fs::create_dir_all(&versions).await.map_err(|e| io_error(&versions, e))?;
    if !tokio::fs::try_exists(&model_file).await.map_err(|e| io_error(&model_file, e))? {
        tokio::fs::write(&model_file, format!("{create_model:#}\n")).await.map_err(|e| io_error(&model_file, e))?;
    }
    let mut listing = tokio::fs::read_dir(&versions).await.map_err(|e| io_error(&versions, e))?;
    let mut existing = 0;
    while listing.next_entry().await.map_err(|e| io_error(&versions, e))?.is_some() {
        existing += 1;
    }
    let version = (existing + 1).to_string();
    create_version["version"] = json!(version);
    let file = versions.join(format!("{version}.json"));
    tokio::fs::write(&file, format!("{create_version:#}\n")).await.map_err(|e| io_error(&file, e))?;
    Ok(version)
}
