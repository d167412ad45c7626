//! sentence-transformers module chains for cross-encoders (`modules.json`): a Transformer
//! backbone, then Pooling, Dense and LayerNorm modules applied to the pooled vector, as the
//! Ettin rerankers ship. Module classes are matched by their last name (`...dense.Dense`).

use crate::error::{EngineError, Result};
use crate::models::blocks::{Act, HeadStep};
use crate::models::modernbert::Pool;
use crate::weights::Weights;
use std::path::Path;

/// What `modules.json` describes after the Transformer.
pub struct Chain {
    /// The Pooling module.
    pub pool: Pool,
    /// The Dense / LayerNorm modules, in order.
    pub steps: Vec<HeadStep>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EngineError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn bad(path: &Path, message: String) -> EngineError {
    EngineError::Config {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads the chain in `dir/modules.json`; `Ok(None)` when there is no modules.json or it has
/// no module after Pooling (a bi-encoder, or a plain classifier checkpoint).
pub fn read_chain(dir: &Path, hidden: usize) -> Result<Option<Chain>> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok(None);
    }
    let list = read_json(&path)?;
    let list = list
        .as_array()
        .ok_or_else(|| bad(&path, "expected a list of modules".into()))?;
    let mut pool = None;
    let mut steps = Vec::new();
    let mut width = hidden;
    for (i, m) in list.iter().enumerate() {
        let class = m["type"].as_str().unwrap_or_default();
        let name = class.rsplit('.').next().unwrap_or(class);
        let sub = dir.join(m["path"].as_str().unwrap_or_default());
        match name {
            "Transformer" if i == 0 => {}
            "Pooling" => {
                let c = read_json(&sub.join("config.json"))?;
                let mode = c["pooling_mode"].as_str().map(str::to_string).or_else(|| {
                    [("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens")]
                        .iter()
                        .find(|(_, k)| c[*k].as_bool() == Some(true))
                        .map(|(m, _)| m.to_string())
                });
                pool = Some(match mode.as_deref() {
                    Some("cls") => Pool::Cls,
                    Some("mean") => Pool::Mean,
                    other => {
                        return Err(bad(
                            &sub.join("config.json"),
                            format!("pooling mode {other:?} is not supported for a cross-encoder (cls or mean)"),
                        ))
                    }
                });
            }
            "Dense" => {
                let cpath = sub.join("config.json");
                let c = read_json(&cpath)?;
                let (k, n) = (
                    c["in_features"].as_u64().unwrap_or(0) as usize,
                    c["out_features"].as_u64().unwrap_or(0) as usize,
                );
                if k != width || n == 0 {
                    return Err(bad(
                        &cpath,
                        format!("Dense module {i} takes {k} inputs after a layer of {width}"),
                    ));
                }
                let act_name = c["activation_function"]
                    .as_str()
                    .unwrap_or("torch.nn.modules.linear.Identity");
                let act = Act::from_name(act_name).ok_or_else(|| {
                    bad(&cpath, format!("activation {act_name:?} is not supported"))
                })?;
                let w = Weights::from_files(&[sub.join("model.safetensors")])?;
                let bias = c["bias"].as_bool().unwrap_or(true);
                steps.push(HeadStep::Dense {
                    w: w.get("linear.weight", &[n, k])?,
                    b: if bias {
                        w.get("linear.bias", &[n])?
                    } else {
                        Vec::new()
                    },
                    k,
                    n,
                    act,
                });
                width = n;
            }
            "LayerNorm" => {
                let w = Weights::from_files(&[sub.join("model.safetensors")])?;
                steps.push(HeadStep::LayerNorm {
                    gamma: w.get("norm.weight", &[width])?,
                    beta: w.get("norm.bias", &[width])?,
                    // torch.nn.LayerNorm's default; the module config does not store it.
                    eps: 1e-5,
                });
            }
            "Normalize" => {
                return Ok(None);
            }
            _ => {
                return Err(bad(
                    &path,
                    format!(
                        "module {i} is {class:?}, which crossrank does not run (Transformer first, then Pooling, Dense, LayerNorm)"
                    ),
                ))
            }
        }
    }
    if steps.is_empty() {
        return Ok(None);
    }
    let pool = pool.ok_or_else(|| bad(&path, "the chain has no Pooling module".into()))?;
    if width != 1 {
        return Err(bad(
            &path,
            format!("the chain ends in {width} outputs; a cross-encoder needs 1"),
        ));
    }
    Ok(Some(Chain { pool, steps }))
}

/// The score activation `config_sentence_transformers.json` names (`activation_fn`), if any.
pub fn activation_fn(dir: &Path) -> Result<Option<Act>> {
    let path = dir.join("config_sentence_transformers.json");
    if !path.is_file() {
        return Ok(None);
    }
    let c = read_json(&path)?;
    match c["activation_fn"].as_str() {
        None => Ok(None),
        Some(name) => Act::from_name(name)
            .map(Some)
            .ok_or_else(|| bad(&path, format!("activation_fn {name:?} is not supported"))),
    }
}
