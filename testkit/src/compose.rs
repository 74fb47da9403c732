//! `docker-compose.yml` read as Docker Compose reads it: services with their variables
//! interpolated and bind mounts resolved, so the tests can run the services as local
//! processes (or compare the file with other manifests).

use crate::process::Env;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `generated/docker-compose.yml`, parsed.
#[derive(Debug)]
pub struct Compose {
    dir: PathBuf,
    doc: Json,
}

/// One compose service as a container would see it: variables interpolated, bind mounts
/// resolved to host paths.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// Empty when the service keeps its image's command.
    pub command: Vec<String>,
    /// Empty when the service keeps its image's entrypoint.
    pub entrypoint: Vec<String>,
    pub environment: Env,
    /// Bind mounts: container path -> host path (relative sources resolved against
    /// `generated/`). Named volumes are left out.
    pub mounts: BTreeMap<String, PathBuf>,
}

impl Compose {
    /// Reads this workspace's `generated/docker-compose.yml`.
    pub fn load() -> Compose {
        Compose::load_from(&crate::workspace::generated())
    }

    /// Reads `dir/docker-compose.yml` (deploy files rendered elsewhere, by a test).
    pub fn load_from(dir: &Path) -> Compose {
        let path = dir.join("docker-compose.yml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let doc: Json = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        assert!(doc["services"].is_object(), "{} has no `services`", path.display());
        Compose { dir: dir.to_path_buf(), doc }
    }

    /// The directory the file's relative paths are resolved against (`generated/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The service's raw YAML, not interpolated.
    pub fn raw(&self, service: &str) -> &Json {
        let raw = &self.doc["services"][service];
        assert!(raw.is_object(), "docker-compose.yml has no service `{service}`");
        raw
    }

    /// A service with `vars` interpolated as `docker compose` would with exactly those
    /// variables set (the test's own environment is not read). Fails, with compose's
    /// message, when a `${VAR:?...}` is unset or empty.
    pub fn service(&self, name: &str, vars: &Env) -> Result<ServiceSpec, String> {
        let raw = self.raw(name);
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match &raw[key] {
                Json::Null => Ok(Vec::new()),
                Json::Array(items) => items.iter().map(|v| interpolate(&scalar(v), vars)).collect(),
                other => Err(format!("service `{name}`: `{key}` is {other}; the harness reads only the list form")),
            }
        };
        let mut environment = Env::new();
        match &raw["environment"] {
            Json::Null => {}
            Json::Object(map) => {
                for (key, value) in map {
                    // `KEY:` with no value passes the variable through from the host.
                    let value = match value {
                        Json::Null => vars.get(key).cloned(),
                        v => Some(interpolate(&scalar(v), vars)?),
                    };
                    environment.extend(value.map(|v| (key.clone(), v)));
                }
            }
            Json::Array(items) => {
                for item in items {
                    let item = interpolate(&scalar(item), vars)?;
                    match item.split_once('=') {
                        Some((key, value)) => environment.insert(key.to_string(), value.to_string()),
                        None => vars.get(&item).and_then(|v| environment.insert(item.clone(), v.clone())),
                    };
                }
            }
            other => return Err(format!("service `{name}`: unexpected environment {other}")),
        }
        let mut mounts = BTreeMap::new();
        for volume in raw["volumes"].as_array().into_iter().flatten() {
            let (source, target) = match volume {
                Json::String(short) => {
                    let short = interpolate(short, vars)?;
                    let mut parts = short.split(':');
                    (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
                }
                long => (interpolate(&scalar(&long["source"]), vars)?, interpolate(&scalar(&long["target"]), vars)?),
            };
            if source.starts_with('.') || source.starts_with('/') {
                mounts.insert(target, self.dir.join(source));
            }
        }
        Ok(ServiceSpec {
            name: name.to_string(),
            command: strings("command")?,
            entrypoint: strings("entrypoint")?,
            environment,
            mounts,
        })
    }
}

impl ServiceSpec {
    /// Replaces each `from` (a `host:port`, optionally followed by `/database`) with `to`
    /// in every environment value, where it stands as a whole address (`redis:6379` in
    /// `redis://redis:6379/1`, not in `myredis:63790`). Returns how many it replaced, so a
    /// test can assert its map still matches the compose file.
    pub fn rewrite_addresses(&mut self, map: &[(&str, &str)]) -> usize {
        let mut count = 0;
        for value in self.environment.values_mut() {
            for (from, to) in map {
                let (replaced, n) = replace_address(value, from, to);
                *value = replaced;
                count += n;
            }
        }
        count
    }

    /// The host path of a file the service mounts at `container_path`.
    pub fn host_path(&self, container_path: &str) -> &Path {
        self.mounts
            .get(container_path)
            .unwrap_or_else(|| panic!("service `{}` mounts nothing at {container_path}", self.name))
    }

    /// Arguments with every mounted container path replaced by its host path.
    pub fn localize(&self, args: &[String]) -> Vec<String> {
        args.iter()
            .map(|a| self.mounts.get(a).map_or_else(|| a.clone(), |p| p.to_string_lossy().into_owned()))
            .collect()
    }
}

fn replace_address(text: &str, from: &str, to: &str) -> (String, usize) {
    let part_of_name = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let (mut out, mut last, mut count) = (String::new(), 0, 0);
    for (at, _) in text.match_indices(from) {
        let end = at + from.len();
        if at < last || part_of_name(text[..at].chars().next_back()) || part_of_name(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(to);
        (last, count) = (end, count + 1);
    }
    out.push_str(&text[last..]);
    (out, count)
}

/// A YAML scalar as compose reads it: strings as they are, numbers and booleans as text.
fn scalar(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Compose's interpolation: `$$` is a literal `$`; `$VAR`, `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`.
/// An unset `${VAR}` is empty, as compose makes it (with a warning). No nesting.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            out.push_str(&substitute(&body[..end], vars)?);
            rest = &body[end + 1..];
        } else {
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if len == 0 {
                return Err(format!("invalid `$` in `{text}`: write `$$` for a literal `$`"));
            }
            out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let (name, op, arg) = match expr.find([':', '-', '?', '+']) {
        None => (expr, "", ""),
        Some(i) => {
            let op_len = if expr[i..].starts_with(':') { 2 } else { 1 };
            let op = expr.get(i..i + op_len).ok_or_else(|| format!("invalid interpolation `${{{expr}}}`"))?;
            (&expr[..i], op, &expr[i + op_len..])
        }
    };
    let value = vars.get(name);
    let non_empty = value.filter(|v| !v.is_empty());
    let missing = || format!("required variable {name} is missing a value: {arg}");
    Ok(match op {
        "" => value.cloned().unwrap_or_default(),
        ":-" => non_empty.map_or_else(|| arg.to_string(), Clone::clone),
        "-" => value.map_or_else(|| arg.to_string(), Clone::clone),
        ":?" => non_empty.cloned().ok_or_else(missing)?,
        "?" => value.cloned().ok_or_else(missing)?,
        ":+" => non_empty.map_or_else(String::new, |_| arg.to_string()),
        "+" => value.map_or_else(String::new, |_| arg.to_string()),
        _ => return Err(format!("invalid interpolation `${{{expr}}}`")),
    })
}
