//! Run params: declared defaults merged with a trigger's conf, checked against the types.

use crate::spec::{ParamSpec, PipelineSpec, ValueType};
use serde_json::{Map, Value};

/// Whether `value` has type `ty`.
pub fn has_type(ty: ValueType, value: &Value) -> bool {
    match (ty, value) {
        (ValueType::String, Value::String(_)) | (ValueType::Bool, Value::Bool(_)) | (ValueType::Json, _) => true,
        (ValueType::Int, Value::Number(n)) => n.is_i64(),
        (ValueType::Float, Value::Number(_)) => true,
        (ValueType::List(inner), Value::Array(items)) => items.iter().all(|i| has_type(*inner, i)),
        _ => false,
    }
}

pub fn type_name(ty: ValueType) -> String {
    match ty {
        ValueType::String => "string".into(),
        ValueType::Int => "int".into(),
        ValueType::Float => "float".into(),
        ValueType::Bool => "bool".into(),
        ValueType::Json => "json".into(),
        ValueType::List(inner) => format!("list<{}>", type_name(*inner)),
    }
}

/// The params of a run: each declared param from `conf` or its default, plus any extra
/// conf keys (Airflow passes them through). An error names the param and what is wrong.
pub fn resolve(pipeline: &PipelineSpec, conf: &Value) -> Result<Value, String> {
    let conf = match conf {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => return Err(format!("conf must be a JSON object, got `{other}`")),
    };
    let mut params = conf.clone();
    for ParamSpec { name, ty, default_json, .. } in pipeline.params {
        match (conf.get(*name), default_json) {
            (Some(value), _) => {
                if !has_type(*ty, value) {
                    return Err(format!(
                        "param `{name}` of pipeline `{}` must be of type {}, got `{value}`",
                        pipeline.id,
                        type_name(*ty)
                    ));
                }
            }
            (None, Some(default)) => {
                let value = serde_json::from_str(default).unwrap_or(Value::Null);
                params.insert((*name).to_string(), value);
            }
            (None, None) => {
                return Err(format!(
                    "param `{name}` of pipeline `{}` has no default: give it in the conf",
                    pipeline.id
                ));
            }
        }
    }
    Ok(Value::Object(params))
}
